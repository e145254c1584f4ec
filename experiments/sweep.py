r"""Runs a sweep file: every point in its own sub-workdir, then a summary table and plots.

  python -m experiments.sweep --sweep=configs/sweeps/beta.py --workdir=runs/beta \
      [--mode=vectorized|sequential|parallel --parallel=2] [--sweep.train.num_steps=500]

`--sweep.<field>=value` overrides the base config of every point. Rerunning resumes:
finished points are skipped, interrupted ones resume from their checkpoints. A point whose
loss goes non-finite is recorded as failed and the others go on (in a vectorised group it
is frozen while the group trains); the summary lists it, the exit status is 1, and a
rerun skips it unless --retry_failed.
`--print_commands` prints one `experiments.train` command per point instead and runs
nothing.

On a SLURM cluster (`pip install ".[slurm]"`): `--mode=slurm` submits every unfinished point
as one task of one job array through submitit (`--slurm_partition`, `--slurm_time`,
`--slurm_cpus_per_task`, `--slurm_gpus_per_task`, `--slurm_nodes`, `--slurm_mem`,
`--slurm_array_parallelism`, `--slurm_additional=qos=high,...`, `--slurm_folder`), prints
the job id and the log folder, waits for the array and writes the summary (`--nowait`:
returns at once). A preempted task (SIGTERM) saves and requeues itself and resumes. A
later `--status` shows each point's state and writes the summary of what has finished.
`--mode=submitit_local` runs the same tasks as local processes (no cluster needed).
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
_STATUS = flags.DEFINE_bool("status", False, "Show each point's state (finished, failed, "
                            "running, pending, stopped) and write the summary of what has "
                            "finished; run nothing.")
_WAIT = flags.DEFINE_bool("wait", True, "--mode=slurm|submitit_local: wait for the array, "
                          "then write the summary (else return once submitted).")
_SLURM = {
    "partition": flags.DEFINE_string("slurm_partition", None, "Partition (default: the "
                                     "cluster's)."),
    "time": flags.DEFINE_string("slurm_time", "60", "Time limit per task: minutes, "
                                "HH:MM:SS or D-HH:MM:SS."),
    "cpus_per_task": flags.DEFINE_integer("slurm_cpus_per_task", 2, "CPUs per task."),
    "gpus_per_task": flags.DEFINE_integer("slurm_gpus_per_task", 0, "GPUs per task."),
    "nodes": flags.DEFINE_integer("slurm_nodes", 1, "Nodes per task (one process each, "
                                  "jax.distributed)."),
    "mem": flags.DEFINE_string("slurm_mem", None, "Memory per node, e.g. 16G."),
    "array_parallelism": flags.DEFINE_integer("slurm_array_parallelism", 64,
                                              "Tasks running at once at most."),
    "additional": flags.DEFINE_list("slurm_additional", [], "Further sbatch options as "
                                    "name=value, e.g. qos=high,account=me."),
    "folder": flags.DEFINE_string("slurm_folder", None, "Folder of submitit's logs "
                                  "(default: <workdir>/slurm)."),
    "vectorize": flags.DEFINE_bool("slurm_vectorize", False, "One task per vectorised "
                                   "group of points instead of one per point."),
}
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
    if _STATUS.value:
      sweeps.sweep_status(sweep_file, _SWEEP.value, points, _WORKDIR.value)
      return
    rows = sweeps.run_sweep(sweep_file, _SWEEP.value, points, _WORKDIR.value, _MODE.value,
                            _PARALLEL.value, overrides, retry_failed=_RETRY.value,
                            slurm_options=_slurm_options(), wait=_WAIT.value)
    if not rows:
      logging.info("Submitted; `--status` shows each point's state.")
      return
    logging.info("Summary of %d points: %s", len(rows),
                 os.path.join(_WORKDIR.value, "summary.md"))

  cli.run(sweep)


def _slurm_options() -> sweeps.SlurmOptions:
  values = {name: flag.value for name, flag in _SLURM.items()}
  pairs = [item.partition("=") for item in values["additional"]]
  bad = [name for name, equals, _ in pairs if not equals or not name]
  if bad:
    raise ValueError(f"--slurm_additional={','.join(values['additional'])}: each option must "
                     "be name=value, e.g. qos=high.")
  values["additional"] = tuple((name, value) for name, _, value in pairs)
  return sweeps.SlurmOptions(**values)


def run():
  """The `vae-sweep` command."""
  app.run(main, flags_parser=cli.flags_parser("sweep"))


if __name__ == "__main__":
  run()
