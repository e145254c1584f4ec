"""Evaluation of a trained VAE on a whole split: ELBO terms, log p(x) and the bound gap.

Every example gets its own PRNG key, folded from the evaluation key and its index in the
split, so the numbers do not depend on the batch size, the padding of the last batch or
how often the evaluation runs.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vae import data, losses
from vae.models import Model

PER_EXAMPLE_KEYS = ("reconstruction", "kl", "elbo", "log_px", "bound_gap")


def make_example_metrics(model: Model, eval_config: ml_collections.ConfigDict) -> Callable:
  """Returns fn(params, key, x) -> (metrics dict of scalars, posterior mean (D,)) for one x.

  In nats per example: `reconstruction` = E_q log p(x|z) over `num_elbo_samples`
  samples; `kl` = KL(q(z|x) || p(z)) in closed form; `elbo` = reconstruction - kl (the
  beta = 1 bound); `log_px` = IWAE_K with K = `num_importance_samples`; `bound_gap` =
  log_px - elbo, the estimate of KL(q(z|x) || p(z|x)).
  """

  def example_metrics(params, key, x):
    encode = functools.partial(model.encode, params)
    decode = functools.partial(model.decode, params)
    elbo_key, iwae_key = jax.random.split(key)
    terms = losses.elbo(elbo_key, x, encode, decode, num_samples=eval_config.num_elbo_samples,
                        likelihood=model.likelihood)
    log_px = losses.iwae_bound(iwae_key, x, encode, decode,
                               num_samples=eval_config.num_importance_samples,
                               likelihood=model.likelihood,
                               chunk_size=eval_config.chunk_size)
    metrics = dict(reconstruction=terms.reconstruction, kl=terms.kl, elbo=terms.bound,
                   log_px=log_px, bound_gap=log_px - terms.bound)
    return metrics, encode(x)[0]

  return example_metrics


class Evaluator:
  """Evaluates params on whole splits with one compiled program per batch shape."""

  def __init__(self, model: Model, eval_config: ml_collections.ConfigDict):
    self.batch_size = eval_config.batch_size
    example_metrics = make_example_metrics(model, eval_config)

    @jax.jit
    def batch_metrics(params, key, indices, x):
      keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)
      return jax.vmap(example_metrics, in_axes=(None, 0, 0))(params, keys, x)

    self._batch_metrics = batch_metrics

  def per_example(self, params: Any, key: jax.Array, images: np.ndarray
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Metrics of every example of `images` (N, H, W, C): ({name: (N,)}, means (N, D))."""
    outputs = []
    for start, (batch, mask) in zip(
        range(0, len(images), self.batch_size), data.eval_batches(images, self.batch_size)
    ):
      indices = jnp.arange(start, start + self.batch_size)
      outputs.append((self._batch_metrics(params, key, indices, batch), mask))
    metrics = {k: [] for k in PER_EXAMPLE_KEYS}
    means = []
    for (batch_metrics, batch_means), mask in jax.device_get(outputs):
      for k in PER_EXAMPLE_KEYS:
        metrics[k].append(batch_metrics[k][mask])
      means.append(batch_means[mask])
    return {k: np.concatenate(v) for k, v in metrics.items()}, np.concatenate(means)

  def evaluate(self, params: Any, key: jax.Array, images: np.ndarray) -> dict[str, float]:
    """Means over the split (nats per example), standard errors, and active units."""
    per_example, means = self.per_example(params, key, images)
    return summarize(per_example, means)


def active_units(posterior_means: np.ndarray, threshold: float = 0.01) -> int:
  """Latent dimensions whose E_q[z_d|x] varies over the data: Cov_x(E_q[z_d]) > threshold.

  Burda et al. (2016): a unit is active when its posterior mean varies across examples.
  Args: posterior_means: (N, D).
  """
  return int(np.sum(np.var(posterior_means, axis=0) > threshold))


def summarize(per_example: dict[str, np.ndarray], means: np.ndarray) -> dict[str, float]:
  """Means and standard errors of the per-example metrics, plus active units."""
  n = len(means)
  summary = {k: float(np.mean(v)) for k, v in per_example.items()}
  for k in ("elbo", "log_px", "bound_gap"):
    summary[f"{k}_stderr"] = float(np.std(per_example[k], ddof=1) / np.sqrt(n)) if n > 1 else 0.0
  summary["active_units"] = active_units(means)
  summary["num_examples"] = n
  return summary
