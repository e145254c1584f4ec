"""Likelihoods log p(x|z) of one example, in nats: the Bernoulli (logits) and the diagonal
Gaussian (mean, log-variance), by name or as any callable `fn(x, decoder_output)`.
"""

from __future__ import annotations

from typing import Callable, Union

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from vae.kernels import gaussian

Array = jax.Array
LogLikelihood = Callable[[Array, object], Array]


def bernoulli_log_likelihood(x: Array, logits: Array) -> Array:
  """log Bernoulli(x | sigmoid(logits)) in nats, summed over every event axis.

  Computed as sum(x * logits - softplus(logits)), which equals
  sum(x * log sigmoid(logits) + (1 - x) * log sigmoid(-logits)) since
  softplus(-l) = softplus(l) - l, with softplus(l) = log1p(exp(-|l|)) + max(l, 0): exact
  and finite for logits in [-1e4, 1e4] (never log(sigmoid(.))). Its derivative in the
  logits, x - sigmoid(logits), reuses the same exp(-|l|) (a custom JVP), so a training
  step that needs both the value and the gradient evaluates one exponential per pixel,
  not three. For continuous x in [0, 1] this is the negative binary cross-entropy (the
  "continuous Bernoulli" without its normaliser), as most VAE papers use on grey-scale
  images.

  Args:
    x: (…) observations in [0, 1], one example.
    logits: logits of the same shape as x.

  Returns:
    Scalar <= 0 for binary x.
  """
  return _bernoulli_log_prob_flat(*gaussian.flat_event(x, logits))


@jax.custom_jvp
def _bernoulli_log_prob_flat(x: Array, logits: Array) -> Array:
  """sum(x * l - softplus(l)) over flat (n,) arrays; see bernoulli_log_likelihood."""
  return _bernoulli_value(x, logits, _exp_neg_abs(logits))


# softplus(l) = log1p(exp(-|l|)) + max(l, 0), with |l| and max(l, 0) written as one-sided
# selects: at l = 0 their derivatives are then those of the l >= 0 branch, so that
# derivatives of every order are exact there too (jnp.abs and jnp.maximum give 0 and 1/2).


def _exp_neg_abs(logits: Array) -> Array:
  return jnp.exp(jnp.where(logits >= 0, -logits, logits))


def _bernoulli_value(x: Array, logits: Array, exp_neg_abs: Array) -> Array:
  positive_part = jnp.where(logits >= 0, logits, 0.0)
  return jnp.sum(x * logits - jnp.log1p(exp_neg_abs) - positive_part)


def _bernoulli_jvp(primals, tangents):
  x, logits = primals
  x_dot, logits_dot = tangents
  exp_neg_abs = _exp_neg_abs(logits)
  value = _bernoulli_value(x, logits, exp_neg_abs)
  sigmoid = jnp.where(logits >= 0, 1.0, exp_neg_abs) / (1.0 + exp_neg_abs)
  value_dot = jnp.zeros_like(value)
  if type(logits_dot) is not SymbolicZero:  # pylint: disable=unidiomatic-typecheck
    value_dot = value_dot + jnp.sum((x - sigmoid) * logits_dot)
  if type(x_dot) is not SymbolicZero:  # pylint: disable=unidiomatic-typecheck
    value_dot = value_dot + jnp.sum(logits * x_dot)
  return value, value_dot


_bernoulli_log_prob_flat.defjvp(_bernoulli_jvp, symbolic_zeros=True)


def gaussian_log_likelihood(x: Array, mean: Array, logvar: Array) -> Array:
  """log N(x; mean, diag(exp(logvar))) in nats, summed over every event axis.

  Args:
    x: (…) observations, one example.
    mean: decoder means, broadcastable to x.
    logvar: decoder log-variances, broadcastable to x (a scalar gives a shared variance).

  Returns:
    Scalar; a density, so it may be positive for small variances.
  """
  return gaussian.gaussian_log_prob(x, mean, logvar)


def _gaussian_from_pair(x: Array, params: tuple[Array, Array]) -> Array:
  mean, logvar = params
  return gaussian_log_likelihood(x, mean, logvar)


LIKELIHOODS: dict[str, LogLikelihood] = {
    "bernoulli": bernoulli_log_likelihood,
    "gaussian": _gaussian_from_pair,
}
"""Named likelihoods: `fn(x, decoder_output) -> scalar log p(x|z)` in nats."""


def get_log_likelihood(likelihood: Union[str, LogLikelihood]) -> LogLikelihood:
  """Returns `fn(x, decoder_output) -> log p(x|z)` for a name in LIKELIHOODS or a callable."""
  if callable(likelihood):
    return likelihood
  if likelihood not in LIKELIHOODS:
    raise ValueError(
        f"Unknown likelihood {likelihood!r}; valid names are {sorted(LIKELIHOODS)}, "
        "or pass a callable fn(x, decoder_output) -> log p(x|z)."
    )
  return LIKELIHOODS[likelihood]
