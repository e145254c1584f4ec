"""The pure kernels of variational autoencoders: per-example functions in nats, no Flax, no
state, no I/O, safe under `jax.jit`, `jax.vmap` and `jax.grad`.

Imports: jax, numpy and optax only (the light install, `pip install vae-jax`), and the
modules of this package; nothing else of `vae`.

The identity they rest on: log p(x) = ELBO(x) + KL(q(z|x) || p(z|x)), so the bound gap
log p(x) - ELBO is the distance from the encoder's posterior to the true one.

Modules:
  gaussian: diagonal Gaussian log-densities and KL divergences (the one home).
  likelihoods: log p(x|z): Bernoulli logits, Gaussian (mean, log-variance).
  bounds: ELBO, IWAE, the bound gap, the IWAE family and its gradient estimators.
  batching: per-example kernels over a batch, one key per example index.
  posteriors: q(z|x) families: diagonal, full-covariance, IAF, hierarchical.
  priors: p(z): N(0, I), mixtures, the VampPrior, hierarchical.
  collapse: KL per dimension, free bits, I(x; z) and the aggregate posterior.
  padding: latents padded to a larger size, the unused dimensions masked out.
  ais: annealed importance sampling, a second estimate of log p(x).
  inference_gap: the per-example optimal q* and the approximation / amortisation gaps.

Re-exported here (`from vae import kernels; kernels.elbo_batch(...)`):
  gaussian_kl, gaussian_kl_pair, gaussian_kl_per_dim, gaussian_log_prob;
  bernoulli_log_likelihood, gaussian_log_likelihood, get_log_likelihood, LIKELIHOODS;
  elbo, iwae_bound, bound_gap, bound_objective, log_weights, layer_kls, log_prior_fn,
  as_posterior, ELBOTerms, BoundGap, LogWeights, OBJECTIVES, GRADIENT_ESTIMATORS, and
  the batched forms elbo_batch,
  iwae_bound_batch, bound_gap_batch, bound_objective_batch;
  example_keys, batch_keys, map_examples.
"""

from vae.kernels import ais, collapse, inference_gap, padding, posteriors, priors
from vae.kernels.batching import batch_keys, example_keys, map_examples
from vae.kernels.bounds import (GRADIENT_ESTIMATORS, OBJECTIVES, BoundGap, ELBOTerms, LogWeights,
                                as_posterior, bound_gap, bound_gap_batch, bound_objective,
                                bound_objective_batch, elbo, elbo_batch, iwae_bound,
                                iwae_bound_batch, layer_kls, log_prior_fn, log_weights)
from vae.kernels.gaussian import (gaussian_kl, gaussian_kl_pair, gaussian_kl_per_dim,
                                  gaussian_log_prob)
from vae.kernels.likelihoods import (LIKELIHOODS, bernoulli_log_likelihood, gaussian_log_likelihood,
                                     get_log_likelihood)

__all__ = [
    "ais", "collapse", "inference_gap", "padding", "posteriors", "priors",
    "batch_keys", "example_keys", "map_examples",
    "GRADIENT_ESTIMATORS", "OBJECTIVES", "BoundGap", "ELBOTerms", "LogWeights", "as_posterior",
    "bound_gap", "bound_gap_batch",
    "bound_objective", "bound_objective_batch", "elbo", "elbo_batch", "iwae_bound",
    "iwae_bound_batch", "layer_kls", "log_prior_fn", "log_weights",
    "gaussian_kl", "gaussian_kl_pair", "gaussian_kl_per_dim", "gaussian_log_prob",
    "LIKELIHOODS", "bernoulli_log_likelihood", "gaussian_log_likelihood", "get_log_likelihood",
]
