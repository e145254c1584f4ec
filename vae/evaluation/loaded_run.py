"""A trained run in your hands: `load_run(workdir)` gives its model, params and config, with
methods that encode, decode, sample, interpolate and score any number of images.

Every method takes NumPy arrays (images as `vae.data.as_images` accepts them: float
(N, H, W, C) in [0, 1], uint8 or bool, or one image), works through them in fixed-size
batches of the run's `config.eval.batch_size` (the last one padded), so each compiles
once per method, on every device JAX sees, and returns NumPy arrays. `score` runs the
evaluator of `experiments.evaluate`: the same images, K and key give the same numbers.

    run = vae.load_run("runs/default")
    codes = run.encode(images)["mean"]         # (N, D)
    pictures = run.sample(16)                  # (16, H, W, C), E[x|z] for z ~ p(z)
    scores = run.score(images, num_importance_samples=1000)  # {"log_px": (N,), ...}
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from vae import data
from vae.evaluation import run_evaluation, split_batches
from vae.evaluation.evaluator import Evaluator
from vae.kernels import batching
from vae.kernels.posteriors import as_posterior
from vae.models import Model, build_model
from vae.runtime import distributed
from vae.training import best_checkpoint, checkpoints, random_streams, update, warm_start


def load_run(workdir: str | os.PathLike, step: int | str | None = None) -> "LoadedRun":
  """The run in `workdir` at a checkpoint: the latest (None), a step (int), or "best" (the
  kept best, `config.train.keep_best`). Its params are those its evaluations use (the
  average with `config.train.ema_decay` > 0). A run saved by an older version loads with
  its missing config fields at their old values, as the apps load it.

  Raises:
    ValueError: one line: no such folder, no run or checkpoint in it, a damaged
      checkpoint, or no kept best.
  """
  if not isinstance(workdir, (str, os.PathLike)) or not os.fspath(workdir):
    raise ValueError(f"workdir={workdir!r} must name a run's folder.")
  workdir = os.fspath(workdir)
  if step is not None and step != "best" and not isinstance(step, int):
    raise ValueError(f"step={step!r} must be None (the latest), an int or 'best'.")
  if not os.path.isdir(workdir):
    raise ValueError(f"workdir={workdir!r} does not exist.")
  config = checkpoints.load_config(workdir)
  params, found = best_checkpoint.load_params_at(workdir, step)
  return LoadedRun(workdir, config, params, found)


class LoadedRun:
  """A run's model with its params bound (see the module docstring).

  Attributes:
    workdir, config, step: the run's folder, its config (`ml_collections`), the step.
    params: the params pytree the methods use; `params_label` "ema" or "raw".
    model: the `vae.models.Model`; image_shape (H, W, C); latent_dim D (all layers).
    origin: where a fine-tuned run (`config.train.init_from`) started, {"source",
      "checkpoint": "best" | "latest", "step"}; None where not recorded (trained from
      scratch or before warm_start.json existed, or the file is damaged).
  """

  def __init__(self, workdir: str, config: Any, params: Any, step: int):
    self.workdir, self.config, self.params, self.step = workdir, config, params, step
    self.origin = warm_start.read_origin(workdir)
    self.params_label = update.params_label(config)
    self.image_shape = tuple(data.dataset_info(config.data).image_shape)
    self.model: Model = build_model(config.model, self.image_shape)
    self.latent_dim = self.model.latent_dim
    self._mesh = distributed.data_mesh()
    self._batch_size = config.eval.batch_size
    distributed.check_divisible("batch_size", self._batch_size, self._mesh,
                                " (config.eval.batch_size of the run)")
    self._programs: dict[str, Callable] = {}

  # ---------------------------------------------------------------- the methods

  def encode(self, images: Any) -> dict[str, np.ndarray]:
    """q(z|x) of each image: {"mean": (N, D), a point of q (its mean; the IAF's flow of
    its base's mean; with several layers each layer's given the point below)}, and with
    one layer the family's parameters: "scale" (N, D), the standard deviations, for the
    diagonal family; "scale_tril" (N, D, D), the Cholesky factor, for full_covariance."""
    def parameters(params, key, x):
      posterior, one_layer = self.model.encode(params, x), not self.model.is_hierarchy
      result = {"mean": self.model.encode_mean(params, x)}
      if one_layer and self.model.posterior == "diagonal":
        result["scale"] = jnp.exp(0.5 * posterior[1])
      if one_layer and self.model.posterior == "full_covariance":
        result["scale_tril"] = posterior.scale_tril
      return result
    return self._map("encode", parameters, self._images(images))

  def sample_posterior(self, images: Any, seed: int = 0) -> np.ndarray:
    """One draw z ~ q(z|x) per image, (N, D); image n's from fold_in(PRNGKey(seed), n)."""
    return self._map("sample_posterior", lambda params, key, x: as_posterior(
        self.model.encode(params, x)).sample(key)[0], self._images(images), seed)

  def decode(self, z: Any) -> np.ndarray:
    """E[x|z] of each code z (N, D) (or one (D,)): the likelihood's means, (N, H, W, C)."""
    return self._map("decode", lambda params, key, code: self.model.mean_image(params, code),
                     self._codes(z))

  def reconstruct(self, images: Any) -> np.ndarray:
    """E[x|z] at the point `encode` gives for each image, (N, H, W, C)."""
    return self.decode(self.encode(images)["mean"])

  def sample(self, num: int, seed: int = 0) -> np.ndarray:
    """`num` images E[x|z] for z ~ p(z), the model's own prior through every layer,
    (num, H, W, C)."""
    if not isinstance(num, int) or num < 1:
      raise ValueError(f"num={num!r} must be an int >= 1.")
    codes = self.model.sample_prior(self.params, jax.random.PRNGKey(seed), num)
    return self.decode(np.asarray(codes))

  def interpolate(self, first: Any, second: Any, num: int = 8) -> np.ndarray:
    """E[x|z] along the straight line between two images' codes (`encode`'s points),
    `num` >= 2 steps from the first to the second, (num, H, W, C)."""
    if not isinstance(num, int) or num < 2:
      raise ValueError(f"num={num!r} must be an int >= 2.")
    ends = self.encode(np.concatenate([self._images(first, "first"),
                                       self._images(second, "second")]))["mean"]
    if len(ends) != 2:
      raise ValueError("first and second must be one image each.")
    weights = np.linspace(0.0, 1.0, num, dtype=np.float32)[:, None]
    return self.decode((1 - weights) * ends[0] + weights * ends[1])

  def score(self, images: Any, num_importance_samples: int | None = None,
            seed: int | None = None) -> dict[str, np.ndarray]:
    """Per-image bounds in nats, as `experiments.evaluate` computes them: {"elbo",
    "reconstruction", "kl", "log_px" (IWAE with K = num_importance_samples, default the
    run's config.eval), "bound_gap" = log_px - elbo, and "kl_z1", ... with several
    layers}, each (N,). The key is the run's evaluation key (of `seed`, default the
    run's), folded with each image's index, so the numbers of a split's images are
    those of `experiments.evaluate` on that split with the same K."""
    overrides = ({} if num_importance_samples is None
                 else {"num_importance_samples": num_importance_samples})
    settings = run_evaluation.eval_settings(self.config.eval, overrides)
    if settings.num_importance_samples < 1:
      raise ValueError(f"num_importance_samples={num_importance_samples!r} must be >= 1.")
    seed = self.config.seed if seed is None else seed
    metrics, _, _ = Evaluator(self.model, settings, self._mesh).per_example(
        self.params, random_streams.stream(seed, random_streams.EVAL), self._images(images))
    return metrics

  # ---------------------------------------------------------------- batching

  def _images(self, images: Any, where: str = "images") -> np.ndarray:
    return data.as_images(images, where, self.image_shape)

  def _codes(self, z: Any) -> np.ndarray:
    z = np.asarray(z)
    z = z[None] if z.ndim == 1 else z
    if z.ndim != 2 or z.shape[1] != self.latent_dim or not np.issubdtype(z.dtype, np.floating):
      raise ValueError(f"z has shape {z.shape} and dtype {z.dtype}; expected floats shaped "
                       f"(N, {self.latent_dim}) or one code ({self.latent_dim},).")
    return z.astype(np.float32)

  def _map(self, name: str, fn: Callable, rows: np.ndarray, seed: int = 0) -> Any:
    """fn(params, key, row) over `rows` (N, ...), key fold_in(PRNGKey(seed), n) for row n,
    in batches of config.eval.batch_size over every device; one program per name."""
    if name not in self._programs:
      def batch_fn(params, key, indices, batch):
        return jax.vmap(fn, in_axes=(None, 0, 0))(
            params, batching.example_keys(key, indices), batch)
      self._programs[name] = split_batches.data_parallel_jit(batch_fn, self._mesh, 2, 2)
    program, key = self._programs[name], jax.random.PRNGKey(seed)
    return split_batches.map_batches(
        lambda indices, batch: program(self.params, key, indices, batch), (rows,),
        self._batch_size, self._mesh)


__all__ = ["LoadedRun", "load_run"]
