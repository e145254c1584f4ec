r"""Evaluates a trained run: parses flags and calls `vae.evaluation.evaluate_run`.

  python -m experiments.evaluate --workdir=runs/default [--split=test] \
      [--num_importance_samples=5000] [--decompose_gap --num_examples=100] \
      [--estimator=ais --ais_steps=500]

Reads the run's config.json and latest checkpoint, prints a table of the ELBO, its terms,
log p(x) (IWAE, K samples), the bound gap and the active units (nats per example, mean
and standard error over the split), and writes them to <workdir>/eval_<split>.json (and
the per-example values to eval_<split>.npz; --output_dir=FOLDER writes them there instead).
See the README, "Evaluating a run".

The evaluation settings are the run's `config.eval` (see configs/default.py for each);
every field has a flag of its name that overrides it, dots as underscores
(`--ais_steps` sets config.eval.ais.steps). Only K has a default of its own here: 5000,
for a tight estimate (training evaluates with fewer).
Batches are split over every device; several hosts: run the same command on each, adding
--coordinator_address=HOST0:PORT --num_processes=N --process_id=I (see README "Scaling out").
"""

import os

from absl import app, flags

from vae import evaluation as evaluate
from vae.common import field_checks
from vae.configs import default
from vae.runtime import cli, distributed

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's folder (config and checkpoints).")
_SPLIT = flags.DEFINE_string("split", "test", "train, validation or test.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate; default the latest.")
_BEST = flags.DEFINE_boolean("best", False, "Evaluate the best checkpoint (a run trained "
                             "with config.train.keep_best) instead of --step's.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Folder for eval_<split>.json and .npz; default: --workdir. Another "
    "folder leaves the workdir untouched (e.g. to score a run that is still training).")
_INITIALIZE_DISTRIBUTED = cli.define_distributed_flags()
flags.mark_flags_as_required(["workdir"])

_DEFAULTS = default.get_config().eval
_NOT_FLAGS = ("splits", "num_images")  # what only training's evaluations use
_OWN_DEFAULTS = {"num_importance_samples": 5000}
_DEFINE = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer,
           float: flags.DEFINE_float, str: flags.DEFINE_string}


def _define_override_flags() -> dict[str, flags.FlagHolder]:
  """{field of config.eval: its flag}, one flag per field, named with dots as underscores."""
  holders = {}
  for field in field_checks.dotted_fields(_DEFAULTS):
    if field in _NOT_FLAGS:
      continue
    value = field_checks.get_field(_DEFAULTS, field)
    default_value = _OWN_DEFAULTS.get(field)
    shown = "the run's value" if default_value is None else default_value
    holders[field] = _DEFINE[type(value)](
        field.replace(".", "_"), default_value, f"Sets config.eval.{field}; default: {shown}.")
  return holders


_OVERRIDES = _define_override_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  overrides = {field: flag.value for field, flag in _OVERRIDES.items()
               if flag.value is not None}
  output_dir = _OUTPUT_DIR.value or _WORKDIR.value

  def initialize_and_evaluate():
    _INITIALIZE_DISTRIBUTED()
    return evaluate.evaluate_run(_WORKDIR.value, _SPLIT.value, step=_STEP.value,
                                 best=_BEST.value, overrides=overrides, defaults=_DEFAULTS,
                                 output_dir=output_dir)

  results = cli.run(initialize_and_evaluate)
  if not distributed.is_primary():
    return
  print(evaluate.format_report(results))
  print(f"Written to {os.path.join(output_dir, f'eval_{_SPLIT.value}.json')}")


def run():
  """The `vae-evaluate` command."""
  app.run(main, flags_parser=cli.flags_parser())


if __name__ == "__main__":
  run()
