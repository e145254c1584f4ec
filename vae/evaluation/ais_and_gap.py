"""The passes on the first `num_examples` examples of a split that `evaluate_run` may add:
AIS estimates of log p(x) (`vae.kernels.ais`) and the split of the bound gap into its
approximation and amortisation parts (`vae.kernels.inference_gap`), each with its section
of the summary ("ais", "gap_decomposition").

Each example draws from the pass's key folded with its index in the split, in batches of
`subset_batch_size` over every device (`split_batches`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import ml_collections
import numpy as np

from vae import data
from vae.evaluation import split_batches, summaries
from vae.kernels import ais, batching, inference_gap
from vae.models import Model
from vae.reporting.progress import ProgressLine


FAMILY_FIELDS = ("elbo_family", "approximation_gap_family", "amortization_gap_family",
                 "num_steps_family")


def decompose_gaps(model: Model, params: Any, key: jax.Array,
                   images: np.ndarray | data.LazySplit, log_px: np.ndarray,
                   eval_config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                   progress: bool) -> dict[str, np.ndarray]:
  """Per-example GapDecomposition fields of `images` (n, H, W, C), as numpy arrays; the
  `*_family` fields are NaN past the first `family_examples(...)` examples (not fitted)."""
  num_family = family_examples(model, eval_config, len(images))
  parts = [_decompose_part(model, params, key, images, log_px, eval_config, mesh, progress,
                           start, stop, own_family=start == 0 and model.fits_own_family)
           for start, stop in ((0, num_family), (num_family, len(images))) if stop > start]
  result = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
  if num_family < len(images):
    for name in FAMILY_FIELDS:
      result[name] = result[name].astype(np.float32)
      result[name][num_family:] = np.nan
  return result


def family_examples(model: Model, eval_config: ml_collections.ConfigDict, num: int) -> int:
  """How many of `num` examples (the first) fit q* in the encoder's own family too."""
  if not model.fits_own_family:
    return num  # its family is the diagonal Gaussian: the same fit
  return min(eval_config.gap.family_examples or num, num)


def _decompose_part(model: Model, params: Any, key: jax.Array,
                    images: np.ndarray | data.LazySplit, log_px: np.ndarray,
                    eval_config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                    progress: bool, start: int, stop: int,
                    own_family: bool) -> dict[str, np.ndarray]:
  """decompose_gaps on examples [start, stop), q* in the own family too if `own_family`;
  each example draws from `key` folded with its index in the split."""
  fits = "diagonal and in the encoder's family" if own_family else "diagonal"
  meter = (ProgressLine(f"gap decomposition (q* per example, {fits}):", stop - start)
           if progress else None)
  gap = eval_config.gap
  fit_options = dict(num_samples=gap.num_samples, learning_rate=gap.learning_rate,
                     max_steps=gap.max_steps, check_every=gap.check_every,
                     patience=gap.patience, tolerance=gap.tolerance)

  def batch_fn(params, indices, x, batch_log_px):
    encode, decode = model.bind(params)
    prior = model.prior(params)

    def one(k, xi, lp):
      own = model.posterior_parameters(params, xi) if own_family else None
      return inference_gap.decompose_gap(
          k, xi, encode, decode, lp, likelihood=model.likelihood, prior=prior,
          num_elbo_samples=gap.num_elbo_samples,
          family=None if own is None else inference_gap.Family(*own), **fit_options)

    return jax.vmap(one)(batching.example_keys(key, indices + start), x, batch_log_px)

  batch_fn = split_batches.data_parallel_jit(batch_fn, mesh, 1, 3)
  result = split_batches.map_batches(
      functools.partial(batch_fn, params),
      (images[start:stop], log_px[start:stop].astype(np.float32)),
      _subset_batch_size(eval_config, stop - start, mesh), mesh, meter)
  return result._asdict()


def ais_estimates(model: Model, params: Any, key: jax.Array,
                  images: np.ndarray | data.LazySplit, eval_config: ml_collections.ConfigDict,
                  mesh: jax.sharding.Mesh, progress: bool) -> dict[str, np.ndarray]:
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

  batch_fn = split_batches.data_parallel_jit(batch_fn, mesh, 1, 2)
  meter = ProgressLine("AIS:", len(images)) if progress else None
  return split_batches.map_batches(functools.partial(batch_fn, params), (images,),
                                   _subset_batch_size(eval_config, len(images), mesh), mesh,
                                   meter)._asdict()


def ais_section(result: dict[str, np.ndarray], iwae_log_px: np.ndarray,
                settings: ml_collections.ConfigDict) -> dict[str, Any]:
  """The "ais" part of the summary: AIS beside IWAE on the same examples."""
  return dict(num_examples=len(iwae_log_px),
              **summaries.mean_and_stderr("log_px", result["log_px"]),
              **summaries.mean_and_stderr("iwae_log_px", iwae_log_px),
              **summaries.mean_and_stderr("ais_minus_iwae", result["log_px"] - iwae_log_px),
              acceptance_rate=float(np.mean(result["acceptance_rate"])), **settings)


def gap_section(result: dict[str, np.ndarray], eval_config: ml_collections.ConfigDict,
                model: Model) -> dict[str, Any]:
  """The "gap_decomposition" part of the summary: the diagonal q*'s split and, for an
  encoder of another family, the split with q* in that family (`*_family`)."""
  own_family = model.fits_own_family
  num = len(result["log_px"])
  num_family = family_examples(model, eval_config, num)
  section = dict(num_examples=num, log_px_estimator=eval_config.estimator,
                 posterior_family=model.own_family_name)
  for name in ["log_px", "elbo_encoder", "elbo_optimal", "total_gap", "approximation_gap",
               "amortization_gap"]:
    section.update(summaries.mean_and_stderr(name, result[name]))
  if own_family:  # on the first num_family examples, and the diagonal split's there too
    section["num_examples_family"] = num_family
    for name in FAMILY_FIELDS[:3]:
      section.update(summaries.mean_and_stderr(name, result[name][:num_family]))
    if num_family < num:
      for name in ("total_gap", "approximation_gap", "amortization_gap"):
        section.update(summaries.mean_and_stderr(f"{name}_on_family_examples",
                                                 result[name][:num_family]))
  for suffix in ("", "_family") if own_family else ("",):
    steps = result[f"num_steps{suffix}"][:num_family if suffix else num]
    section[f"mean_steps{suffix}"] = float(np.mean(steps))
    section[f"fraction_at_max_steps{suffix}"] = float(np.mean(
        steps >= eval_config.gap.max_steps))
  return section | dict(eval_config.gap)


def _subset_batch_size(eval_config: ml_collections.ConfigDict, num: int,
                       mesh: jax.sharding.Mesh) -> int:
  """subset_batch_size, or fewer for a smaller subset, rounded up to fill the mesh."""
  return -(-min(eval_config.subset_batch_size, num) // mesh.size) * mesh.size
