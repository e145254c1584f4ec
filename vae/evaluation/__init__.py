"""Evaluation of a trained VAE: ELBO terms, log p(x), the bound gap and where it comes from.

Two levels:
  * `Evaluator` scores params on a whole split (ELBO, IWAE log p(x) and the bound gap per
    example); the training loop calls it at every evaluation.
  * `evaluate_run` evaluates a run's checkpoint as its `config.eval` says, with any
    overrides (`experiments/evaluate.py` asks for K = 5000 by default): IWAE log p(x) on
    a whole split, optionally the split of the gap into its approximation and
    amortisation parts (`vae.inference_gap`) and an AIS estimate of log p(x) (`vae.ais`)
    on a subset, and writes `eval_<split>.json`.

Every example gets its own PRNG keys, folded from the evaluation key and its index in the
split, so the numbers do not depend on the batch size, the chunk size, the padding of the
last batch or how often the evaluation runs. The main pass uses the key of the training
run's own evaluations, so with the run's `config.eval` settings it reproduces the test
numbers of metrics.jsonl.

Memory: examples are vmapped in batches of `batch_size`, and each example streams its K
importance samples in chunks of `chunk_size` (`vae.bounds.iwae_bound`), so the working
set holds batch_size * chunk_size decoder evaluations at once whatever K is.

Devices: every batch is split over the "data" axis of a mesh of all devices of all
processes (`vae.distributed`), params replicated, so a batch size must divide by the
device count. Each process reads only its contiguous part of a split (given a
`vae.data.LazySplit`) and fills its rows of every batch from it; every process receives
every result, and only process 0 shows progress or writes files.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from vae import data
from vae.common import field_checks
from vae.config import checks as config_checks
from vae.kernels import ais, batching, bounds, collapse, inference_gap
from vae.models import POSTERIORS, Model, build_model
from vae.reporting.progress import ProgressLine
from vae.runtime import distributed
from vae.training import best_checkpoint, checkpoints, random_streams, update

PER_EXAMPLE_KEYS = ("reconstruction", "kl", "elbo", "log_px", "bound_gap")


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
      metrics.update({key: kls[l] for l, key in enumerate(model.layer_kl_keys)})
    return metrics, model.encode_mean(params, x), example_latents(params, prior, key, x)

  return example_metrics


def make_example_latents(model: Model, eval_config: ml_collections.ConfigDict) -> Callable:
  """Returns fn(params, prior, key, x) -> the collapse diagnostics' per-example part for
  one x (`make_example_metrics`'s latents, from the same key): one draw of q and its
  per-layer densities, `vae.collapse.OwnTerms` fields z (D,), log_q and log_p (L,) nats,
  and where q and p factorise `kl_per_dim` (D,) nats from the ELBO's samples."""

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


def _dispatch_batches(fn: Callable, arrays: tuple[Any, ...], batch_size: int,
                      mesh: jax.sharding.Mesh, with_valid: bool = False):
  """Calls fn(indices (B,), [valid (B,),] *batches) on fixed-size batches of `arrays`
  (each (N, ...)) and yields (result, valid, positions, number done) per call.

  `arrays` are the whole split's (numpy arrays, or `vae.data.LazySplit`s that read only
  what is asked for): each process reads only its part, `distributed.process_rows(N)`,
  and fills rows p/P to (p+1)/P of every global batch from it, padded with zeros where
  its part runs out (so fn compiles once); `indices` are the examples' indices in the
  split, `valid` (host numpy; also passed to fn if `with_valid`) marks the rows that are
  not padding and `positions` their places in the split. fn's arguments are split over
  the mesh's "data" axis.
  """
  num = len(arrays[0])
  if num == 0:
    raise ValueError("There are no examples to evaluate.")
  rows = distributed.process_rows(num)
  local = [np.asarray(array[rows.start:rows.stop]) for array in arrays]
  processes = jax.process_count()
  per_process, local_batch = -(-num // processes), batch_size // processes
  by_example = distributed.sharded_along(mesh, 0)
  done = 0
  # Every process makes the same number of calls, whatever the size of its part.
  for start in range(0, per_process, local_batch):
    offsets = start + np.arange(local_batch)
    # Process q's rows of this batch are examples q * per_process + offsets.
    batch_positions = (np.arange(processes)[:, None] * per_process + offsets).ravel()
    valid = np.tile(offsets < per_process, processes) & (batch_positions < num)
    batches = [rows.start + offsets]
    if with_valid:
      batches.append(valid.reshape(processes, local_batch)[jax.process_index()])
    batches += [_zero_padded(array[start:start + local_batch], local_batch)
                for array in local]
    result = fn(*(distributed.put_process_rows(b, by_example) for b in batches))
    done += int(valid.sum())
    yield result, valid, batch_positions[valid], done


def _map_batches(fn: Callable, arrays: tuple[Any, ...], batch_size: int,
                 mesh: jax.sharding.Mesh, progress: ProgressLine | None = None) -> Any:
  """Applies fn(indices (B,), *batches) to fixed-size batches of `arrays` (each (N, ...);
  see `_dispatch_batches`). fn returns replicated arrays, so every process gets every
  result. The next batch is dispatched before the previous one is fetched, so the host
  never leaves the devices idle.

  Returns:
    fn's output pytree with leaves concatenated over the N examples in split order, as
    numpy arrays.
  """
  outputs, positions, pending = [], [], None

  def fetch(item):
    result, valid, num_done = item
    outputs.append(jax.tree.map(lambda leaf: np.asarray(leaf)[valid], jax.device_get(result)))
    if progress is not None:
      progress.update(num_done)

  for result, valid, batch_positions, done in _dispatch_batches(fn, arrays, batch_size, mesh):
    positions.append(batch_positions)
    if pending is not None:
      fetch(pending)
    pending = (result, valid, done)
  fetch(pending)
  order = np.argsort(np.concatenate(positions))
  return jax.tree.map(lambda *leaves: np.concatenate(leaves)[order], *outputs)


def _reduce_batches(fn: Callable, arrays: tuple[Any, ...], batch_size: int,
                    mesh: jax.sharding.Mesh, combine: Callable) -> np.ndarray:
  """combine(...combine(fn(batch 1), fn(batch 2))...) over fixed-size batches of
  `arrays`, fn(indices, valid, *batches) returning a replicated array that leaves the
  padding rows (valid False) out; combined on the devices, fetched once."""
  total = None
  for result, *_ in _dispatch_batches(fn, arrays, batch_size, mesh, with_valid=True):
    total = result if total is None else combine(total, result)
  return np.asarray(jax.device_get(total))


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
    device, `vae.distributed.data_mesh`); the batch size must divide by its size."""
    self.mesh = distributed.data_mesh() if mesh is None else mesh
    distributed.check_divisible(
        "batch_size", eval_config.batch_size, self.mesh,
        " (config.eval.batch_size, or --batch_size of experiments.evaluate)")
    self.batch_size = eval_config.batch_size
    self.model = model
    example_metrics = make_example_metrics(model, eval_config)

    def batch_metrics(params, key, indices, x):
      keys = batching.example_keys(key, indices)
      return jax.vmap(example_metrics, in_axes=(None, None, 0, 0))(
          params, model.prior(params), keys, x)

    self._batch_metrics = _data_parallel_jit(batch_metrics, self.mesh, 2, 2)
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

    self._batch_aggregate = _data_parallel_jit(batch_aggregate, self.mesh, 2, 4)

  def per_example(self, params: Any, key: jax.Array, images: np.ndarray | data.LazySplit,
                  ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Metrics of every example of `images` (N, H, W, C): ({name: (N,)}, means (N, D),
    latents {z, log_q, log_p, kl_per_dim?: (N, ...)}, `make_example_metrics`'s).

    `images` may be a `vae.data.LazySplit`: each process then reads only its part."""
    return self._per_example(params, key, images)

  def _per_example(self, params, key, images, progress=None):
    return _map_batches(lambda indices, x: self._batch_metrics(params, key, indices, x),
                        (images,), self.batch_size, self.mesh, progress)

  def information(self, params: Any, images: np.ndarray | data.LazySplit,
                  latents: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-draw terms of I(x; z) and KL(q(z) || p(z)), {"mutual_information",
    "marginal_kl"}: (M, L) nats for the draws of the first M = mi_num_examples examples
    (or all N if fewer) under the aggregate posterior of all N examples of `images`
    (`vae.collapse`); {} if mi_num_examples is 0."""
    if self.mi_num_examples <= 0:
      return {}
    num = len(images)
    own = collapse.OwnTerms(*(latents[k][:self.mi_num_examples]
                              for k in collapse.OwnTerms._fields))
    draws = jax.device_put(own.z, distributed.replicated(self.mesh))
    lse = _reduce_batches(
        lambda *batches: self._batch_aggregate(params, draws, *batches),
        (images, latents["z"]), self.batch_size, self.mesh, jnp.logaddexp)
    mi, marginal_kl = collapse.information_terms(own, lse - np.log(num))
    return {"mutual_information": np.asarray(mi), "marginal_kl": np.asarray(marginal_kl)}

  def evaluate(self, params: Any, key: jax.Array, images: np.ndarray | data.LazySplit
               ) -> dict[str, Any]:
    """Means over the split (nats per example), standard errors, active units (of each
    layer as well, with several), `kl_per_dim` (a (D,) list) and the mutual information
    and marginal KL (`latent_summary`)."""
    per_example, means, latents = self.per_example(params, key, images)
    return (summarize(per_example, means) | layer_active_units(self.model, means)
            | latent_summary(self.model, latents, self.information(params, images, latents)))


def latent_summary(model: Model, latents: dict[str, np.ndarray],
                   information: dict[str, np.ndarray]) -> dict[str, Any]:
  """`kl_per_dim` (a list of D floats, the mean over examples; absent where q or p does
  not factorise), and `mutual_information` and `marginal_kl` with standard errors, of
  the whole z and, with several stochastic layers, of each (`_z1`, ...), in nats."""
  summary: dict[str, Any] = {}
  if "kl_per_dim" in latents:
    summary["kl_per_dim"] = [float(v) for v in np.mean(latents["kl_per_dim"], axis=0)]
  for name, terms in information.items():
    # I(x; z) = I(x; z_1); the whole z's marginal KL is its KL minus I(x; z).
    whole = terms[:, 0] if name == "mutual_information" else (
        np.sum(terms, axis=1) + np.sum(information["mutual_information"][:, 1:], axis=1))
    summary.update(_mean_and_stderr(name, whole))
    if model.is_hierarchy:
      for layer, layer_name in enumerate(model.layer_names):
        summary.update(_mean_and_stderr(f"{name}_{layer_name}", terms[:, layer]))
  return summary


def active_units(posterior_means: np.ndarray, threshold: float = 0.01) -> int:
  """Latent dimensions whose E_q[z_d|x] varies over the data: Cov_x(E_q[z_d]) > threshold.

  Burda et al. (2016): a unit is active when its posterior mean varies across examples.
  Args: posterior_means: (N, D).
  """
  return int(np.sum(np.var(posterior_means, axis=0) > threshold))


def layer_active_units(model: Model, posterior_means: np.ndarray) -> dict[str, int]:
  """{active_units_z1: ..., active_units_zL: ...} of a model of several stochastic
  layers, {} for one; posterior_means (N, D) as `encode_mean` gives them."""
  layers = np.split(posterior_means, np.cumsum(model.latent_sizes)[:-1], axis=1)
  return {f"active_units_{name}": active_units(layer)
          for name, layer in zip(model.layer_names, layers)}


def collapse_warning(summary: dict[str, Any], latent_dim: int) -> str | None:
  """One line when more than half of the latent dimensions are inactive, naming the
  remedies the config offers; None otherwise."""
  active = summary["active_units"]
  if 2 * active >= latent_dim:
    return None
  return (f"Posterior collapse: only {active} of {latent_dim} latent dimensions are active "
          "(see kl_per_dim); try a KL warm-up (config.loss.kl_warmup_steps), free bits "
          "(config.loss.free_bits) or a smaller config.loss.beta.")


def _stderr(values: np.ndarray) -> float:
  """Standard error of the mean over examples; 0 for fewer than two."""
  n = len(values)
  return float(np.std(values, ddof=1) / np.sqrt(n)) if n > 1 else 0.0


def summarize(per_example: dict[str, np.ndarray], means: np.ndarray,
              stderr_keys: tuple[str, ...] = ("elbo", "kl", "log_px", "bound_gap")
              ) -> dict[str, float]:
  """Means and standard errors (for `stderr_keys`) of per-example metrics, active units."""
  n = len(means)
  summary = {k: float(np.mean(v)) for k, v in per_example.items()}
  for k in stderr_keys:
    summary[f"{k}_stderr"] = _stderr(per_example[k])
  summary["active_units"] = active_units(means)
  summary["num_examples"] = n
  return summary


# ------------------------------------------------------------------ evaluating a run


def _peak_rss_mib() -> float:
  """Peak resident memory of this process so far, in MiB."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def _mean_and_stderr(name: str, values: np.ndarray) -> dict[str, float]:
  return {name: float(np.mean(values)), f"{name}_stderr": _stderr(values)}


def _subset_batch_size(eval_config: ml_collections.ConfigDict, num: int,
                       mesh: jax.sharding.Mesh) -> int:
  """subset_batch_size, or fewer for a smaller subset, rounded up to fill the mesh."""
  return -(-min(eval_config.subset_batch_size, num) // mesh.size) * mesh.size


def _decompose(model: Model, params: Any, key: jax.Array,
               images: np.ndarray | data.LazySplit, log_px: np.ndarray,
               eval_config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
               progress: bool) -> dict[str, np.ndarray]:
  """Per-example GapDecomposition fields of `images` (n, H, W, C), as numpy arrays."""
  gap = eval_config.gap
  fit_options = dict(num_samples=gap.num_samples, learning_rate=gap.learning_rate,
                     max_steps=gap.max_steps, check_every=gap.check_every,
                     patience=gap.patience, tolerance=gap.tolerance)

  def batch_fn(params, indices, x, batch_log_px):
    encode, decode = model.bind(params)
    prior = model.prior(params)

    def one(k, xi, lp):
      own = model.posterior_parameters(params, xi)
      return inference_gap.decompose_gap(
          k, xi, encode, decode, lp, likelihood=model.likelihood, prior=prior,
          num_elbo_samples=gap.num_elbo_samples,
          family=None if own is None else inference_gap.Family(*own), **fit_options)

    return jax.vmap(one)(batching.example_keys(key, indices), x, batch_log_px)

  batch_fn = _data_parallel_jit(batch_fn, mesh, 1, 3)
  meter = ProgressLine("gap decomposition (q* per example):", len(images)) if progress else None
  result = _map_batches(functools.partial(batch_fn, params),
                        (images, log_px.astype(np.float32)),
                        _subset_batch_size(eval_config, len(images), mesh), mesh, meter)
  return result._asdict()


def _ais(model: Model, params: Any, key: jax.Array, images: np.ndarray | data.LazySplit,
         eval_config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, progress: bool
         ) -> dict[str, np.ndarray]:
  """Per-example AISResult fields of `images` (n, H, W, C), as numpy arrays."""
  settings = eval_config.ais

  def batch_fn(params, indices, x):
    encode, decode = model.bind(params)
    prior = model.prior(params)
    return jax.vmap(lambda k, xi: ais.ais(
        k, xi, encode, decode, num_steps=settings.steps, num_chains=settings.chains,
        num_leapfrog_steps=settings.leapfrog_steps, likelihood=model.likelihood,
        start=settings.start, schedule=settings.schedule, prior=prior))(
            batching.example_keys(key, indices), x)

  batch_fn = _data_parallel_jit(batch_fn, mesh, 1, 2)
  meter = ProgressLine("AIS:", len(images)) if progress else None
  return _map_batches(functools.partial(batch_fn, params), (images,),
                      _subset_batch_size(eval_config, len(images), mesh), mesh,
                      meter)._asdict()


def _ais_section(result: dict[str, np.ndarray], iwae_log_px: np.ndarray,
                 settings: ml_collections.ConfigDict) -> dict[str, Any]:
  """The "ais" part of the summary: AIS beside IWAE on the same examples."""
  return dict(num_examples=len(iwae_log_px), **_mean_and_stderr("log_px", result["log_px"]),
              **_mean_and_stderr("iwae_log_px", iwae_log_px),
              **_mean_and_stderr("ais_minus_iwae", result["log_px"] - iwae_log_px),
              acceptance_rate=float(np.mean(result["acceptance_rate"])), **settings)


def _gap_section(result: dict[str, np.ndarray], eval_config: ml_collections.ConfigDict,
                 model: Model) -> dict[str, Any]:
  """The "gap_decomposition" part of the summary: the diagonal q*'s split and, for an
  encoder of another family, the split with q* in that family (`*_family`)."""
  own_family = model.fits_own_family
  section = dict(num_examples=len(result["log_px"]), log_px_estimator=eval_config.estimator,
                 posterior_family=model.posterior if own_family else None)
  names = ["log_px", "elbo_encoder", "elbo_optimal", "total_gap", "approximation_gap",
           "amortization_gap"]
  if own_family:
    names += ["elbo_family", "approximation_gap_family", "amortization_gap_family"]
  for name in names:
    section.update(_mean_and_stderr(name, result[name]))
  for suffix in ("", "_family") if own_family else ("",):
    steps = result[f"num_steps{suffix}"]
    section[f"mean_steps{suffix}"] = float(np.mean(steps))
    section[f"fraction_at_max_steps{suffix}"] = float(np.mean(
        steps >= eval_config.gap.max_steps))
  return section | dict(eval_config.gap)


def evaluate_params(model: Model, params: Any, images: np.ndarray | data.LazySplit,
                    seed: int, eval_config: ml_collections.ConfigDict, progress: bool = True
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """Evaluates params on `images` (N, H, W, C) as `eval_config` (a `config.eval`) says.

  Args:
    model: the model that `params` belong to.
    params: its params pytree.
    images: the split, float32 in [0, 1], as an array or a `vae.data.LazySplit` (each
      process then reads only its part of it, and of the subset).
    seed: the run's seed; each pass draws from its stream of `vae.keys` (the IWAE pass
      from the training run's evaluation stream), then fold_in(., example index).
    eval_config: what to compute: K, batch and chunk sizes, and whether to add the gap
      decomposition (`decompose_gap`, settings `gap`) and AIS (`estimator="ais"`,
      settings `ais`) on the first `num_examples` examples.
    progress: show progress and ETA of each pass (in process 0 only).

  Returns:
    (summary, per_example): the summary in nats per example (the keys of
    `evaluate_run`'s JSON except workdir, step and split), and every per-example array:
    the metrics (N,), `posterior_mean` (N, D), and the `gap_*` and `ais_*` arrays of the
    subset, (n,) or (n, D).
  """
  if len(images) == 0:
    raise ValueError("The split has no examples to evaluate.")
  start_time = time.perf_counter()
  progress = progress and distributed.is_primary()
  evaluator = Evaluator(model, eval_config)
  meter = (ProgressLine(f"IWAE log p(x), K={eval_config.num_importance_samples}:",
                        len(images)) if progress else None)
  metrics, means, latents = evaluator._per_example(  # pylint: disable=protected-access
      params, random_streams.stream(seed, random_streams.EVAL), images, meter)
  information = evaluator.information(params, images, latents)
  summary: dict[str, Any] = dict(
      num_examples=len(images), latent_dim=int(means.shape[1]), seed=seed,
      mi_num_examples=evaluator.mi_num_examples,
      **{k: eval_config[k] for k in ("num_importance_samples", "chunk_size", "batch_size",
                                     "num_elbo_samples", "decompose_gap", "estimator")})
  for name in ("elbo", "reconstruction", "kl", "log_px", "bound_gap") + model.layer_kl_keys:
    summary.update(_mean_and_stderr(name, metrics[name]))
  summary["active_units"] = active_units(means)
  summary.update(layer_active_units(model, means))
  summary.update(latent_summary(model, latents, information))
  per_example = dict(metrics, posterior_mean=means, **information,
                     **{k: v for k, v in latents.items() if k == "kl_per_dim"})

  subset = min(eval_config.num_examples, len(images))
  summary["ais"] = summary["gap_decomposition"] = None
  log_px = metrics["log_px"][:subset]
  if eval_config.estimator == "ais":
    result = _ais(model, params, random_streams.stream(seed, random_streams.AIS), images[:subset], eval_config,
                  evaluator.mesh, progress)
    summary["ais"] = _ais_section(result, log_px, eval_config.ais)
    per_example.update(ais_log_px=result["log_px"],
                       ais_acceptance_rate=result["acceptance_rate"])
    log_px = result["log_px"]
  if eval_config.decompose_gap:
    result = _decompose(model, params, random_streams.stream(seed, random_streams.GAP_DECOMPOSITION),
                        images[:subset], log_px, eval_config, evaluator.mesh, progress)
    summary["gap_decomposition"] = _gap_section(result, eval_config, model)
    per_example.update({f"gap_{k}": v for k, v in result.items()})

  summary["seconds"] = time.perf_counter() - start_time
  summary["peak_rss_mib"] = _peak_rss_mib()
  return summary, per_example


def eval_settings(saved: ml_collections.ConfigDict, overrides: dict[str, Any] | None = None,
                  defaults: ml_collections.ConfigDict | None = None
                  ) -> ml_collections.ConfigDict:
  """A run's `config.eval` with `overrides` ({field: value}, e.g. {"ais.steps": 20})
  applied, and the fields it lacks (a run saved before they existed) from `defaults`.

  Raises:
    ValueError: an override names no field of config.eval (the nearest are suggested).
  """
  settings = ml_collections.ConfigDict(saved.to_dict())
  for key, value in (defaults or {}).items():
    if key not in settings:
      settings[key] = value
  for field, value in (overrides or {}).items():
    *parents, leaf = field.split(".")
    node = settings
    for part in parents:
      node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ValueError(f"config.eval.{field} is not a field of config.eval"
                       f"{field_checks.did_you_mean(field, settings) or '.'}")
    node[leaf] = float(value) if isinstance(node[leaf], float) else value
  return settings


def evaluate_run(workdir: str, split: str = "test", *, step: int | None = None,
                 best: bool = False, overrides: dict[str, Any] | None = None,
                 defaults: ml_collections.ConfigDict | None = None, write: bool = True,
                 progress: bool = True) -> dict[str, Any]:
  """Evaluates the latest (or `step`'s) checkpoint of a run on one split.

  Reads `workdir/config.json` and the checkpoint, rebuilds the model and the split, and
  computes, in nats per example, means and standard errors over the split of: the ELBO,
  its reconstruction and KL terms, log p(x) by IWAE with K = num_importance_samples, the
  bound gap log p(x) - ELBO, and the active units; with `decompose_gap`, the
  approximation and amortisation gaps on the first `num_examples` examples; with
  `estimator="ais"`, AIS estimates of log p(x) on those examples beside IWAE's.

  Args:
    workdir: the run's folder.
    split: "train", "validation" or "test".
    step: the checkpoint to evaluate; None for the latest.
    best: evaluate the best checkpoint instead (`config.train.keep_best`).
    overrides: {field of config.eval: value} replacing the run's own settings, e.g.
      {"num_importance_samples": 5000, "decompose_gap": True, "ais.steps": 100}.
    defaults: a `config.eval` whose fields fill those the run's config lacks.
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
  with config.unlocked():
    config.eval = eval_settings(config.eval, overrides, defaults)
  config_checks.check_eval(config)
  if best:
    params, checkpoint_step = best_checkpoint.load_params(workdir)
  else:
    _, params, checkpoint_step = checkpoints.load_params(workdir, step)
  model = build_model(config.model, data.dataset_info(config.data).image_shape)
  images = data.LazySplit(config.data, split)  # each process reads only its part
  if len(images) == 0:
    raise ValueError(f"The {split} split of this run's data has no examples.")
  logging.info("Evaluating %s (step %d) on %d %s examples.", workdir, checkpoint_step,
               len(images), split)
  summary, per_example = evaluate_params(model, params, images, config.seed, config.eval,
                                         progress)
  results = dict(workdir=os.path.abspath(workdir), step=checkpoint_step, split=split,
                 params=update.params_label(config), best=best, **summary)
  warning = collapse_warning(results, model.latent_dim)
  if warning and distributed.is_primary():
    logging.warning(warning)
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
  ]
  layers = [key[len("kl_"):] for key in results if key.startswith("kl_z")
            and not key.endswith("_stderr")]
  lines += [_row(f"    of layer {name}", results, f"kl_{name}") for name in layers]
  if "mutual_information" in results:
    lines += [_row("  = I(x; z), aggregate posterior", results, "mutual_information"),
              _row("  + KL(q(z) || p(z)), marginal", results, "marginal_kl")]
    for name in layers:
      lines += [_row(f"    of layer {name}: I", results, f"mutual_information_{name}"),
                _row(f"    of layer {name}: marginal KL", results, f"marginal_kl_{name}")]
  lines += [
      _row(f"log p(x), IWAE with K = {k}", results, "log_px"),
      _row("bound gap log p(x) - ELBO ~ KL(q || p(z|x))", results, "bound_gap"),
      f"  {'active units':<44}{results['active_units']:>11d} of {results['latent_dim']}",
  ]
  lines += [f"  {f'  of layer {name}':<44}{results[f'active_units_{name}']:>11d}"
            for name in layers]
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
    family = section.get("posterior_family")
    if family:
      lines += [
          f"  with q* in the encoder's own family ({family}; "
          f"{section['mean_steps_family']:.0f} Adam steps on average)",
          _row(f"ELBO[q*], best {family} per example", section, "elbo_family"),
          _row("  approximation gap log p(x) - ELBO[q*]", section,
               "approximation_gap_family"),
          _row("  amortisation gap ELBO[q*] - ELBO[q_encoder]", section,
               "amortization_gap_family"),
      ]
  lines.append(f"{results['seconds']:.0f} s, peak memory {results['peak_rss_mib']:.0f} MiB")
  return "\n".join(lines)
