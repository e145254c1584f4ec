r"""Runs a sweep file: every point in its own sub-workdir, then a summary table and plots.

  python -m experiments.sweep --sweep=configs/sweeps/beta.py --workdir=runs/beta \
      [--mode=vectorized|sequential|parallel --parallel=2] [--sweep.train.num_steps=500]

`--sweep.<field>=value` overrides the base config of every point. Rerunning resumes:
finished points are skipped, interrupted ones resume from their checkpoints. A point whose
loss goes non-finite is recorded as failed and the others go on (in a vectorised group it
is frozen while the group trains); the summary lists it, the exit status is 1, and a
rerun skips it unless --retry_failed.
`--print_commands` prints one `experiments.train` command per point instead (for a
cluster's job array) and runs nothing.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from vae import sweeps
from vae.runtime import cli

_SWEEP = config_flags.DEFINE_config_file(
    "sweep", None, "A sweep file: get_config() for the base, get_sweep() for the points.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The sweep's folder.")
_MODE = flags.DEFINE_enum("mode", "vectorized", sweeps.MODES, "How to run the points.")
_PARALLEL = flags.DEFINE_integer("parallel", 2, "Processes at a time with --mode=parallel.")
_PRINT = flags.DEFINE_bool("print_commands", False, "Print one command per point, run nothing.")
_RETRY = flags.DEFINE_bool("retry_failed", False, "Run again the points that failed before "
                           "(a non-finite loss; they are skipped otherwise).")
flags.mark_flags_as_required(["sweep", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  sweep_file = config_flags.get_config_filename(flags.FLAGS["sweep"])
  overrides = config_flags.get_override_values(flags.FLAGS["sweep"])

  def sweep():
    points = sweeps.load_points(sweep_file)
    if _PRINT.value:
      print("\n".join(sweeps.point_commands(sweep_file, points, _WORKDIR.value, overrides)))
      return
    rows = sweeps.run_sweep(sweep_file, _SWEEP.value, points, _WORKDIR.value, _MODE.value,
                            _PARALLEL.value, overrides, retry_failed=_RETRY.value)
    logging.info("Summary of %d points: %s", len(rows),
                 os.path.join(_WORKDIR.value, "summary.md"))

  cli.run(sweep)


def run():
  """The `vae-sweep` command."""
  app.run(main, flags_parser=cli.flags_parser("sweep"))


if __name__ == "__main__":
  run()
