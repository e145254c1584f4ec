r"""Vectorised against sequential sweeps: whole wall time of N points, both ways.

  python -m scripts.benchmark_sweep [--config=configs/default.py] [--num_points=2,4,8] \
      [--batch_sizes=128] [--num_steps=300] [--axis=loss.beta]

Each measurement trains N points of the config (--axis=loss.beta: beta spread over
[0.1, 8]; --axis=model.latent_dim: the first N latent sizes of the shipped
configs/sweeps/latent_dim.py, which train padded to the largest; same seed) for
--num_steps steps with one evaluation at the end, in fresh temporary workdirs, and
times everything the user waits for: compilation, training, evaluation, checkpoints and
images. Each mode runs in a fresh process, as a sweep command does (in one process the
second would reuse the first's compiled programs, e.g. the initialisation's ops of each
latent size: ~8 s of a 40 s measurement); the data are read before its timing starts, so
neither mode is charged for reading them. Prints a Markdown table and writes it with the
raw figures to --output (JSON).

The functions are shared with `scripts/benchmark.py`.
"""

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from vae import data, sweeps
from vae.configs.sweeps import latent_dim as latent_dim_sweep
from vae.runtime import cli
from vae.training import train

MODES = ("vectorized", "sequential")
AXES = ("loss.beta", "model.latent_dim")


def axis_values(axis: str, num_points: int) -> list:
  """The N values of `axis` (one of AXES) a measurement sweeps."""
  if axis == "loss.beta":
    return np.geomspace(0.1, 8.0, num_points).round(3).tolist()
  shipped = [point[axis] for point in latent_dim_sweep.get_sweep()]
  if num_points > len(shipped):
    raise ValueError(f"--num_points={num_points}: the shipped latent-size sweep has "
                     f"{len(shipped)} points.")
  return shipped[:num_points]


def sweep_configs(base: ml_collections.ConfigDict, num_points: int, batch_size: int,
                  num_steps: int, axis: str = "loss.beta") -> list[ml_collections.ConfigDict]:
  """The N configs of one measurement (`axis_values`).

  Args:
    base: the config every point starts from (not modified).
    num_points: N, the number of values.
    batch_size: `train.batch_size` of every point.
    num_steps: training steps of every point; also the log, evaluation and checkpoint
      interval, so each point logs, evaluates and checkpoints once, at the end.
    axis: the swept field, one of AXES.

  Returns:
    N configs differing only in `axis`.
  """
  base = copy.deepcopy(base)
  base.train.batch_size = batch_size
  base.train.num_steps = base.train.eval_every = base.train.checkpoint_every = (
      base.train.log_every) = num_steps
  base.optimizer.warmup_steps = 0
  values = axis_values(axis, num_points)
  return [config for _, config in sweeps.expand(base, sweeps.axis(axis, values))]


def preload_data(config: ml_collections.ConfigDict) -> None:
  """Reads the train and evaluation splits into `vae.data`'s cache (seconds, untimed)."""
  for split in ("train",) + tuple(config.eval.splits):
    data.load_split(config.data, split)


def time_mode(configs: list[ml_collections.ConfigDict], mode: str, workdir: str) -> float:
  """Seconds to train and evaluate every config, in fresh sub-workdirs of `workdir`.

  Args:
    configs: from `sweep_configs`.
    mode: "vectorized" (one `train.train_vectorized` call for all the points) or
      "sequential" (one `train.train_and_evaluate` call per point, in this process).
    workdir: an empty folder.

  Returns:
    The whole wall time, compilation, evaluation, checkpoints and images included.
  """
  if mode not in MODES:
    raise ValueError(f"mode={mode!r} is unknown; valid modes are {MODES}.")
  dirs = [os.path.join(workdir, f"{mode}{i}") for i in range(len(configs))]
  start = time.perf_counter()
  if mode == "vectorized":
    train.train_vectorized(configs, dirs)
  else:
    for config, point_dir in zip(configs, dirs):
      train.train_and_evaluate(config, point_dir)
  return time.perf_counter() - start


def row(batch_size: int, num_points: int, num_steps: int, sequential_s: float,
        vectorized_s: float, axis: str = "loss.beta") -> dict[str, Any]:
  """One measurement as the JSON row and the table use it."""
  return dict(axis=axis, batch_size=batch_size, num_points=num_points, num_steps=num_steps,
              sequential_s=sequential_s, vectorized_s=vectorized_s,
              speedup=sequential_s / vectorized_s)


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
  """The rows of `row` as the lines of a Markdown table (seconds, whole wall time)."""
  table = ["| swept | batch | points | steps | sequential (s) | vectorised (s) | speed-up |",
           "|---|---|---|---|---|---|---|"]
  table += [f"| {r['axis']} | {r['batch_size']} | {r['num_points']} | {r['num_steps']} | "
            f"{r['sequential_s']:.1f} | {r['vectorized_s']:.1f} | {r['speedup']:.2f}x |"
            for r in rows]
  return table


def main(argv):
  del argv
  cli.quiet_dependency_logs()
  logging.set_verbosity(logging.WARNING)
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if FLAGS.only_mode:  # one measurement, in this fresh process (`_time_in_new_process`)
    preload_data(FLAGS.config)
    configs = sweep_configs(FLAGS.config, int(FLAGS.num_points[0]),
                            int(FLAGS.batch_sizes[0]), FLAGS.num_steps, FLAGS.axis)
    with tempfile.TemporaryDirectory() as tmp:
      print(json.dumps({"seconds": time_mode(configs, FLAGS.only_mode, tmp)}))
    return
  rows = []
  for batch_size in map(int, FLAGS.batch_sizes):
    for num_points in map(int, FLAGS.num_points):
      vectorized, sequential = (_time_in_new_process(mode, batch_size, num_points)
                                for mode in ("vectorized", "sequential"))
      rows.append(row(batch_size, num_points, FLAGS.num_steps, sequential, vectorized,
                      FLAGS.axis))
      print(f"batch {batch_size}, {num_points} points: sequential {sequential:.1f} s, "
            f"vectorised {vectorized:.1f} s, speed-up {sequential / vectorized:.2f}x",
            flush=True)
  table = markdown_table(rows)
  print("\n".join(table))
  with open(FLAGS.output, "w") as f:
    json.dump({"rows": rows, "table": table}, f, indent=2)


def _time_in_new_process(mode: str, batch_size: int, num_points: int) -> float:
  """Seconds of `time_mode` for one measurement, in a fresh Python process."""
  config_file = config_flags.get_config_filename(flags.FLAGS["config"])
  overrides = [arg for arg in sys.argv[1:] if arg.startswith("--config.")]
  done = subprocess.run(
      [sys.executable, "-m", "scripts.benchmark_sweep", f"--config={config_file}",
       *overrides, f"--only_mode={mode}", f"--batch_sizes={batch_size}",
       f"--num_points={num_points}", f"--num_steps={flags.FLAGS.num_steps}",
       f"--axis={flags.FLAGS.axis}"], capture_output=True, text=True, check=False)
  if done.returncode:
    raise RuntimeError(f"The {mode} measurement failed:\n{done.stderr[-3000:]}")
  return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def _define_flags() -> None:
  """The command line; defined only when run as a script, so importing defines no flags."""
  config_flags.DEFINE_config_file("config", "configs/default.py", "Base config.")
  flags.DEFINE_list("num_points", ["2", "4", "8"], "Sweep sizes to time.")
  flags.DEFINE_list("batch_sizes", ["128"], "Batch sizes to time.")
  flags.DEFINE_integer("num_steps", 300, "Training steps per point.")
  flags.DEFINE_enum("axis", "loss.beta", AXES, "The swept field.")
  flags.DEFINE_string("output", "benchmark_sweep.json", "Where to write the figures.")
  flags.DEFINE_enum("only_mode", None, MODES,
                    "Internal: time only this mode of one measurement, print its seconds.")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
