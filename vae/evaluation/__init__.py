"""Evaluation of a trained VAE: ELBO terms, log p(x), the bound gap and where it comes from.

Two levels:
  * `Evaluator` scores params on a whole split (ELBO, IWAE log p(x) and the bound gap per
    example); the training loop calls it at every evaluation.
  * `evaluate_run` evaluates a run's checkpoint as its `config.eval` says, with any
    overrides: IWAE log p(x) on a whole split, optionally the split of the gap into its
    approximation and amortisation parts and an AIS estimate of log p(x) on a subset,
    and writes `eval_<split>.json`.
  * `load_run` puts a run in your hands: its model and params, with methods that encode,
    decode, sample, interpolate and score any images (NumPy arrays) in batches.
`Evaluator` and `evaluate_run` write the same metric fields: each of `metric_names(model)` with its standard error.

Modules:
  example_metrics: one example's metrics and latents; `PER_EXAMPLE_METRICS`, `metric_names`.
  summaries: means and standard errors over a split, active units, I(x; z), collapse.
  split_batches: a batch function over a whole split, in fixed-size sharded batches.
  evaluator: `Evaluator`, params scored on a whole split over every device.
  ais_and_gap: AIS and the gap decomposition on a subset, and their summary sections.
  run_evaluation: `evaluate_run`, `evaluate_params` and `eval_settings`.
  report: `format_report`, the printed table of a run's evaluation.
  loaded_run: `load_run` and `LoadedRun`, a run for use from Python.

Floor 2: may import the kernels, `vae.common`, `vae.models`, `vae.data` and the other
floor-2 packages (`vae.training`, `vae.config`, `vae.reporting`, `vae.runtime`); never
the apps or the shipped configs.
"""

from vae.evaluation.evaluator import Evaluator, mi_num_examples
from vae.evaluation.example_metrics import (PER_EXAMPLE_METRICS, make_example_latents,
                                            make_example_metrics, metric_names)
from vae.evaluation.loaded_run import LoadedRun, load_run
from vae.evaluation.report import format_report
from vae.evaluation.run_evaluation import eval_settings, evaluate_params, evaluate_run
from vae.evaluation.summaries import collapse_warning

__all__ = [
    "PER_EXAMPLE_METRICS", "Evaluator", "LoadedRun", "collapse_warning", "eval_settings", "evaluate_params",
    "evaluate_run", "format_report", "make_example_latents", "make_example_metrics",
    "load_run", "metric_names", "mi_num_examples",
]
