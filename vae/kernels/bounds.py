"""Pure kernels for variational autoencoders: KL, likelihoods, ELBO, IWAE, bound gap, for
one stochastic layer or a hierarchy of them.

Every function here works on ONE example and returns a scalar in nats; none keeps state
and none imports Flax, so they can be lifted into any JAX project and composed with
`jax.jit`, `jax.vmap` and `jax.grad`. The model-level kernels have batched forms
(`elbo_batch`, `iwae_bound_batch`, `bound_gap_batch`, `bound_objective_batch`: one key
per example); the others are batched with a plain `jax.vmap`.

Sign conventions: log-densities and bounds are log-probabilities (higher is better, at
most 0 for discrete data); KL terms are >= 0. A training loss is `-objective`.

The identity the whole module rests on (Kingma & Welling 2014; the project's seeds):

    log p(x) = ELBO(x) + KL(q(z|x) || p(z|x)),
    ELBO(x)  = E_q[log p(x|z)] - KL(q(z|x) || p(z)),

so the ELBO is a lower bound whose gap is exactly the KL from q to the true posterior.
The importance-weighted bound (Burda et al. 2016)

    IWAE_K(x) = E[log (1/K) sum_k p(x, z_k) / q(z_k|x)],   z_k ~ q(z|x),

satisfies ELBO = IWAE_1 <= IWAE_K <= IWAE_{K+1} <= log p(x) and tends to log p(x) as K
grows, so IWAE_K(x) - ELBO(x) estimates the gap KL(q(z|x) || p(z|x)) from below.

The models these kernels take are two plain callables on one example:
  `encode(x) -> (mean, logvar)`, each of shape (D,), the diagonal Gaussian q(z|x), or
    -> any posterior of `vae.kernels.posteriors` (sample, log_prob, stop_gradient);
  `decode(z) -> params` for z of shape (D,): Bernoulli logits shaped like x, or a
  `(mean, logvar)` pair broadcastable to x for the Gaussian likelihood;
and a prior, `prior=None` for p(z) = N(0, I) or any `z -> log p(z)`
(`vae.kernels.priors`). A model of L stochastic layers is the same three pieces over
z = concat(z_1, ..., z_L): an encoder returning a `vae.kernels.posteriors.Hierarchical`, a
`vae.kernels.priors.Hierarchical` prior, and a decoder of z; the posterior is drawn
bottom-up, q(z_1|x) q(z_2|z_1) ... (Burda et al.; the decoder reads z_1), or top-down,
q(z_L|x) q(z_{L-1}|x, z_L) ... (Tomczak & Welling's HVAE, ladder VAEs; the decoder may
read every layer). `layer_kls` splits its KL by layer.

References:
  Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
  Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
  Higgins et al., "beta-VAE", ICLR 2017.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp

from vae.kernels import batching, posteriors, priors
from vae.kernels.likelihoods import LogLikelihood, get_log_likelihood

Array = jax.Array
Posterior = Any  # a family of vae.kernels.posteriors: sample, log_prob, stop_gradient
Prior = Any  # a prior of vae.kernels.priors, or any callable z -> log p(z)
Encoder = Callable[[Array], Union[tuple[Array, Array], Posterior]]
Decoder = Callable[[Array], object]


# ------------------------------------------------------------------ posteriors and priors


as_posterior = posteriors.as_posterior


def log_prior_fn(prior: Prior | None) -> Callable[[Array], Array]:
  """`z -> log p(z)`: N(0, I) for None, a prior's log_prob, or the callable itself."""
  if prior is None:
    return priors.StandardNormal().log_prob
  return getattr(prior, "log_prob", prior)


def _draw(posterior: Posterior, key: Array, index: Array) -> tuple[Array, Array]:
  """Sample `index` of q and its log-density; it depends only on (key, index), so any
  chunking of the samples draws the same ones."""
  return posterior.sample(jax.random.fold_in(key, index))


# ------------------------------------------------------------------ ELBO


class ELBOTerms(NamedTuple):
  """Per-example ELBO terms, all in nats.

  Attributes:
    objective: reconstruction - beta * kl, the (beta-weighted) objective to maximise.
    elbo: reconstruction - kl, the ELBO: a lower bound on log p(x) whatever beta is, so
      a run with beta != 1 can still be compared with log p(x).
    reconstruction: E_q[log p(x|z)], Monte Carlo over `num_samples` samples.
    kl: KL(q(z|x) || p(z)) >= 0, closed form or Monte Carlo (the "rate").
  """

  objective: Array
  elbo: Array
  reconstruction: Array
  kl: Array


def elbo(
    key: Array,
    x: Array,
    encode: Encoder,
    decode: Decoder,
    *,
    beta: float | Array = 1.0,
    num_samples: int = 1,
    likelihood: Union[str, LogLikelihood] = "bernoulli",
    analytic_kl: bool = True,
    prior: Prior | None = None,
    gradient_estimator: str = "reparameterized",
) -> ELBOTerms:
  """The evidence lower bound of one example, with reparameterised samples.

  ELBO_beta(x) = E_q(z|x)[log p(x|z)] - beta * KL(q(z|x) || p(z)).

  Args:
    key: PRNG key for the samples.
    x: one example, any shape (e.g. (H, W, C)).
    encode: `x -> (mean, logvar)`, each (D,), or `x -> ` a posterior of
      `vae.kernels.posteriors` (anything with sample, log_prob and stop_gradient).
    decode: `z -> likelihood parameters` for z of shape (D,).
    beta: weight of the KL term (beta-VAE); 1 gives the true ELBO. May be traced.
    num_samples: Monte Carlo samples of z averaged in the reconstruction term.
    likelihood: "bernoulli" (decode returns logits), "gaussian" (decode returns
      (mean, logvar)), or a callable `fn(x, decoder_output) -> log p(x|z)`.
    analytic_kl: the closed-form KL (lower variance) where there is one: q has
      `kl_standard_normal` and the prior is N(0, I). Otherwise, or if False, the Monte
      Carlo estimate mean_k[log q(z_k|x) - log p(z_k)] from the same samples.
    prior: p(z): None for N(0, I), a prior of `vae.kernels.priors`, or any `z -> log p(z)`
      (its parameters may be traced, e.g. learned).
    gradient_estimator: "reparameterized", or "stl" (Roeder et al. 2017): the Monte
      Carlo KL with q scored at stopped parameters, so the encoder's gradient flows only
      through z; the same values, an unbiased gradient of lower variance near the
      posterior. It needs analytic_kl=False (a closed-form KL has no such estimator).

  Returns:
    ELBOTerms of scalars in nats per example.
  """
  if gradient_estimator not in ("reparameterized", "stl"):
    raise ValueError(f"gradient_estimator={gradient_estimator!r}: the ELBO takes "
                     "'reparameterized' or 'stl' (DReG is for the IWAE family).")
  if gradient_estimator == "stl" and analytic_kl:
    raise ValueError("The STL estimator scores q's samples: pass analytic_kl=False.")
  log_likelihood = get_log_likelihood(likelihood)
  posterior = as_posterior(encode(x))
  if num_samples == 1:
    # One sample without a samples axis: batched over examples, a size-1 axis in every
    # decoder matmul makes a training step ~15% slower on CPU.
    z, log_q = _draw(posterior, key, jnp.asarray(0))
    reconstruction = log_likelihood(x, decode(z))
    z, log_q = z[None], log_q[None]
  else:
    z, log_q = jax.vmap(lambda k: _draw(posterior, key, k))(jnp.arange(num_samples))
    reconstruction = jnp.mean(jax.vmap(lambda z_k: log_likelihood(x, decode(z_k)))(z))
  if gradient_estimator == "stl":
    log_q = jax.vmap(posterior.stop_gradient().log_prob)(z)
  if analytic_kl and prior is None and hasattr(posterior, "kl_standard_normal"):
    kl = posterior.kl_standard_normal()
  else:
    kl = jnp.mean(log_q - jax.vmap(log_prior_fn(prior))(z))
  return ELBOTerms(
      objective=reconstruction - beta * kl,
      elbo=reconstruction - kl,
      reconstruction=reconstruction,
      kl=kl,
  )


# ------------------------------------------------------------------ IWAE and the bound gap


class BoundGap(NamedTuple):
  """Per-example estimates from one set of K importance samples, in nats.

  Attributes:
    log_px: IWAE_K(x) = log (1/K) sum_k w_k, a lower bound on log p(x) that rises to it.
    elbo: (1/K) sum_k log w_k, the ELBO estimated from the same samples.
    gap: log_px - elbo >= 0 (Jensen, for every draw): an estimate of
      KL(q(z|x) || p(z|x)) = log p(x) - ELBO that is low by log p(x) - IWAE_K.
  """

  log_px: Array
  elbo: Array
  gap: Array


def _log_weight_summaries(log_weights: Callable[[Array], Array], num_samples: int,
                          chunk_size: int | None, dtype) -> tuple[Array, Array]:
  """(logsumexp_k log w_k, sum_k log w_k) over the K sample numbers k, streamed in chunks.

  `log_weights(ks)` are the log-weights (C,) of the sample numbers ks (C,). Samples are
  evaluated chunk by
  chunk inside `lax.scan`, so memory holds one chunk of `chunk_size` samples (and their
  decoder outputs) at a time, whatever K is. The last chunk is padded and its extra
  samples masked out, so any K and chunk size work.
  """
  if num_samples < 1:
    raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
  chunk_size = num_samples if chunk_size is None else min(chunk_size, num_samples)
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}.")
  num_chunks = -(-num_samples // chunk_size)

  def body(carry, chunk_index):
    running_lse, running_sum = carry
    indices = chunk_index * chunk_size + jnp.arange(chunk_size)
    valid = indices < num_samples
    log_w = log_weights(indices)
    chunk_lse = jax.nn.logsumexp(jnp.where(valid, log_w, -jnp.inf))
    chunk_sum = jnp.sum(jnp.where(valid, log_w, 0.0))
    return (jnp.logaddexp(running_lse, chunk_lse), running_sum + chunk_sum), None

  init = (jnp.array(-jnp.inf, dtype), jnp.array(0.0, dtype))
  (lse, total), _ = jax.lax.scan(body, init, jnp.arange(num_chunks))
  return lse, total


def _bound_gap_from(lse: Array, total: Array, num_samples: int) -> BoundGap:
  log_px = lse - jnp.log(num_samples)
  elbo_estimate = total / num_samples
  return BoundGap(log_px=log_px, elbo=elbo_estimate, gap=log_px - elbo_estimate)


def iwae_bound(
    key: Array,
    x: Array,
    encode: Encoder,
    decode: Decoder,
    *,
    num_samples: int,
    likelihood: Union[str, LogLikelihood] = "bernoulli",
    chunk_size: int | None = None,
    prior: Prior | None = None,
) -> Array:
  """The importance-weighted bound IWAE_K(x) = log (1/K) sum_k p(x, z_k) / q(z_k|x).

  z_k ~ q(z|x) reparameterised, so the bound is differentiable (the IWAE objective).
  IWAE_1 is the ELBO (with a Monte Carlo KL); IWAE_K <= log p(x) in expectation and
  rises to it as K grows, which makes it the standard "test log-likelihood" estimate.

  Args:
    key: PRNG key; sample k depends only on (key, k), so the result does not depend
      on `chunk_size`.
    x: one example, any shape.
    encode, decode: the model, as in `elbo`.
    num_samples: K, the number of importance samples.
    likelihood: as in `elbo`.
    chunk_size: samples evaluated at once by a streaming logsumexp (memory grows with
      chunk_size, not K); None evaluates all K at once.
    prior: as in `elbo`.

  Returns:
    Scalar estimate of log p(x) in nats per example.
  """
  return bound_gap(key, x, encode, decode, num_samples=num_samples, likelihood=likelihood,
                   chunk_size=chunk_size, prior=prior).log_px


def bound_gap(
    key: Array,
    x: Array,
    encode: Encoder,
    decode: Decoder,
    *,
    num_samples: int,
    likelihood: Union[str, LogLikelihood] = "bernoulli",
    chunk_size: int | None = None,
    prior: Prior | None = None,
) -> BoundGap:
  """IWAE_K(x), the ELBO and their difference, from one pass over K samples.

  The gap log p(x) - ELBO(x) is exactly KL(q(z|x) || p(z|x)), the distance from the
  encoder's q to the true posterior. With log p(x) replaced by IWAE_K and the ELBO
  estimated from the same samples, gap = logmeanexp(log w) - mean(log w) >= 0 for every
  draw, and it tends to the true KL as K grows (from below, by log p(x) - IWAE_K).

  Args: as in `iwae_bound`.

  Returns:
    BoundGap(log_px, elbo, gap) of scalars in nats per example.
  """
  log_likelihood = get_log_likelihood(likelihood)
  log_prior = log_prior_fn(prior)
  posterior = as_posterior(encode(x))

  def log_weights(indices):
    z, log_q = jax.vmap(lambda index: _draw(posterior, key, index))(indices)
    return jax.vmap(lambda z_k: log_likelihood(x, decode(z_k)) + log_prior(z_k))(z) - log_q

  dtype = jax.tree.leaves(posterior)[0].dtype
  return _bound_gap_from(*_log_weight_summaries(log_weights, num_samples, chunk_size, dtype),
                         num_samples)


# ------------------------------------------------------------------ tighter objectives


OBJECTIVES = ("elbo", "iwae", "miwae", "piwae", "ciwae")
GRADIENT_ESTIMATORS = ("reparameterized", "stl", "dreg")


class LogWeights(NamedTuple):
  """log w_s = log p(x, z_s) - log q(z_s|x) of S reparameterised samples, (S,) each, three
  times: the same values, with gradients that differ.

  Attributes:
    full: every gradient: through z (the path) and through q's parameters (the score
      term, whose expectation is 0 but not its noise).
    path: q scored at parameters whose gradient is stopped: the encoder's gradient flows
      only through z (Roeder et al. 2017, "sticking the landing").
    generative: z stopped as well: gradients reach only p's parameters (the decoder's
      and a learned prior's).
  """

  full: Array
  path: Array
  generative: Array


@jax.custom_vjp
def _scale_gradient(z: Array, scale: Array) -> Array:
  """z (S, D) itself, whose gradient is multiplied by scale (S,) sample by sample."""
  return z


def _scale_gradient_fwd(z, scale):
  return z, scale


def _scale_gradient_bwd(scale, cotangent):
  return cotangent * scale[:, None], jnp.zeros_like(scale)


_scale_gradient.defvjp(_scale_gradient_fwd, _scale_gradient_bwd)


def log_weights(key: Array, x: Array, encode: Encoder, decode: Decoder, *,
                num_samples: int, likelihood: Union[str, LogLikelihood] = "bernoulli",
                prior: Prior | None = None,
                path_scale: Callable[[Array], Array] | None = None) -> LogWeights:
  """The log weights of samples 0..S-1 of q(z|x), sample s from fold_in(key, s), the
  samples of `iwae_bound` with the same key (so `logsumexp(full) - log S` is IWAE_S).

  path_scale: full (S,) -> (S,) factors on the gradient that flows back into each z_s
  in `path` (DReG's normalised weights), computed without gradient; None for 1."""
  log_likelihood = get_log_likelihood(likelihood)
  log_prior = log_prior_fn(prior)
  posterior = as_posterior(encode(x))
  stopped = posterior.stop_gradient()
  z, log_q = jax.vmap(lambda s: _draw(posterior, key, s))(jnp.arange(num_samples))
  log_joint = lambda z_s: log_likelihood(x, decode(z_s)) + log_prior(z_s)
  full = jax.vmap(log_joint)(z) - log_q
  z_path = z
  if path_scale is not None:
    z_path = _scale_gradient(z, jax.lax.stop_gradient(path_scale(full)))
  z_stopped = jax.lax.stop_gradient(z)
  return LogWeights(
      full=full,
      path=jax.vmap(log_joint)(z_path) - jax.vmap(stopped.log_prob)(z_path),
      generative=jax.vmap(log_joint)(z_stopped) - jax.vmap(stopped.log_prob)(z_stopped))


def _mean_log_mean_exp(w: Array) -> Array:
  """mean_m log (1/K) sum_k exp(w[m, k]) of (M, K) log weights: MIWAE(M, K)."""
  return jnp.mean(jax.nn.logsumexp(w, axis=-1) - jnp.log(w.shape[-1]))


def _value_with_gradient(value: Array, weights: Array, terms: Array) -> Array:
  """`value`, with the gradient sum(weights * d terms) instead of its own; the weights
  carry none."""
  surrogate = jnp.sum(jax.lax.stop_gradient(weights) * terms)
  return jax.lax.stop_gradient(value) + surrogate - jax.lax.stop_gradient(surrogate)


def _iwae_estimate(w: LogWeights, estimator: str) -> Array:
  """MIWAE of (M, K) log weights with the estimator's gradient. For "dreg" `w.path`
  must carry the normalised weights as its path_scale (`log_weights`): the path
  gradient of sample k, weighted w~_k by the logsumexp, then comes out weighted w~_k^2
  (Tucker et al. 2019), in one backward pass through the decoder."""
  return _mean_log_mean_exp(w.full if estimator == "reparameterized" else w.path)


def bound_objective(
    key: Array,
    x: Array,
    encode: Encoder,
    decode: Decoder,
    *,
    objective: str = "iwae",
    num_samples: int,
    num_outer_samples: int = 1,
    ciwae_beta: float | Array = 0.5,
    gradient_estimator: str = "reparameterized",
    likelihood: Union[str, LogLikelihood] = "bernoulli",
    prior: Prior | None = None,
) -> Array:
  """A bound of the IWAE family for one example: its value is the bound, its gradient
  (`jax.grad`) the chosen estimator's, in nats.

  With K = num_samples and M = num_outer_samples (Rainforth et al. 2018), on M * K
  samples of q (`log_weights`):
    "iwae":  IWAE_K (M = 1);
    "miwae": MIWAE(M, K) = mean over M groups of IWAE_K;
    "piwae": the encoder's gradient of MIWAE(M, K), the decoder's (and a learned
             prior's) of IWAE_{M K}; its value is IWAE_{M K};
    "ciwae": ciwae_beta * ELBO + (1 - ciwae_beta) * IWAE_K on the same K samples.
  Estimators of the encoder's gradient (the decoder's is the reparameterised one always):
    "reparameterized": the plain gradient;
    "stl": q scored at stopped parameters (path only): unbiased for the ELBO, biased for
           IWAE_K with K > 1 (Tucker et al. 2019);
    "dreg": the doubly reparameterised gradient (Tucker et al. 2019) of each IWAE_K:
           unbiased, and its signal-to-noise ratio does not fall with K.
  A VampPrior's pseudo-inputs count as the prior's: their gradient is the generative one.

  Raises:
    ValueError: an unknown objective or estimator, or M, K < 1.
  """
  if objective not in OBJECTIVES[1:] or gradient_estimator not in GRADIENT_ESTIMATORS:
    raise ValueError(f"objective={objective!r} must be one of {OBJECTIVES[1:]} and "
                     f"gradient_estimator={gradient_estimator!r} one of "
                     f"{GRADIENT_ESTIMATORS}.")
  outer = num_outer_samples if objective in ("miwae", "piwae") else 1
  if min(num_samples, outer) < 1:
    raise ValueError(f"num_samples={num_samples} and num_outer_samples={outer} must be >= 1.")
  sample = functools.partial(log_weights, key, x, encode, decode,
                             num_samples=outer * num_samples, likelihood=likelihood,
                             prior=prior)
  normalised = lambda full: jax.nn.softmax(full.reshape(outer, -1), axis=-1).reshape(-1)
  w = scaled = sample(path_scale=normalised if gradient_estimator == "dreg" else None)
  if objective == "ciwae" and gradient_estimator == "dreg":
    w = sample()  # the ELBO part's path gradient carries no DReG weights
  w, scaled = (LogWeights(*(a.reshape(outer, num_samples) for a in t)) for t in (w, scaled))
  if objective == "ciwae":
    elbo_part = jnp.mean(w.full if gradient_estimator == "reparameterized" else w.path)
    return (ciwae_beta * elbo_part
            + (1.0 - ciwae_beta) * _iwae_estimate(scaled, gradient_estimator))
  if objective != "piwae":
    return _iwae_estimate(scaled, gradient_estimator)
  encoder = _iwae_estimate(scaled, gradient_estimator)
  miwae_weights = jax.nn.softmax(w.full, axis=-1) / outer
  iwae_weights = jax.nn.softmax(w.full.reshape(-1)).reshape(w.full.shape)
  value = jax.nn.logsumexp(w.full) - jnp.log(w.full.size)
  # MIWAE's gradient, its generative part moved from MIWAE's weights to IWAE_{MK}'s.
  return (_value_with_gradient(value, iwae_weights - miwae_weights, w.generative)
          + encoder - jax.lax.stop_gradient(encoder))


# ------------------------------------------------------------------ stochastic hierarchies


def layer_kls(key: Array, x: Array, encode: Encoder, *, prior: Prior,
              num_samples: int = 1) -> Array:
  """The KL of each stochastic layer of a hierarchy, (L,) in nats, Monte Carlo.

  mean_k [log q(z_l,k|.) - log p(z_l,k|.)] over the samples that `elbo(key, x, encode,
  ..., num_samples=num_samples)` draws with the same key, so the layers' KLs add up to
  its `kl` (for a hierarchy always the Monte Carlo estimate).

  Args:
    key, x, num_samples: as in `elbo`.
    encode: x -> a `vae.kernels.posteriors.Hierarchical`.
    prior: a `vae.kernels.priors.Hierarchical` with the same layer sizes.
  """
  posterior = as_posterior(encode(x))
  z = jax.vmap(lambda k: _draw(posterior, key, k)[0])(jnp.arange(num_samples))
  per_sample = jax.vmap(lambda z_k: posterior.layer_log_probs(z_k)
                        - prior.layer_log_probs(z_k))(z)
  return jnp.mean(per_sample, axis=0)


# ------------------------------------------------------------------ batched forms


def _batched(per_example):
  """Maps a `fn(key, x, encode, decode, **kw)` over a batch, one key per example."""

  def batched(key, x, encode, decode, **kwargs):
    return batching.map_examples(
        lambda k, xi: per_example(k, xi, encode, decode, **kwargs), key, x)

  batched.__name__ = per_example.__name__ + "_batch"
  batched.__doc__ = (
      f"`{per_example.__name__}` over a batch x of shape (B, ...): example i's key is "
      "fold_in(key, i) (`vae.kernels.batching`); every output gains a leading (B,) axis."
  )
  return batched


elbo_batch = _batched(elbo)
iwae_bound_batch = _batched(iwae_bound)
bound_gap_batch = _batched(bound_gap)
bound_objective_batch = _batched(bound_objective)
