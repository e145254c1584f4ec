"""Evaluation of a trained VAE: ELBO terms, log p(x), the bound gap and where it comes from.

Two levels:
  * `Evaluator` scores params on a whole split (ELBO, IWAE log p(x) and the bound gap per
    example); the training loop calls it at every evaluation.
  * `evaluate_run` evaluates a run's checkpoint as `experiments/evaluate.py` asks: a tight
    IWAE estimate of log p(x) (K = 5000 by default) on a whole split, optionally the split
    of the gap into its approximation and amortisation parts (`vae.inference_gap`) and an
    AIS estimate of log p(x) (`vae.ais`) on a subset, and writes `eval_<split>.json`.

Every example gets its own PRNG keys, folded from the evaluation key and its index in the
split, so the numbers do not depend on the batch size, the chunk size, the padding of the
last batch or how often the evaluation runs. The main pass uses the key of the training
run's own evaluations, so with the run's `config.eval` settings it reproduces the test
numbers of metrics.jsonl.

Memory: examples are vmapped in batches of `batch_size`, and each example streams its K
importance samples in chunks of `chunk_size` (`vae.losses.iwae_bound`), so the working
set holds batch_size * chunk_size decoder evaluations at once whatever K is.

Devices: every batch is split over the "data" axis of a mesh of all devices of all
processes (`vae.distributed`), params replicated, so a batch size must divide by the
device count. Each process reads only its contiguous part of a split (given a
`vae.data.LazySplit`) and fills its rows of every batch from it; every process receives
every result, and only process 0 shows progress or writes files.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import resource
import sys
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from vae import ais, checkpoints, data, distributed, inference_gap, losses
from vae.models import Model, build_model

PER_EXAMPLE_KEYS = ("reconstruction", "kl", "elbo", "log_px", "bound_gap")
ESTIMATORS = ("iwae", "ais")

# vae.train evaluates with fold_in(PRNGKey(seed), 2); the other streams are disjoint from it.
_IWAE_STREAM, _GAP_STREAM, _AIS_STREAM = 2, 10, 11


# ------------------------------------------------------------------ per-example metrics


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


def _fold_in_each(key: jax.Array, indices: jax.Array) -> jax.Array:
  """(B,) keys fold_in(key, i), one per example index i."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)


def _map_batches(fn: Callable, arrays: tuple[Any, ...], batch_size: int,
                 mesh: jax.sharding.Mesh, progress: Progress | None = None) -> Any:
  """Applies fn(indices (B,), *batches) to fixed-size batches of `arrays` (each (N, ...)).

  `arrays` are the whole split's (numpy arrays, or `vae.data.LazySplit`s that read only
  what is asked for): each process reads only its part, `distributed.process_rows(N)`,
  and fills rows p/P to (p+1)/P of every global batch from it, padded with zeros where
  its part runs out (so fn compiles once); `indices` are the examples' indices in the
  split. fn's arguments are split over the mesh's "data" axis and it returns replicated
  arrays, so every process gets every result. The next batch is dispatched before the
  previous one is fetched, so the host never leaves the devices idle.

  Returns:
    fn's output pytree with leaves concatenated over the N examples in split order, as
    numpy arrays.
  """
  num = len(arrays[0])
  if num == 0:
    raise ValueError("There are no examples to evaluate.")
  rows = distributed.process_rows(num)
  local = [np.asarray(array[rows.start:rows.stop]) for array in arrays]
  processes = jax.process_count()
  per_process, local_batch = -(-num // processes), batch_size // processes
  by_example = distributed.sharded_along(mesh, 0)
  outputs, positions, pending = [], [], None
  done = 0

  def fetch(item):
    result, valid, num_done = item
    outputs.append(jax.tree.map(lambda leaf: np.asarray(leaf)[valid], jax.device_get(result)))
    if progress is not None:
      progress.update(num_done)

  # Every process makes the same number of calls, whatever the size of its part.
  for start in range(0, per_process, local_batch):
    offsets = start + np.arange(local_batch)
    batches = [rows.start + offsets]
    batches += [_zero_padded(array[start:start + local_batch], local_batch)
                for array in local]
    result = fn(*(distributed.put_process_rows(b, by_example) for b in batches))
    # Process q's rows of this batch are examples q * per_process + offsets.
    batch_positions = (np.arange(processes)[:, None] * per_process + offsets).ravel()
    valid = np.tile(offsets < per_process, processes) & (batch_positions < num)
    positions.append(batch_positions[valid])
    done += int(valid.sum())
    if pending is not None:
      fetch(pending)
    pending = (result, valid, done)
  fetch(pending)
  order = np.argsort(np.concatenate(positions))
  return jax.tree.map(lambda *leaves: np.concatenate(leaves)[order], *outputs)


def _zero_padded(rows: np.ndarray, size: int) -> np.ndarray:
  """`rows` (n <= size, ...) followed by size - n rows of zeros."""
  padding = np.zeros((size - len(rows),) + rows.shape[1:], rows.dtype)
  return np.concatenate([rows, padding])


def _data_parallel_jit(fn: Callable, mesh: jax.sharding.Mesh, num_replicated: int,
                       num_sharded: int) -> Callable:
  """jax.jit(fn) for fn(*replicated args, *args split along their first axis), every
  output replicated (each process then reads the whole batch of results)."""
  replicated = distributed.replicated(mesh)
  by_example = distributed.sharded_along(mesh, 0)
  return jax.jit(fn, out_shardings=replicated,
                 in_shardings=(replicated,) * num_replicated + (by_example,) * num_sharded)


class Evaluator:
  """Evaluates params on whole splits with one compiled program per batch shape."""

  def __init__(self, model: Model, eval_config: ml_collections.ConfigDict,
               mesh: jax.sharding.Mesh | None = None):
    """Batches of eval_config.batch_size examples are split over `mesh` (default: every
    device, `vae.distributed.data_mesh`); the batch size must divide by its size."""
    self.mesh = distributed.data_mesh() if mesh is None else mesh
    distributed.check_divisible(
        "batch_size", eval_config.batch_size, self.mesh,
        " (config.eval.batch_size, or --batch_size of experiments.evaluate)")
    self.batch_size = eval_config.batch_size
    example_metrics = make_example_metrics(model, eval_config)

    def batch_metrics(params, key, indices, x):
      keys = _fold_in_each(key, indices)
      return jax.vmap(example_metrics, in_axes=(None, 0, 0))(params, keys, x)

    self._batch_metrics = _data_parallel_jit(batch_metrics, self.mesh, 2, 2)

  def per_example(self, params: Any, key: jax.Array, images: np.ndarray | data.LazySplit,
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Metrics of every example of `images` (N, H, W, C): ({name: (N,)}, means (N, D)).

    `images` may be a `vae.data.LazySplit`: each process then reads only its part."""
    return self._per_example(params, key, images)

  def _per_example(self, params, key, images, progress=None):
    metrics, means = _map_batches(
        lambda indices, x: self._batch_metrics(params, key, indices, x), (images,),
        self.batch_size, self.mesh, progress)
    return {k: metrics[k] for k in PER_EXAMPLE_KEYS}, means

  def evaluate(self, params: Any, key: jax.Array, images: np.ndarray | data.LazySplit
               ) -> dict[str, float]:
    """Means over the split (nats per example), standard errors, and active units."""
    per_example, means = self.per_example(params, key, images)
    return summarize(per_example, means)


def active_units(posterior_means: np.ndarray, threshold: float = 0.01) -> int:
  """Latent dimensions whose E_q[z_d|x] varies over the data: Cov_x(E_q[z_d]) > threshold.

  Burda et al. (2016): a unit is active when its posterior mean varies across examples.
  Args: posterior_means: (N, D).
  """
  return int(np.sum(np.var(posterior_means, axis=0) > threshold))


def _stderr(values: np.ndarray) -> float:
  """Standard error of the mean over examples; 0 for fewer than two."""
  n = len(values)
  return float(np.std(values, ddof=1) / np.sqrt(n)) if n > 1 else 0.0


def summarize(per_example: dict[str, np.ndarray], means: np.ndarray,
              stderr_keys: tuple[str, ...] = ("elbo", "log_px", "bound_gap")
              ) -> dict[str, float]:
  """Means and standard errors (for `stderr_keys`) of per-example metrics, active units."""
  n = len(means)
  summary = {k: float(np.mean(v)) for k, v in per_example.items()}
  for k in stderr_keys:
    summary[f"{k}_stderr"] = _stderr(per_example[k])
  summary["active_units"] = active_units(means)
  summary["num_examples"] = n
  return summary


# ------------------------------------------------------------------ progress


def _format_duration(seconds: float) -> str:
  seconds = int(max(0, seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
  """Examples done, speed and ETA of one pass.

  On a terminal, one line rewritten in place (`\\r`) on stderr; elsewhere (logs, pipes),
  an absl log line at most every `log_every` seconds and at the end. From the second
  batch on, the speed and ETA count from the first finished batch, so compilation does
  not distort them.
  """

  def __init__(self, label: str, total: int, log_every: float = 30.0):
    self.label, self.total, self._log_every = label, total, log_every
    self._tty = sys.stderr.isatty()
    self._start = time.perf_counter()
    self._first: tuple[float, int] | None = None
    self._last_log = -math.inf
    self._width = 0

  def update(self, done: int) -> None:
    now = time.perf_counter()
    if self._first is None:
      self._first = (now, done)
    first_time, first_done = self._first
    if done > first_done:
      rate = (done - first_done) / (now - first_time)
    else:  # After one batch, the rate includes compilation: the ETA is an upper bound.
      rate = done / max(now - self._start, 1e-9)
    eta = _format_duration((self.total - done) / rate) if rate > 0 else "--"
    speed = f"{rate:.1f} examples/s"
    line = (f"{self.label}: {done}/{self.total} examples ({100 * done // self.total}%) | "
            f"{speed} | elapsed {_format_duration(now - self._start)} | ETA {eta}")
    finished = done >= self.total
    if self._tty:  # Padded to cover a longer previous line.
      sys.stderr.write("\r" + line.ljust(self._width) + ("\n" if finished else ""))
      sys.stderr.flush()
      self._width = len(line)
    elif finished or now - self._last_log >= self._log_every:
      logging.info("%s", line)
      self._last_log = now


# ------------------------------------------------------------------ evaluating a run


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """What `evaluate_params` computes; all sample counts are per example.

  Attributes:
    num_importance_samples: K of the IWAE estimate of log p(x) on the whole split.
    chunk_size: importance samples evaluated at once per example (memory, not result).
    batch_size: examples vmapped at once (memory, not result).
    num_elbo_samples: samples of the reconstruction term of the ELBO.
    num_examples: size of the subset (the first examples of the split) on which the gap
      decomposition and AIS run; at most the split's size.
    subset_batch_size: examples fitted (q*) or annealed (AIS) at once. Small batches give
      finer progress, and a vmapped q* fit runs until the slowest example of its batch
      stops.
    decompose_gap: fit q* per example and split the gap (`vae.inference_gap`).
    estimator: "iwae", or "ais" to add AIS on the subset (also the log p(x) that the
      decomposition then uses).
    gap_*: settings of `vae.inference_gap.optimal_gaussian`, and gap_num_elbo_samples
      the samples scoring ELBO[q_enc] and ELBO[q*].
    ais_*: settings of `vae.ais.ais`.
  """

  num_importance_samples: int = 5000
  chunk_size: int = 100
  batch_size: int = 100
  num_elbo_samples: int = 10
  num_examples: int = 100
  subset_batch_size: int = 20
  decompose_gap: bool = False
  estimator: str = "iwae"
  gap_num_samples: int = 100
  gap_learning_rate: float = 1e-2
  gap_max_steps: int = 2000
  gap_check_every: int = 50
  gap_patience: int = 2
  gap_tolerance: float = 0.01
  gap_num_elbo_samples: int = 1000
  ais_steps: int = 500
  ais_chains: int = 16
  ais_leapfrog_steps: int = 5
  ais_start: str = "prior"
  ais_schedule: str = "sigmoid"

  def validate(self) -> None:
    """Raises ValueError naming the first bad value."""
    for name in ("num_importance_samples", "chunk_size", "batch_size", "num_elbo_samples",
                 "num_examples", "subset_batch_size", "gap_num_samples", "gap_max_steps",
                 "gap_check_every", "gap_patience", "gap_num_elbo_samples", "ais_steps",
                 "ais_chains", "ais_leapfrog_steps"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid: it must be an integer >= 1.")
    for name in ("gap_learning_rate", "gap_tolerance"):
      value = getattr(self, name)
      if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} is invalid: it must be a finite number >= 0.")
    if self.gap_learning_rate == 0:
      raise ValueError("gap_learning_rate=0 is invalid: it must be > 0.")
    for name, valid in (("estimator", ESTIMATORS), ("ais_start", ais.STARTS),
                        ("ais_schedule", ais.SCHEDULES)):
      if getattr(self, name) not in valid:
        raise ValueError(f"{name}={getattr(self, name)!r} is invalid: it must be one of "
                         f"{valid}.")


def _peak_rss_mib() -> float:
  """Peak resident memory of this process so far, in MiB."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def _mean_and_stderr(name: str, values: np.ndarray) -> dict[str, float]:
  return {name: float(np.mean(values)), f"{name}_stderr": _stderr(values)}


def _subset_batch_size(options: EvalOptions, num: int, mesh: jax.sharding.Mesh) -> int:
  """subset_batch_size, or fewer for a smaller subset, rounded up to fill the mesh."""
  return -(-min(options.subset_batch_size, num) // mesh.size) * mesh.size


def _decompose(model: Model, params: Any, key: jax.Array,
               images: np.ndarray | data.LazySplit,
               log_px: np.ndarray, options: EvalOptions, mesh: jax.sharding.Mesh,
               progress: bool) -> dict[str, np.ndarray]:
  """Per-example GapDecomposition fields of `images` (n, H, W, C), as numpy arrays."""
  fit_options = dict(num_samples=options.gap_num_samples,
                     learning_rate=options.gap_learning_rate,
                     max_steps=options.gap_max_steps, check_every=options.gap_check_every,
                     patience=options.gap_patience, tolerance=options.gap_tolerance)

  def batch_fn(params, indices, x, batch_log_px):
    encode = functools.partial(model.encode, params)
    decode = functools.partial(model.decode, params)
    return jax.vmap(lambda k, xi, lp: inference_gap.decompose_gap(
        k, xi, encode, decode, lp, likelihood=model.likelihood,
        num_elbo_samples=options.gap_num_elbo_samples, **fit_options))(
            _fold_in_each(key, indices), x, batch_log_px)

  batch_fn = _data_parallel_jit(batch_fn, mesh, 1, 3)
  meter = Progress("gap decomposition (q* per example)", len(images)) if progress else None
  result = _map_batches(functools.partial(batch_fn, params),
                        (images, log_px.astype(np.float32)),
                        _subset_batch_size(options, len(images), mesh), mesh, meter)
  return result._asdict()


def _ais(model: Model, params: Any, key: jax.Array,
         images: np.ndarray | data.LazySplit,
         options: EvalOptions, mesh: jax.sharding.Mesh, progress: bool
         ) -> dict[str, np.ndarray]:
  """Per-example AISResult fields of `images` (n, H, W, C), as numpy arrays."""

  def batch_fn(params, indices, x):
    encode = functools.partial(model.encode, params)
    decode = functools.partial(model.decode, params)
    return jax.vmap(lambda k, xi: ais.ais(
        k, xi, encode, decode, num_steps=options.ais_steps, num_chains=options.ais_chains,
        num_leapfrog_steps=options.ais_leapfrog_steps, likelihood=model.likelihood,
        start=options.ais_start, schedule=options.ais_schedule))(
            _fold_in_each(key, indices), x)

  batch_fn = _data_parallel_jit(batch_fn, mesh, 1, 2)
  meter = Progress("AIS", len(images)) if progress else None
  return _map_batches(functools.partial(batch_fn, params), (images,),
                      _subset_batch_size(options, len(images), mesh), mesh,
                      meter)._asdict()


def evaluate_params(model: Model, params: Any, images: np.ndarray | data.LazySplit,
                    seed: int, options: EvalOptions, progress: bool = True
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """Evaluates params on `images` (N, H, W, C) as `options` says.

  Args:
    model: the model that `params` belong to.
    params: its params pytree.
    images: the split, float32 in [0, 1], as an array or a `vae.data.LazySplit` (each
      process then reads only its part of it, and of the subset).
    seed: the run's seed; the keys are fold_in(PRNGKey(seed), stream) per pass (the IWAE
      pass uses the training run's evaluation key), then fold_in(., example index).
    options: what to compute.
    progress: show progress and ETA of each pass (in process 0 only).

  Returns:
    (summary, per_example): the summary in nats per example (the keys of
    `evaluate_run`'s JSON except workdir, step and split), and every per-example array:
    the metrics (N,), `posterior_mean` (N, D), and the `gap_*` and `ais_*` arrays of the
    subset, (n,) or (n, D).
  """
  options.validate()
  if len(images) == 0:
    raise ValueError("The split has no examples to evaluate.")
  start_time = time.perf_counter()
  progress = progress and distributed.is_primary()
  root = jax.random.PRNGKey(seed)
  eval_config = ml_collections.ConfigDict(dict(
      batch_size=options.batch_size, num_elbo_samples=options.num_elbo_samples,
      num_importance_samples=options.num_importance_samples,
      chunk_size=options.chunk_size))
  evaluator = Evaluator(model, eval_config)
  mesh = evaluator.mesh
  meter = (Progress(f"IWAE log p(x), K={options.num_importance_samples}", len(images))
           if progress else None)
  metrics, means = evaluator._per_example(  # pylint: disable=protected-access
      params, jax.random.fold_in(root, _IWAE_STREAM), images, meter)
  summary: dict[str, Any] = dict(
      num_examples=len(images), latent_dim=int(means.shape[1]), seed=seed,
      **{k: getattr(options, k) for k in ("num_importance_samples", "chunk_size",
                                          "batch_size", "num_elbo_samples",
                                          "decompose_gap", "estimator")})
  for name in ("elbo", "reconstruction", "kl", "log_px", "bound_gap"):
    summary.update(_mean_and_stderr(name, metrics[name]))
  summary["active_units"] = active_units(means)
  per_example = dict(metrics, posterior_mean=means)

  subset = min(options.num_examples, len(images))
  summary["ais"] = None
  if options.estimator == "ais":
    result = _ais(model, params, jax.random.fold_in(root, _AIS_STREAM), images[:subset],
                  options, mesh, progress)
    iwae = metrics["log_px"][:subset]
    summary["ais"] = dict(
        num_examples=subset, **_mean_and_stderr("log_px", result["log_px"]),
        **_mean_and_stderr("iwae_log_px", iwae),
        **_mean_and_stderr("ais_minus_iwae", result["log_px"] - iwae),
        acceptance_rate=float(np.mean(result["acceptance_rate"])),
        **{k[len("ais_"):]: v for k, v in dataclasses.asdict(options).items()
           if k.startswith("ais_")})
    per_example.update(ais_log_px=result["log_px"],
                       ais_acceptance_rate=result["acceptance_rate"])

  summary["gap_decomposition"] = None
  if options.decompose_gap:
    log_px = (per_example["ais_log_px"] if options.estimator == "ais"
              else metrics["log_px"][:subset])
    result = _decompose(model, params, jax.random.fold_in(root, _GAP_STREAM),
                        images[:subset], log_px, options, mesh, progress)
    section = dict(num_examples=subset, log_px_estimator=options.estimator)
    for name in ("log_px", "elbo_encoder", "elbo_optimal", "total_gap",
                 "approximation_gap", "amortization_gap"):
      section.update(_mean_and_stderr(name, result[name]))
    section["mean_steps"] = float(np.mean(result["num_steps"]))
    section["fraction_at_max_steps"] = float(np.mean(
        result["num_steps"] >= options.gap_max_steps))
    section.update({k[len("gap_"):]: v for k, v in dataclasses.asdict(options).items()
                    if k.startswith("gap_")})
    summary["gap_decomposition"] = section
    per_example.update({f"gap_{k}": v for k, v in result.items()})

  summary["seconds"] = time.perf_counter() - start_time
  summary["peak_rss_mib"] = _peak_rss_mib()
  return summary, per_example


def evaluate_run(
    workdir: str,
    split: str = "test",
    num_importance_samples: int = 5000,
    *,
    decompose_gap: bool = False,
    num_examples: int = 100,
    estimator: str = "iwae",
    step: int | None = None,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    num_elbo_samples: int | None = None,
    ais_steps: int = 500,
    ais_chains: int = 16,
    ais_leapfrog_steps: int = 5,
    ais_start: str = "prior",
    write: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
  """Evaluates the latest (or `step`'s) checkpoint of a run on one split.

  Reads `workdir/config.json` and the checkpoint, rebuilds the model and the split, and
  computes, in nats per example, means and standard errors over the split of: the ELBO,
  its reconstruction and KL terms, log p(x) by IWAE with K = num_importance_samples, the
  bound gap log p(x) - ELBO, and the active units. With `decompose_gap`, the
  approximation and amortisation gaps on the first `num_examples` examples; with
  `estimator="ais"`, AIS estimates of log p(x) on those examples beside IWAE's.

  Args:
    workdir: the run's folder.
    split: "train", "validation" or "test".
    num_importance_samples: K of IWAE.
    decompose_gap: also split the gap (Cremer et al. 2018), see `vae.inference_gap`.
    num_examples: examples (the first of the split) for the decomposition and AIS.
    estimator: "iwae" or "ais" (AIS added on the subset, see `vae.ais`).
    step: the checkpoint to evaluate; None for the latest.
    batch_size, chunk_size, num_elbo_samples: None takes the run's config.eval values.
    ais_steps, ais_chains, ais_leapfrog_steps, ais_start: AIS settings.
    write: write `workdir/eval_<split>.json` (the returned dict) and the per-example
      arrays to `workdir/eval_<split>.npz` (process 0 only).
    progress: show progress and ETA.

  Returns:
    The summary dict (see README, "Evaluating a run").

  Raises:
    ValueError: a bad argument, or a workdir without config or checkpoint.
  """
  if split not in data.SPLITS:
    raise ValueError(f"split={split!r} is not one of {data.SPLITS}.")
  if not os.path.isdir(workdir):
    raise ValueError(f"workdir={workdir!r} does not exist. Check --workdir.")
  config = checkpoints.load_config(workdir)
  options = EvalOptions(
      num_importance_samples=num_importance_samples,
      chunk_size=config.eval.chunk_size if chunk_size is None else chunk_size,
      batch_size=config.eval.batch_size if batch_size is None else batch_size,
      num_elbo_samples=(config.eval.num_elbo_samples if num_elbo_samples is None
                        else num_elbo_samples),
      num_examples=num_examples, decompose_gap=decompose_gap, estimator=estimator,
      ais_steps=ais_steps, ais_chains=ais_chains, ais_leapfrog_steps=ais_leapfrog_steps,
      ais_start=ais_start)
  options.validate()
  config, params, checkpoint_step = checkpoints.load_params(workdir, step)
  model = build_model(config.model, data.dataset_info(config.data).image_shape)
  images = data.LazySplit(config.data, split)  # each process reads only its part
  if len(images) == 0:
    raise ValueError(f"The {split} split of this run's data has no examples.")
  logging.info("Evaluating %s (step %d) on %d %s examples.", workdir, checkpoint_step,
               len(images), split)
  summary, per_example = evaluate_params(model, params, images, config.seed, options,
                                         progress)
  results = dict(workdir=os.path.abspath(workdir), step=checkpoint_step, split=split,
                 **summary)
  if write and distributed.is_primary():
    with open(os.path.join(workdir, f"eval_{split}.json"), "w") as f:
      json.dump(results, f, indent=2)
    np.savez(os.path.join(workdir, f"eval_{split}.npz"), **per_example)
  return results


# ------------------------------------------------------------------ the printed table


def _row(label: str, values: dict, key: str) -> str:
  return f"  {label:<44}{values[key]:>11.3f}{values[key + '_stderr']:>11.3f}"


def format_report(results: dict[str, Any]) -> str:
  """The results of `evaluate_run` as a table, in nats per example (mean, std. error)."""
  k = results["num_importance_samples"]
  lines = [
      f"{results['workdir']}, step {results['step']}, split {results['split']}: "
      f"{results['num_examples']} examples, nats per example",
      f"  {'':<44}{'mean':>11}{'std. err.':>11}",
      _row("ELBO", results, "elbo"),
      _row("  reconstruction E_q log p(x|z)", results, "reconstruction"),
      _row("  KL(q(z|x) || p(z))", results, "kl"),
      _row(f"log p(x), IWAE with K = {k}", results, "log_px"),
      _row("bound gap log p(x) - ELBO ~ KL(q || p(z|x))", results, "bound_gap"),
      f"  {'active units':<44}{results['active_units']:>11d} of {results['latent_dim']}",
  ]
  section = results.get("ais")
  if section:
    lines += [
        f"AIS on the first {section['num_examples']} examples ({section['steps']} steps, "
        f"{section['chains']} chains, {section['leapfrog_steps']} leapfrog steps, from the "
        f"{section['start']}; acceptance {section['acceptance_rate']:.2f})",
        _row("log p(x), AIS", section, "log_px"),
        _row(f"log p(x), IWAE with K = {k}", section, "iwae_log_px"),
        _row("AIS - IWAE (paired)", section, "ais_minus_iwae"),
    ]
  section = results.get("gap_decomposition")
  if section:
    lines += [
        f"Gap decomposition on the first {section['num_examples']} examples (q* per "
        f"example: {section['mean_steps']:.0f} Adam steps on average; log p(x) by "
        f"{section['log_px_estimator'].upper()})",
        _row("log p(x)", section, "log_px"),
        _row("ELBO[q*], best diagonal Gaussian per example", section, "elbo_optimal"),
        _row("ELBO[q_encoder]", section, "elbo_encoder"),
        _row("total gap log p(x) - ELBO[q_encoder]", section, "total_gap"),
        _row("  approximation gap log p(x) - ELBO[q*]", section, "approximation_gap"),
        _row("  amortisation gap ELBO[q*] - ELBO[q_encoder]", section, "amortization_gap"),
    ]
  lines.append(f"{results['seconds']:.0f} s, peak memory {results['peak_rss_mib']:.0f} MiB")
  return "\n".join(lines)
