"""A run's evaluation: `evaluate_run` evaluates a checkpoint as the run's `config.eval`
says, with any overrides (`experiments/evaluate.py` asks for K = 5000 by default), and
writes `eval_<split>.json` and `eval_<split>.npz`; `evaluate_params` does the work on
params and images.

The main pass (IWAE log p(x) on the whole split) uses the key of the training run's own
evaluations, so with the run's `config.eval` settings it reproduces the test numbers of
metrics.jsonl, field for field (`example_metrics.metric_names`). Only process 0 shows
progress or writes files.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any, Callable

import ml_collections
import numpy as np
from absl import logging

from vae import data
from vae.common import field_checks
from vae.config import checks as config_checks, migration
from vae.evaluation import ais_and_gap, example_metrics, summaries
from vae.evaluation.evaluator import Evaluator
from vae.models import Model, build_model
from vae.reporting.progress import ProgressLine
from vae.runtime import distributed
from vae.training import best_checkpoint, checkpoints, random_streams, update


def evaluate_params(model: Model, params: Any, images: np.ndarray | data.LazySplit,
                    seed: int, eval_config: ml_collections.ConfigDict, progress: bool = True,
                    on_main_pass: Callable[[dict[str, Any], dict[str, np.ndarray]], None]
                    | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """Evaluates params on `images` (N, H, W, C) as `eval_config` (a `config.eval`) says.

  Args:
    model: the model that `params` belong to.
    params: its params pytree.
    images: the split as a `vae.data.LazySplit` (each process then reads only its part
      of it, and of the subset) or an array `vae.data.as_images` accepts (float in
      [0, 1], uint8 or bool, of the model's image shape; anything else is one
      ValueError).
    seed: the run's seed; each pass draws from its stream of `vae.training.random_streams`
      (the IWAE pass from the training run's evaluation stream), then fold_in(., example
      index).
    eval_config: what to compute: K, batch and chunk sizes, and whether to add the gap
      decomposition (`decompose_gap`, settings `gap`) and AIS (`estimator="ais"`,
      settings `ais`) on the first `num_examples` examples.
    progress: show progress and ETA of each pass (in process 0 only).
    on_main_pass: called with (summary, per_example) of the IWAE pass alone before the
      AIS or gap sections start (if any are asked for), the summary's `pending` listing
      them, e.g. to write what is known so that a stop during those long sections
      keeps it.

  Returns:
    (summary, per_example): the summary in nats per example (the keys of
    `evaluate_run`'s JSON except workdir, step and split), and every per-example array:
    the metrics (N,), `posterior_mean` (N, D), and the `gap_*` and `ais_*` arrays of the
    subset, (n,) or (n, D).
  """
  if not isinstance(images, data.LazySplit):
    images = data.as_images(images, "images", model.image_shape)
  if len(images) == 0:
    raise ValueError("The split has no examples to evaluate.")
  start_time = time.perf_counter()
  progress = progress and distributed.is_primary()
  evaluator = Evaluator(model, eval_config)
  meter = (ProgressLine(f"IWAE log p(x), K={eval_config.num_importance_samples}:",
                        len(images)) if progress else None)
  metrics, means, latents = evaluator.per_example(
      params, random_streams.stream(seed, random_streams.EVAL), images, meter)
  information = evaluator.information(params, images, latents)
  summary: dict[str, Any] = dict(
      num_examples=len(images), latent_dim=int(means.shape[1]), seed=seed,
      mi_num_examples=evaluator.mi_num_examples,
      **{k: eval_config[k] for k in ("num_importance_samples", "chunk_size", "batch_size",
                                     "num_elbo_samples", "decompose_gap", "estimator")})
  for name in example_metrics.metric_names(model):
    summary.update(summaries.mean_and_stderr(name, metrics[name]))
  summary["active_units"] = summaries.active_units(means)
  summary.update(summaries.layer_active_units(model, means))
  summary.update(summaries.latent_summary(model, latents, information))
  per_example = dict(metrics, posterior_mean=means, **information,
                     **{k: v for k, v in latents.items() if k == "kl_per_dim"})

  summary["ais"] = summary["gap_decomposition"] = None
  pending = [name for name, asked in (("ais", eval_config.estimator == "ais"),
                                      ("gap_decomposition", eval_config.decompose_gap))
             if asked]
  if pending and on_main_pass is not None:
    on_main_pass(dict(summary, pending=pending, **_cost(start_time)), per_example)
  _add_subset_sections(model, params, images, seed, eval_config, evaluator, progress,
                       summary, per_example)
  summary.update(_cost(start_time))
  return summary, per_example


def _add_subset_sections(model: Model, params: Any, images: Any, seed: int,
                         eval_config: ml_collections.ConfigDict, evaluator: Evaluator,
                         progress: bool, summary: dict[str, Any],
                         per_example: dict[str, np.ndarray]) -> None:
  """Adds the AIS and gap-decomposition sections that `eval_config` asks for, on the
  first `num_examples` images, to `summary` and `per_example` (which hold the IWAE pass)."""
  subset = min(eval_config.num_examples, len(images))
  log_px = per_example["log_px"][:subset]
  if eval_config.estimator == "ais":
    result = ais_and_gap.ais_estimates(
        model, params, random_streams.stream(seed, random_streams.AIS), images[:subset],
        eval_config, evaluator.mesh, progress)
    summary["ais"] = ais_and_gap.ais_section(result, log_px, eval_config.ais)
    per_example.update(ais_log_px=result["log_px"],
                       ais_acceptance_rate=result["acceptance_rate"])
    log_px = result["log_px"]
  if eval_config.decompose_gap:
    result = ais_and_gap.decompose_gaps(
        model, params, random_streams.stream(seed, random_streams.GAP_DECOMPOSITION),
        images[:subset], log_px, eval_config, evaluator.mesh, progress)
    summary["gap_decomposition"] = ais_and_gap.gap_section(result, eval_config, model)
    per_example.update({f"gap_{k}": v for k, v in result.items()})


def eval_settings(saved: ml_collections.ConfigDict, overrides: dict[str, Any] | None = None,
                  defaults: ml_collections.ConfigDict | None = None
                  ) -> ml_collections.ConfigDict:
  """A run's `config.eval` with `overrides` ({field: value}, e.g. {"ais.steps": 20})
  applied, and the fields it lacks (a run saved before they existed) from `defaults`.

  Raises:
    ValueError: an override names no field of config.eval (the nearest are suggested).
  """
  settings = ml_collections.ConfigDict(migration.with_missing(
      defaults.to_dict() if defaults else {}, saved.to_dict()))
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
                 output_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
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
    write: write `eval_<split>.json` (the returned dict) and the per-example arrays to
      `eval_<split>.npz`, in `output_dir` (process 0 only).
    output_dir: the folder `write` writes to, made if missing; None for the workdir.
      Another folder leaves the workdir as it was, e.g. to score a run that is still
      training without touching what its driver reads.
    progress: show progress and ETA.

  Returns:
    The summary dict (see README, "Evaluating a run").

  Raises:
    ValueError: a bad argument, a workdir without config or checkpoint, or an output_dir
      that cannot be written.
  """
  if split not in data.SPLITS:
    raise ValueError(f"split={split!r} is not one of {data.SPLITS}.")
  if not os.path.isdir(workdir):
    raise ValueError(f"workdir={workdir!r} does not exist. Check --workdir.")
  output_dir = workdir if output_dir is None else output_dir
  if write and distributed.is_primary():
    _check_writable(output_dir)
  config = checkpoints.load_config(workdir)
  with config.unlocked():
    config.eval = eval_settings(config.eval, overrides, defaults)
  config_checks.check_eval(config)
  params, checkpoint_step = best_checkpoint.load_params_at(workdir, "best" if best else step)
  model = build_model(config.model, data.dataset_info(config.data).image_shape)
  images = data.LazySplit(config.data, split)  # each process reads only its part
  if len(images) == 0:
    raise ValueError(f"The {split} split of this run's data has no examples.")
  logging.info("Evaluating %s (step %d) on %d %s examples.", workdir, checkpoint_step,
               len(images), split)
  run_fields = dict(workdir=os.path.abspath(workdir), step=checkpoint_step, split=split,
                    params=update.params_label(config), best=best)
  writing = write and distributed.is_primary()

  def write_files(summary, per_example):
    _write_files(output_dir, split, dict(run_fields, **summary), per_example)

  summary, per_example = evaluate_params(model, params, images, config.seed, config.eval,
                                         progress, write_files if writing else None)
  results = dict(run_fields, **summary)
  warning = summaries.collapse_warning(results, model.latent_dim)
  if warning and distributed.is_primary():
    logging.warning(warning)
  if writing:
    write_files(summary, per_example)
  return results


def _write_files(folder: str, split: str, results: dict[str, Any],
                 per_example: dict[str, np.ndarray]) -> None:
  """Writes eval_<split>.json and .npz in `folder`, each replacing the old one whole (a
  stop while writing leaves the previous files)."""
  path = os.path.join(folder, f"eval_{split}")
  with open(path + ".json.tmp", "w") as f:
    json.dump(results, f, indent=2)
  with open(path + ".npz.tmp", "wb") as f:
    np.savez(f, **per_example)
  os.replace(path + ".npz.tmp", path + ".npz")
  os.replace(path + ".json.tmp", path + ".json")


def _check_writable(folder: str) -> None:
  """Makes `folder` if missing; ValueError, one line, if it cannot be made or written."""
  try:
    os.makedirs(folder, exist_ok=True)
    writable = os.access(folder, os.W_OK)
    reason = "it is not writable"
  except OSError as error:
    writable, reason = False, f"it cannot be made: {error.strerror}"
  if not writable:
    raise ValueError(f"The evaluation cannot be written to {folder!r} ({reason}). "
                     "Give a folder you can write to with --output_dir.")


def _cost(start_time: float) -> dict[str, float]:
  """Seconds since `start_time` (a time.perf_counter()) and the peak memory so far, MiB."""
  return dict(seconds=time.perf_counter() - start_time, peak_rss_mib=_peak_rss_mib())


def _peak_rss_mib() -> float:
  """Peak resident memory of this process so far, in MiB."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB
