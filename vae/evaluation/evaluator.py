"""`Evaluator`: params scored on a whole split, over every device; the training loop calls
it at every evaluation, and `evaluate_run` for its main pass.

Every example gets its own PRNG keys, folded from the evaluation key and its index in the
split, so the numbers do not depend on the batch size, the chunk size, the padding of the
last batch or how often the evaluation runs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vae import data
from vae.evaluation import example_metrics, split_batches, summaries
from vae.kernels import batching, collapse
from vae.models import POSTERIORS, Model
from vae.reporting.progress import ProgressLine
from vae.runtime import distributed


def mi_num_examples(model: Model, eval_config: ml_collections.ConfigDict) -> int:
  """The draws for I(x; z): eval.mi_num_examples, or the posterior family's where it is
  -1 (`vae.models.PosteriorFamily.mi_num_examples`)."""
  if eval_config.mi_num_examples == -1:
    return POSTERIORS[model.posterior].mi_num_examples
  return eval_config.mi_num_examples


class Evaluator:
  """Evaluates params on whole splits with one compiled program per batch shape."""

  def __init__(self, model: Model, eval_config: ml_collections.ConfigDict,
               mesh: jax.sharding.Mesh | None = None):
    """Batches of eval_config.batch_size examples are split over `mesh` (default: every
    device, `vae.runtime.distributed.data_mesh`); the batch size must divide by its size."""
    self.mesh = distributed.data_mesh() if mesh is None else mesh
    distributed.check_divisible(
        "batch_size", eval_config.batch_size, self.mesh,
        " (config.eval.batch_size, or --batch_size of experiments.evaluate)")
    self.batch_size = eval_config.batch_size
    self.model = model
    example_metrics_fn = example_metrics.make_example_metrics(model, eval_config)

    def batch_metrics(params, key, indices, x):
      keys = batching.example_keys(key, indices)
      return jax.vmap(example_metrics_fn, in_axes=(None, None, 0, 0))(
          params, model.prior(params), keys, x)

    self._batch_metrics = split_batches.data_parallel_jit(batch_metrics, self.mesh, 2, 2)
    self.mi_num_examples = mi_num_examples(model, eval_config)
    chunk_size = eval_config.chunk_size

    def batch_aggregate(params, draws, indices, valid, x, z):
      """(M, L) logsumexp over this batch's valid examples n of log q_l(draws_j | n);
      z (B, D): the examples' own draws, whose layers condition the layers above."""
      del indices
      layers, axes = collapse.batch_layer_posteriors(
          model.bind(params)[0], x, z)
      return collapse.aggregate_logsumexp(layers, axes, valid, draws, model.latent_sizes,
                                          chunk_size)

    self._batch_aggregate = split_batches.data_parallel_jit(batch_aggregate, self.mesh, 2, 4)

  def per_example(self, params: Any, key: jax.Array, images: np.ndarray | data.LazySplit,
                  progress: ProgressLine | None = None
                  ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Metrics of every example of `images` (N, H, W, C): ({name: (N,)}, means (N, D),
    latents {z, log_q, log_p, kl_per_dim?: (N, ...)}, `make_example_metrics`'s).

    `images` may be a `vae.data.LazySplit`: each process then reads only its part.
    `progress`, if given, is updated with the number of examples done."""
    return split_batches.map_batches(
        lambda indices, x: self._batch_metrics(params, key, indices, x),
        (images,), self.batch_size, self.mesh, progress)

  def information(self, params: Any, images: np.ndarray | data.LazySplit,
                  latents: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-draw terms of I(x; z) and KL(q(z) || p(z)), {"mutual_information",
    "marginal_kl"}: (M, L) nats for the draws of the first M = mi_num_examples examples
    (or all N if fewer) under the aggregate posterior of all N examples of `images`
    (`vae.kernels.collapse`); {} if mi_num_examples is 0."""
    if self.mi_num_examples <= 0:
      return {}
    num = len(images)
    own = collapse.OwnTerms(*(latents[k][:self.mi_num_examples]
                              for k in collapse.OwnTerms._fields))
    draws = jax.device_put(own.z, distributed.replicated(self.mesh))
    lse = split_batches.reduce_batches(
        lambda *batches: self._batch_aggregate(params, draws, *batches),
        (images, latents["z"]), self.batch_size, self.mesh, jnp.logaddexp)
    mi, marginal_kl = collapse.information_terms(own, lse - np.log(num))
    return {"mutual_information": np.asarray(mi), "marginal_kl": np.asarray(marginal_kl)}

  def evaluate(self, params: Any, key: jax.Array, images: np.ndarray | data.LazySplit,
               progress: ProgressLine | None = None) -> dict[str, Any]:
    """Means over the split (nats per example), standard errors, active units (of each
    layer as well, with several), `kl_per_dim` (a (D,) list) and the mutual information
    and marginal KL (`summaries.latent_summary`); `progress` as `per_example`'s."""
    per_example, means, latents = self.per_example(params, key, images, progress)
    return (summaries.summarize(self.model, per_example, means)
            | summaries.layer_active_units(self.model, means)
            | summaries.latent_summary(self.model, latents,
                                       self.information(params, images, latents)))
