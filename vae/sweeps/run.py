"""Running a sweep: every point not yet finished, then its summary table and plots.

Each point runs in its own sub-workdir named after its overrides, e.g.
`runs/beta/loss.beta=0.5_seed=1`, and writes exactly what a single run writes. Points that
differ only in values that keep every array shape (`vae.training.update.VECTORIZED_FIELDS`)
can be trained together in one vmapped program (`mode="vectorized"`). Rerunning resumes:
finished points are skipped. The wall time spent on each point is saved in the sweep's
folder (`TIMES_FILE`) and summed over reruns.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from concurrent import futures
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from vae.common import errors
from vae.reporting import metric_writers
from vae.sweeps import points as sweep_points
from vae.sweeps import summary as sweep_summary
from vae.training import checkpoints, train, update, workdirs

MODES = ("sequential", "vectorized", "parallel")
TIMES_FILE = "sweep_times.json"


def _is_finished(config: ml_collections.ConfigDict, workdir: str) -> bool:
  return (checkpoints.latest_step(workdir) or 0) >= config.train.num_steps


def _vectorized_groups(named: list[tuple[str, ml_collections.ConfigDict]], workdir: str
                       ) -> list[list[tuple[str, ml_collections.ConfigDict]]]:
  """Groups points that may train together and would resume from the same step."""
  groups: dict[str, list] = {}
  for name, config in named:
    key_config = sweep_points.apply_point(
        config, {field: None for field in update.VECTORIZED_FIELDS})
    start = checkpoints.latest_step(os.path.join(workdir, name))
    groups.setdefault(f"{key_config.to_json()}|{start}", []).append((name, config))
  return list(groups.values())


def point_commands(sweep_file: str, points: list[sweep_points.Point], workdir: str,
                   base_overrides: dict[str, Any]) -> list[str]:
  """One `python -m vae.apps.train` command line per point (for a job array)."""
  commands = []
  for point in points:
    overrides = {**base_overrides, **point}
    flags = [f"--config={sweep_file}",
             f"--workdir={os.path.join(workdir, sweep_points.point_name(point))}"]
    flags += [f"--config.{k}={_flag_value(v)}" for k, v in overrides.items()]
    commands.append(" ".join([sys.executable, "-m", "vae.apps.train"]
                             + [shlex.quote(f) for f in flags]))
  return commands


def _flag_value(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return "(" + ",".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return str(value)


def run_sweep(sweep_file: str, base: ml_collections.ConfigDict,
              points: list[sweep_points.Point], workdir: str, mode: str = "vectorized",
              parallel: int = 2, base_overrides: dict[str, Any] | None = None,
              retry_failed: bool = False) -> list[dict[str, Any]]:
  """Runs every point not yet finished, then writes the summary table and plots.

  Args:
    sweep_file: the sweep file's path (used for the commands of `mode="parallel"`).
    base: its base config, with any command-line overrides applied.
    points: its points (`get_sweep()`).
    workdir: the sweep's folder; each point gets `workdir/<point_name>`.
    mode: "sequential" (one point after another, in this process), "vectorized"
      (points that differ only in VECTORIZED_FIELDS train together in one program) or
      "parallel" (`parallel` processes of `vae.apps.train` at a time).
    base_overrides: the command-line overrides of the base, passed on in "parallel".
    retry_failed: run again the points that failed in an earlier call (else they stay
      failed and are skipped).

  A point that fails (its loss non-finite; in "parallel" also a process that exits with
  an error) is recorded in its workdir (`vae.training.workdirs.FAILED_FILE`: step and
  reason) and the others go on; in a vectorised group it is frozen at its last finite
  step while the group trains on.

  Returns:
    The summary rows (see `vae.sweeps.summary.summary_rows`; a failed point's row has
    `failed_step` and `failure`); a sweep file's get_table() also writes table.md and
    logs it.

  Raises:
    PointFailedError: after the summary is written, when some points failed.
  """
  if mode not in MODES:
    raise ValueError(f"mode={mode!r} is unknown; valid modes are {list(MODES)}.")
  named = sweep_points.expand(base, points)
  table = sweep_points.load_table(sweep_file)  # before the training: its errors come first
  os.makedirs(workdir, exist_ok=True)
  times = _load_times(workdir)
  failed = {n for n, _ in named if workdirs.read_failure(os.path.join(workdir, n))}
  if retry_failed:
    for name in failed:  # from the last checkpoint before the failure
      point_workdir = os.path.join(workdir, name)
      checkpoints.discard_after(point_workdir, workdirs.read_failure(point_workdir)["step"])
      workdirs.clear_failure(point_workdir)
    failed = set()
  todo = [(n, c) for n, c in named
          if n not in failed and not _is_finished(c, os.path.join(workdir, n))]
  logging.info("Sweep %s: %d points, %d finished, %d failed before (not retried without "
               "--retry_failed), %d to run (%s).", sweep_file, len(named),
               len(named) - len(todo) - len(failed), len(failed), len(todo), mode)

  def timed(names, fn):
    """Runs fn; each of its points is charged an equal share of the wall time. A failure
    of its points is logged (each recorded in its workdir) and the sweep goes on."""
    start = time.perf_counter()
    try:
      fn()
    except (errors.NonFiniteLossError, errors.PointFailedError) as error:
      logging.warning("Failed: %s The sweep goes on.", error)
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
    todo_points = [p for p in points if sweep_points.point_name(p) in dict(todo)]
    commands = point_commands(sweep_file, todo_points, workdir, base_overrides or {})
    with futures.ThreadPoolExecutor(parallel) as pool:
      def run(name, command):
        timed([name], lambda: _run_command(command, os.path.join(workdir, name)))
      list(pool.map(run, [sweep_points.point_name(p) for p in todo_points], commands))

  rows = sweep_summary.summary_rows(named, points, workdir, times)
  sweep_summary.write_summary(rows, workdir, table)
  for row, point in zip(rows, points):
    metrics = {k: row[k] for k in sweep_summary.METRIC_COLUMNS if np.isfinite(row[k])}
    metric_writers.write_hparams(os.path.join(workdir, row["point"]), point, metrics,
                                 row["step"] or 0)
  if table is not None:
    logging.info("%s", table.markdown(rows))
  failures = [row for row in rows if row.get("failure")]
  if failures:
    raise errors.PointFailedError(
        f"{len(failures)} of {len(rows)} points failed (summary.md in {workdir} lists them; "
        "rerun with --retry_failed to try them again): "
        + " ".join(f"{row['point']} at step {row['failed_step']}." for row in failures))
  return rows


def _run_command(command: str, point_workdir: str) -> None:
  """Runs one point's training process; a failure is recorded in its workdir (the
  process's own record of a non-finite loss, else its exit status and log)."""
  os.makedirs(point_workdir, exist_ok=True)
  log_path = os.path.join(point_workdir, "train.log")
  with open(log_path, "w") as log:
    done = subprocess.run(shlex.split(command), stdout=log, stderr=subprocess.STDOUT)
  if done.returncode:
    failure = workdirs.read_failure(point_workdir) or {
        "step": checkpoints.latest_step(point_workdir) or 0,
        "reason": f"{command} failed (exit {done.returncode}); see {log_path}."}
    workdirs.write_failure(point_workdir, failure)
    raise errors.PointFailedError(failure["reason"])


def _load_times(workdir: str) -> dict[str, float]:
  path = os.path.join(workdir, TIMES_FILE)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _save_times(workdir: str, times: dict[str, float]) -> None:
  with open(os.path.join(workdir, TIMES_FILE), "w") as f:
    json.dump(times, f, indent=2, sort_keys=True)
