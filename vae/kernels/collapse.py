"""Posterior collapse, measured and treated, as pure functions (no Flax).

Which latent dimensions carry information, and how much of the rate is information
about x:

  kl_per_dim:   the KL of each latent dimension, (D,) nats, summing to the KL; for a
                q and p that factorise over dimensions (`factorizes`).
  I(x; z) and KL(q(z) || p(z)): the two parts of the average KL (Hoffman & Johnson 2016),

      E_n KL(q(z|x_n) || p(z)) = I(x; z) + KL(q(z) || p(z)),

                with q(z) = (1/N) sum_n q(z|x_n) the aggregate posterior of the N
                examples of an evaluation split and I(x; z) the mutual information of
                n (uniform) and z ~ q(z|x_n): 0 <= I(x; z) <= min(log N, the KL). For
                each of M examples i, one draw z_i ~ q(z|x_i) gives
                    I_i = log q(z_i|x_i) - log q(z_i),  M_i = log q(z_i) - log p(z_i),
                unbiased terms of the two (their sum is the Monte Carlo KL of z_i); q(z_i)
                needs every q(z_i|x_n), streamed over batches of n (`aggregate_logsumexp`).
  free_bits_kl: Kingma et al. (2016)'s free bits, sum_d max(lambda, KL_d).

A stochastic hierarchy q(z_1|x) q(z_2|z_1) ... gets the decomposition per layer, each
layer's KL against the layer below as its input: for layer l, I_l = I(z_{l-1}; z_l)
(z_0 = x) over the examples' draws of z_{l-1}, and the layer's KL minus I_l. I(x; z) of
the whole z equals I(x; z_1), since q(z_2|z_1) does not see x.

References:
  Hoffman & Johnson, "ELBO surgery: yet another way to carve up the variational evidence
  lower bound", NeurIPS 2016 Workshop on Advances in Approximate Bayesian Inference.
  Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling, "Improved Variational
  Inference with Inverse Autoregressive Flow", NeurIPS 2016 (free bits).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vae.kernels import bounds, posteriors, priors

Array = jax.Array


def factorizes(posterior: Any, prior: Any = None) -> bool:
  """Whether q and p (None: N(0, I)) split into terms per dimension, so the KL has a
  per-dimension form: diagonal Gaussian layers and N(0, I) or diagonal Gaussian
  conditional priors (decided from their Python types, so at trace time)."""
  parts = [posterior, prior]  # None (N(0, I), or a hierarchy's N(0, I) top) factorises
  if isinstance(posterior, posteriors.Hierarchical):
    parts.append(posterior.first)
  if isinstance(prior, priors.Hierarchical):
    parts.append(prior.top)
  return posterior is not None and all(
      part is None or hasattr(part, "log_prob_per_dim") for part in parts)


def kl_per_dim(key: Array, x: Array, encode: Callable, *, prior: Any = None,
               num_samples: int = 1) -> Array:
  """KL(q(z|x) || p(z)) of each latent dimension of one example, (D,) nats.

  In closed form for a diagonal Gaussian q and p = N(0, I) (prior None), then it sums to
  `vae.bounds.elbo`'s analytic `kl`; otherwise mean_k [log q(z_k,d|.) - log p(z_k,d|.)]
  over the samples `vae.bounds.elbo(key, x, ..., num_samples=num_samples)` draws, so it
  sums to its Monte Carlo `kl` (a hierarchy: z_1's dimensions first).

  Raises:
    TypeError: q or p does not factorise over dimensions (`factorizes`).
  """
  posterior = posteriors.as_posterior(encode(x))
  if not factorizes(posterior, prior):
    raise TypeError("kl_per_dim needs a q and p that factorise over dimensions "
                    f"(got {type(posterior).__name__} and {type(prior).__name__}).")
  if prior is None and hasattr(posterior, "kl_standard_normal_per_dim"):
    return posterior.kl_standard_normal_per_dim()
  prior = priors.StandardNormal() if prior is None else prior
  z = jax.vmap(lambda k: posterior.sample(jax.random.fold_in(key, k))[0])(
      jnp.arange(num_samples))
  return jnp.mean(jax.vmap(lambda z_k: posterior.log_prob_per_dim(z_k)
                           - prior.log_prob_per_dim(z_k))(z), axis=0)


def free_bits_kl(kl_per_dim: Array, threshold: float | Array,
                 used: Array | None = None) -> Array:
  """sum_d max(threshold, kl_d) of a (D,) KL per dimension (Kingma et al. 2016 apply it
  to the minibatch's mean): the KL term of a free-bits objective, in nats. Its gradient
  is the KL's for dimensions above `threshold` (nats per dimension) and 0 below. `used`
  (D,) bool: only those dimensions count (a padded model's, `vae.kernels.padding`)."""
  floored = jnp.maximum(threshold, kl_per_dim)
  return jnp.sum(floored if used is None else jnp.where(used, floored, 0.0))


# ------------------------------------------------------------------ the aggregate posterior


def layer_posteriors(posterior: Any, z: Array) -> list[Any]:
  """[q(z_1|x), q(z_2|z_1), ...] of one example given its draw z (the layers below each
  come from z), or [q(z|x)] for one layer; each a posterior with `log_prob`."""
  if isinstance(posterior, posteriors.Hierarchical):
    return posterior.layer_posteriors(z)
  return [posterior]


def _split_layers(z: Array, sizes: tuple[int, ...]) -> list[Array]:
  return jnp.split(z, np.cumsum(sizes)[:-1], axis=-1)


class OwnTerms(NamedTuple):
  """One draw z ~ q(z|x) of one example and its densities per layer, in nats.

  z: (D,); log_q: (L,) log q(z_l | z_{l-1}) (z_0 = x); log_p: (L,) log p(z_l | z_{l+1})
  (the top layer: its prior); L = 1 for one stochastic layer.
  """

  z: Array
  log_q: Array
  log_p: Array


def own_terms(key: Array, x: Array, encode: Callable, *, prior: Any = None) -> OwnTerms:
  """z ~ q(z|x) from `key` and its per-layer log q and log p (prior None: N(0, I)); one
  layer's log q is the one its draw comes with (an IAF's without inverting the flow)."""
  posterior = posteriors.as_posterior(encode(x))
  z, log_q = posterior.sample(key)
  if isinstance(posterior, posteriors.Hierarchical):
    log_q = posterior.layer_log_probs(z)
  else:
    log_q = jnp.reshape(log_q, (1,))
  log_p = (prior.layer_log_probs(z) if isinstance(prior, priors.Hierarchical)
           else jnp.reshape(bounds.log_prior_fn(prior)(z), (1,)))
  return OwnTerms(z, log_q, log_p)


def batch_layer_posteriors(encode: Callable, x: Array, z: Array) -> tuple[list[Any], list[Any]]:
  """`layer_posteriors` of B examples x (B, ...) given their draws z (B, D), and their
  `vae.kernels.posteriors.example_axes`: the leaves that vary with the example have a leading
  (B,) axis, those the examples share (an IAF's steps) are held once."""
  per_example = lambda x_n, z_n: layer_posteriors(posteriors.as_posterior(encode(x_n)), z_n)
  axes = [posteriors.example_axes(layer)
          for layer in jax.eval_shape(per_example, x[0], z[0])]
  return jax.vmap(per_example, out_axes=axes)(x, z), axes


def aggregate_logsumexp(layers: list[Any], axes: list[Any], valid: Array, z: Array,
                        sizes: tuple[int, ...], chunk_size: int = 100) -> Array:
  """logsumexp over the valid examples n of a batch of log q_l(z_j,l | n), (M, L).

  Args:
    layers, axes: `batch_layer_posteriors` of B examples.
    valid: (B,) bool, False for padding rows (left out of the sum).
    z: (M, D) draws to score, each under every example's layers.
    sizes: (D_1, ..., D_L).
    chunk_size: draws scored at once (memory holds B * chunk_size densities).

  Adding these up over every batch (`jnp.logaddexp`) and subtracting log N gives
  log q_l(z_j,l) of the aggregate posterior of N examples.
  """

  def score(z_j):  # (L, B): every example's density of one draw, layer by layer
    per_layer = [jax.vmap(lambda layer, z_l=z_l: layer.log_prob(z_l), in_axes=(axis,))(layer)
                 for layer, axis, z_l in zip(layers, axes, _split_layers(z_j, sizes))]
    return jnp.where(valid, jnp.stack(per_layer), -jnp.inf)

  log_q = jax.lax.map(score, z, batch_size=min(chunk_size, z.shape[0]))  # (M, L, B)
  return jax.nn.logsumexp(log_q, axis=-1)


def information_terms(own: OwnTerms, log_aggregate: Array) -> tuple[Array, Array]:
  """(I_i, M_i) of the draws `own` (leaves (M, ...)) given log q(z_i) of the aggregate
  posterior, (M, L): the per-layer terms log q - log q(z) of I(x; z) and log q(z) -
  log p of KL(q(z) || p(z)), each (M, L) nats; their means are the two estimates."""
  return own.log_q - log_aggregate, log_aggregate - own.log_p
