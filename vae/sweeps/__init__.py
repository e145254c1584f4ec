"""Sweeps as code: expand a sweep file's points into configs and run them.

A sweep file is a config file with one more function:

  def get_config():            # the base config every point starts from
    return default.get_config()

  def get_sweep():             # the points: a list of {dotted config key: value}
    return sweeps.product(sweeps.axis("loss.beta", [0.5, 1, 2]),
                          sweeps.axis("seed", [0, 1]))

and may define `get_table()`, a `vae.sweep_summary.Table` that lays its summary out
as a paper's table does (configs/sweeps/burda_table1.py).

Each point runs in its own sub-workdir named after its overrides, e.g.
`runs/beta/loss.beta=0.5_seed=1`, and writes exactly what a single run writes. Points that
differ only in values that keep every array shape (`vae.update.VECTORIZED_FIELDS`) can be
trained together in one vmapped program (`mode="vectorized"`).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent import futures
from typing import Any, Sequence

import ml_collections
import numpy as np
from absl import logging

from vae.common import errors
from vae.config import checks as config_checks
from vae.config import files as config_files
from vae.reporting import metric_writers
from vae.sweeps import summary as sweep_summary
from vae.training import checkpoints, train, update

Point = dict[str, Any]
MODES = ("sequential", "vectorized", "parallel")
TIMES_FILE = "sweep_times.json"


# ------------------------------------------------------------------ sweep algebra


def axis(key: str, values: Sequence[Any]) -> list[Point]:
  """One swept key: [{key: v} for v in values]."""
  return [{key: value} for value in values]


def product(*axes: list[Point]) -> list[Point]:
  """Every combination of the axes' points (the first axis varies slowest)."""
  return [dict(itertools.chain.from_iterable(p.items() for p in combo))
          for combo in itertools.product(*axes)]


def zip_points(*axes: list[Point]) -> list[Point]:
  """Points taken side by side from axes of equal length."""
  lengths = {len(a) for a in axes}
  if len(lengths) > 1:
    raise ValueError(f"zip_points needs axes of equal length, got {sorted(lengths)}.")
  return [dict(itertools.chain.from_iterable(p.items() for p in combo))
          for combo in zip(*axes)]


# ------------------------------------------------------------------ expansion


def load_points(sweep_file: str) -> list[Point]:
  """The points of a sweep file: its get_sweep().

  Raises:
    ValueError: the file is missing, does not run, or has no get_sweep().
  """
  module = config_files.load_module(sweep_file)
  if not callable(getattr(module, "get_sweep", None)):
    raise ValueError(f"{sweep_file} has no get_sweep(); a sweep file defines get_config() "
                     "and get_sweep() (see configs/sweeps/beta.py).")
  return list(module.get_sweep())


def load_table(sweep_file: str) -> sweep_summary.Table | None:
  """The sweep file's own summary layout, its get_table(), or None where it has none.

  Raises:
    ValueError: get_table() fails or returns something else than a Table.
  """
  get_table = getattr(config_files.load_module(sweep_file), "get_table", None)
  if not callable(get_table):
    return None
  try:
    table = get_table()
  except Exception as e:  # pylint: disable=broad-except  (the user's code, named below)
    raise ValueError(f"{sweep_file}: get_table() failed: {type(e).__name__}: {e}") from e
  if not isinstance(table, sweep_summary.Table):
    raise ValueError(f"{sweep_file}: get_table() returned {type(table).__name__}, not a "
                     "vae.sweep_summary.Table.")
  return table


def point_name(point: Point) -> str:
  """A folder name for a point: 'loss.beta=0.5_seed=1' (sorted keys)."""
  return "_".join(f"{key}={point[key]}" for key in sorted(point)) or "base"


def apply_point(base: ml_collections.ConfigDict, point: Point) -> ml_collections.ConfigDict:
  """A copy of base with the point's overrides; unknown keys raise a clear ValueError."""
  config = copy.deepcopy(base)
  with config.unlocked():
    for key, value in point.items():
      *parents, leaf = key.split(".")
      node = config
      try:
        for part in parents:
          node = node[part]
        current = node[leaf]
      except (KeyError, AttributeError, TypeError):
        raise ValueError(
            f"Sweep key {key!r} is not a config field. Valid keys are dotted paths like "
            "'loss.beta' or 'model.latent_dim' (see configs/default.py).") from None
      if isinstance(current, float) and isinstance(value, int):
        value = float(value)
      node[leaf] = value
  return config


def expand(base: ml_collections.ConfigDict, points: list[Point]
           ) -> list[tuple[str, ml_collections.ConfigDict]]:
  """(name, config) for every point; checks names are unique and configs valid."""
  named = [(point_name(p), apply_point(base, p)) for p in points]
  names = [name for name, _ in named]
  if len(set(names)) != len(names):
    raise ValueError(f"The sweep repeats points: {sorted(n for n in names if names.count(n) > 1)}.")
  for name, config in named:
    try:
      config_checks.check_config(config)
    except ValueError as error:
      raise ValueError(f"Sweep point {name}: {error}") from None
  return named


# ------------------------------------------------------------------ running


def _is_finished(config: ml_collections.ConfigDict, workdir: str) -> bool:
  return (checkpoints.latest_step(workdir) or 0) >= config.train.num_steps


def _vectorized_groups(named: list[tuple[str, ml_collections.ConfigDict]], workdir: str
                       ) -> list[list[tuple[str, ml_collections.ConfigDict]]]:
  """Groups points that may train together and would resume from the same step."""
  groups: dict[str, list] = {}
  for name, config in named:
    key_config = apply_point(config, {field: None for field in update.VECTORIZED_FIELDS})
    start = checkpoints.latest_step(os.path.join(workdir, name))
    groups.setdefault(f"{key_config.to_json()}|{start}", []).append((name, config))
  return list(groups.values())


def point_commands(sweep_file: str, points: list[Point], workdir: str,
                   base_overrides: dict[str, Any]) -> list[str]:
  """One `python -m vae.apps.train` command line per point (for a job array)."""
  commands = []
  for point in points:
    overrides = {**base_overrides, **point}
    flags = [f"--config={sweep_file}", f"--workdir={os.path.join(workdir, point_name(point))}"]
    flags += [f"--config.{k}={_flag_value(v)}" for k, v in overrides.items()]
    commands.append(" ".join([sys.executable, "-m", "vae.apps.train"]
                             + [shlex.quote(f) for f in flags]))
  return commands


def _flag_value(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return "(" + ",".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return str(value)


def run_sweep(sweep_file: str, base: ml_collections.ConfigDict, points: list[Point],
              workdir: str, mode: str = "vectorized", parallel: int = 2,
              base_overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
  """Runs every point not yet finished, then writes the summary table and plots.

  Args:
    sweep_file: the sweep file's path (used for the commands of `mode="parallel"`).
    base: its base config, with any command-line overrides applied.
    points: its points (`get_sweep()`).
    workdir: the sweep's folder; each point gets `workdir/<point_name>`.
    mode: "sequential" (one point after another, in this process), "vectorized"
      (points that differ only in VECTORIZED_FIELDS train together in one program) or
      "parallel" (`parallel` processes of `experiments.train` at a time).
    base_overrides: the command-line overrides of the base, passed on in "parallel".

  Returns:
    The summary rows (see `vae.sweep_summary.summary_rows`); a sweep file's get_table()
    also writes table.md and logs it.
  """
  if mode not in MODES:
    raise ValueError(f"mode={mode!r} is unknown; valid modes are {list(MODES)}.")
  named = expand(base, points)
  table = load_table(sweep_file)  # before the training, so that its errors come first
  os.makedirs(workdir, exist_ok=True)
  times = _load_times(workdir)
  todo = [(n, c) for n, c in named if not _is_finished(c, os.path.join(workdir, n))]
  logging.info("Sweep %s: %d points, %d finished, %d to run (%s).", sweep_file, len(named),
               len(named) - len(todo), len(todo), mode)

  def timed(names, fn):
    """Runs fn; each of its points is charged an equal share of the wall time."""
    start = time.perf_counter()
    fn()
    for name in names:
      times[name] = times.get(name, 0.0) + (time.perf_counter() - start) / len(names)
    _save_times(workdir, times)

  if mode == "sequential":
    for name, config in todo:
      timed([name], lambda: train.train_and_evaluate(config, os.path.join(workdir, name)))
  elif mode == "vectorized":
    for group in _vectorized_groups(todo, workdir):
      names = [n for n, _ in group]
      logging.info("Training %d points together: %s", len(group), ", ".join(names))
      timed(names, lambda: train.train_vectorized(
          [c for _, c in group], [os.path.join(workdir, n) for n in names]))
  else:
    todo_points = [p for p in points if point_name(p) in dict(todo)]
    commands = point_commands(sweep_file, todo_points, workdir, base_overrides or {})
    with futures.ThreadPoolExecutor(parallel) as pool:
      def run(name, command):
        timed([name], lambda: _run_command(command, os.path.join(workdir, name)))
      list(pool.map(run, [point_name(p) for p in todo_points], commands))

  rows = sweep_summary.summary_rows(named, points, workdir, times)
  sweep_summary.write_summary(rows, workdir, table)
  for row, point in zip(rows, points):
    metrics = {k: row[k] for k in sweep_summary.METRIC_COLUMNS if np.isfinite(row[k])}
    metric_writers.write_hparams(os.path.join(workdir, row["point"]), point, metrics,
                                 row["step"] or 0)
  if table is not None:
    logging.info("%s", table.markdown(rows))
  return rows


def _run_command(command: str, point_workdir: str) -> None:
  os.makedirs(point_workdir, exist_ok=True)
  log_path = os.path.join(point_workdir, "train.log")
  with open(log_path, "w") as log:
    done = subprocess.run(shlex.split(command), stdout=log, stderr=subprocess.STDOUT)
  if done.returncode:
    raise errors.PointFailedError(f"{command} failed (exit {done.returncode}); see {log_path}.")


def _load_times(workdir: str) -> dict[str, float]:
  path = os.path.join(workdir, TIMES_FILE)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _save_times(workdir: str, times: dict[str, float]) -> None:
  with open(os.path.join(workdir, TIMES_FILE), "w") as f:
    json.dump(times, f, indent=2, sort_keys=True)
