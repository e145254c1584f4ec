"""The metrics of one example, and the one list of their names that every evaluation reports.

`make_example_metrics` gives one x's ELBO terms, IWAE log p(x) and bound gap;
`make_example_latents` the collapse diagnostics' per-example part. `metric_names(model)`
names the metrics whose mean and standard error every evaluation writes: the training
loop's (metrics.jsonl) and `evaluate_run`'s (eval_<split>.json) alike.

Memory: each example streams its K importance samples in chunks of `chunk_size`
(`vae.kernels.bounds.iwae_bound`), so a batch of B examples holds B * chunk_size decoder
evaluations at once whatever K is.
"""

from __future__ import annotations

from typing import Callable

import jax
import ml_collections

from vae.kernels import bounds, collapse
from vae.models import Model

# Every model's per-example metrics, in nats, in the order the evaluations write them.
PER_EXAMPLE_METRICS = ("elbo", "reconstruction", "kl", "log_px", "bound_gap")


def metric_names(model: Model) -> tuple[str, ...]:
  """The per-example metrics of `model` that an evaluation summarises with a mean and a
  standard error: `PER_EXAMPLE_METRICS`, then with several stochastic layers each layer's KL
  (`kl_z1`, ..., `kl_zL`)."""
  return PER_EXAMPLE_METRICS + model.layer_kl_names


def make_example_metrics(model: Model, eval_config: ml_collections.ConfigDict) -> Callable:
  """Returns fn(params, prior, key, x) -> (metrics dict of scalars, a point of q (D,),
  latents) for one x, `prior` = `model.prior(params)` (computed once per batch).

  In nats per example: `reconstruction` = E_q log p(x|z) over `num_elbo_samples`
  samples; `kl` = KL(q(z|x) || p(z)), in closed form for a Gaussian q and p = N(0, I),
  else the Monte Carlo estimate from the same samples; `elbo` = reconstruction - kl (the
  beta = 1 bound); `log_px` = IWAE_K with K = `num_importance_samples`; `bound_gap` =
  log_px - elbo, the estimate of KL(q(z|x) || p(z|x)); with several stochastic layers
  `kl_z1`, ..., `kl_zL`, each layer's Monte Carlo KL from the samples of `kl`.
  latents: `make_example_latents`'s (its `kl_per_dim` sums to `kl`).
  """

  example_latents = make_example_latents(model, eval_config)

  def example_metrics(params, prior, key, x):
    encode, decode = model.bind(params)
    elbo_key, iwae_key = jax.random.split(key)
    terms = bounds.elbo(elbo_key, x, encode, decode, num_samples=eval_config.num_elbo_samples,
                        likelihood=model.likelihood, prior=prior)
    log_px = bounds.iwae_bound(iwae_key, x, encode, decode,
                               num_samples=eval_config.num_importance_samples,
                               likelihood=model.likelihood,
                               chunk_size=eval_config.chunk_size, prior=prior)
    metrics = dict(reconstruction=terms.reconstruction, kl=terms.kl, elbo=terms.elbo,
                   log_px=log_px, bound_gap=log_px - terms.elbo)
    if model.is_hierarchy:
      kls = bounds.layer_kls(elbo_key, x, encode, prior=prior,
                             num_samples=eval_config.num_elbo_samples)
      metrics.update({key: kls[l] for l, key in enumerate(model.layer_kl_names)})
    return metrics, model.encode_mean(params, x), example_latents(params, prior, key, x)

  return example_metrics


def make_example_latents(model: Model, eval_config: ml_collections.ConfigDict) -> Callable:
  """Returns fn(params, prior, key, x) -> the collapse diagnostics' per-example part for
  one x (`make_example_metrics`'s latents, from the same key): one draw of q and its
  per-layer densities, `vae.kernels.collapse.OwnTerms` fields z (D,), log_q and log_p (L,)
  nats, and where q and p factorise `kl_per_dim` (D,) nats from the ELBO's samples."""

  def example_latents(params, prior, key, x):
    elbo_key, _ = jax.random.split(key)
    posterior = bounds.as_posterior(model.encode(params, x))
    encoded = lambda _: posterior  # the encoder's pass, once for the terms below
    latents = collapse.own_terms(jax.random.fold_in(key, 1), x, encoded, prior=prior)._asdict()
    if collapse.factorizes(posterior, prior):
      latents["kl_per_dim"] = collapse.kl_per_dim(
          elbo_key, x, encoded, prior=prior, num_samples=eval_config.num_elbo_samples)
    return latents

  return example_latents
