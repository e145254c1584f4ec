"""Running a sweep: every point not yet finished, then its summary table and plots.

Each point runs in its own sub-workdir named after its overrides, e.g.
`runs/beta/loss.beta=0.5_seed=1`, and writes exactly what a single run writes. Points that
differ only in values that keep every array shape (`vae.training.update.VECTORIZED_FIELDS`),
or also in model.latent_dim (padded: `vae.training.padded_latents`), can be trained
together in one vmapped program (`mode="vectorized"`). Rerunning resumes:
finished points are skipped. The wall time spent on each point is saved in the sweep's
folder (`TIMES_FILE`) and summed over reruns.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
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
from vae.sweeps import slurm
from vae.training import (best_checkpoint, checkpoints, padded_latents, runs, train,
                          update, workdirs)

MODES = ("sequential", "vectorized", "parallel", "slurm", "submitit_local")
SUBMITTED_MODES = {"slurm": "slurm", "submitit_local": "local"}  # mode -> submitit cluster
TIMES_FILE = "sweep_times.json"


def _is_finished(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Trained to num_steps, or stopped early (its best evaluation `patience` evaluations
  behind its last checkpoint), with the final evaluation in metrics.jsonl: a point stopped
  during that evaluation is run again, which evaluates it without training."""
  step = checkpoints.latest_step(workdir) or 0
  patience = config.train.get("early_stopping_patience", 0)
  best = best_checkpoint.read(workdir) if patience else None
  trained = step >= config.train.num_steps or (
      best is not None and step - best["step"] >= patience * config.train.eval_every)
  return trained and runs.logged_results(workdir, step, config.eval.splits) is not None


def _vectorized_groups(named: list[tuple[str, ml_collections.ConfigDict]], workdir: str
                       ) -> list[list[tuple[str, ml_collections.ConfigDict]]]:
  """Groups points that may train together (`vae.training.runs.check_vectorizable`) and
  would resume from the same step."""
  groups: dict[str, list] = {}
  for name, config in named:
    fields = update.VECTORIZED_FIELDS + (
        () if padded_latents.why_not_paddable(config) else (padded_latents.FIELD,))
    key_config = sweep_points.apply_point(config, {field: None for field in fields})
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
              retry_failed: bool = False, slurm_options: slurm.SlurmOptions | None = None,
              wait: bool = True) -> list[dict[str, Any]]:
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
    slurm_options: what each task of "slurm" and "submitit_local" asks of the cluster
      (`vae.sweeps.slurm`): every unfinished point (or, with `vectorize`, every vectorised
      group) one task of one job array.
    wait: in those two modes, wait for the array and then write the summary; without
      it, return [] once submitted (`sweep_status` tells the points' states later).

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
  todo = _points_to_run(named, workdir, mode, retry_failed, sweep_file)
  if mode in SUBMITTED_MODES:
    jobs = _submit(todo, workdir, mode, slurm_options or slurm.SlurmOptions())
    if not wait:
      return []
    _wait_for_points(named, workdir, jobs)
  else:
    _run_here(todo, points, workdir, mode, times, sweep_file, parallel, base_overrides)
  return _summarize(named, points, workdir, _point_times(named, workdir), table)


def _points_to_run(named, workdir: str, mode: str, retry_failed: bool, sweep_file: str
                   ) -> list[tuple[str, ml_collections.ConfigDict]]:
  """The points neither finished nor failed before (unless `retry_failed`, which clears
  their failure and discards the checkpoints after it) nor, in the submitted modes,
  running or queued in an earlier array."""
  failed = {n for n, _ in named if workdirs.read_failure(os.path.join(workdir, n))}
  for name, _ in named:  # a damaged best.json: one line before any point runs
    best_checkpoint.read(os.path.join(workdir, name))
  if retry_failed:
    for name in failed:  # from the last checkpoint before the failure
      point_workdir = os.path.join(workdir, name)
      checkpoints.discard_after(point_workdir, workdirs.read_failure(point_workdir)["step"])
      workdirs.clear_failure(point_workdir)
    failed = set()
  todo = [(n, c) for n, c in named
          if n not in failed and not _is_finished(c, os.path.join(workdir, n))]
  queued = []
  if mode in SUBMITTED_MODES:
    states = slurm.point_states(todo, workdir, _is_finished)
    queued = [n for n, _ in todo if states[n][0] in ("running", "pending")]
    todo = [(n, c) for n, c in todo if n not in queued]
  logging.info("Sweep %s: %d points, %d finished, %d failed before (not retried without "
               "--retry_failed), %d running or queued, %d to run (%s).", sweep_file,
               len(named), len(named) - len(todo) - len(failed) - len(queued), len(failed),
               len(queued), len(todo), mode)
  return todo


def _submit(todo, workdir: str, mode: str, options: slurm.SlurmOptions) -> list:
  """The points as one job array (`vae.sweeps.slurm`), its options checked first;
  returns submitit's jobs ([] when there is nothing to run)."""
  groups = (_vectorized_groups(todo, workdir) if options.vectorize
            else [[point] for point in todo])
  slurm.check_options(options, len(groups), SUBMITTED_MODES[mode])
  if not groups:
    return []
  job, jobs = slurm.submit(groups, workdir, options, SUBMITTED_MODES[mode])
  logging.info("Submitted job array %s: %d tasks; logs in %s.", job["job_id"], len(groups),
               job["folder"])
  return jobs


def _run_here(todo, points, workdir: str, mode: str, times: dict[str, float],
              sweep_file: str, parallel: int, base_overrides: dict[str, Any] | None) -> None:
  """Trains the points on this machine as `mode` says, charging each its wall time."""

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
    with _Children() as children, futures.ThreadPoolExecutor(parallel) as pool:
      def run(name, command):
        if not children.stopping:
          timed([name], lambda: children.run(command, os.path.join(workdir, name)))
      list(pool.map(run, [sweep_points.point_name(p) for p in todo_points], commands))
    if children.stopping:
      raise KeyboardInterrupt(f"Interrupted: every running point saved a checkpoint in its "
                              f"folder of {workdir}; rerun the command to resume.")


def _summarize(named, points, workdir, times, table) -> list[dict[str, Any]]:
  """summary.csv, .md, the plots, table.md, and the HParams of each point that finished
  or failed; raises PointFailedError after writing them when some points failed."""
  rows = sweep_summary.summary_rows(named, points, workdir, times)
  sweep_summary.write_summary(rows, workdir, table)
  for row, point in zip(rows, points):
    if not (sweep_summary.has_results(row) or row.get("failure")):
      continue  # no folder to write into yet, or a point still training
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


def _wait_for_points(named, workdir: str, jobs: list, poll_s: float = 2.0) -> None:
  """Until no task of the array can run any more (`slurm.tasks_alive`), logging the
  points' states (`slurm.point_states`) as they change."""
  last = None
  while True:
    alive = slurm.tasks_alive(workdir, jobs)
    states = slurm.point_states(named, workdir, _is_finished, jobs)
    counts = {s: sum(1 for state, _ in states.values() if state == s)
              for s in ("finished", "failed", "running", "pending", "stopped")}
    if counts != last:
      logging.info("Sweep %s: %s.", workdir, ", ".join(f"{n} {s}" for s, n in counts.items()))
      last = counts
    if not alive:
      return
    time.sleep(poll_s)


def sweep_status(sweep_file: str, base: ml_collections.ConfigDict,
                 points: list[sweep_points.Point], workdir: str) -> dict[str, tuple[str, str]]:
  """Each point's state (`slurm.point_states`), logged one line each, and the summary
  of what has finished (unfinished points' metrics empty); submits nothing."""
  named = sweep_points.expand(base, points)
  states = slurm.point_states(named, workdir, _is_finished)
  for name, (state, detail) in states.items():
    logging.info("%-9s %s (%s)", state, name, detail)
  finished = [(n, c) for n, c in named if states[n][0] in ("finished", "failed")]
  if finished:
    try:
      _summarize(named, points, workdir, _point_times(named, workdir),
                 sweep_points.load_table(sweep_file))
    except errors.PointFailedError:
      pass  # listed above and in summary.md
  return states


class _Children:
  """The training processes of a parallel sweep. Ctrl-C or SIGTERM to the sweep is passed
  on to each as SIGTERM (each saves a checkpoint and exits), no new one starts, and the
  sweep stops once they have ended."""

  _SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.stopping = False
    self._running: set[subprocess.Popen] = set()
    self._lock = threading.Lock()
    self._previous = {}

  def __enter__(self) -> _Children:
    self._previous = {signum: signal.signal(signum, self._stop) for signum in self._SIGNALS}
    return self

  def __exit__(self, *exc) -> None:
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)

  def _stop(self, signum, frame) -> None:
    del frame
    self.stopping = True
    logging.warning("%s: passing it on to the running points, which save and stop.",
                    signal.Signals(signum).name)
    with self._lock:
      for process in self._running:
        process.send_signal(signal.SIGTERM)

  def run(self, command: str, point_workdir: str) -> None:
    """Runs one point's training process; a failure is recorded in its workdir (the
    process's own record of a non-finite loss, else its exit status and log), a stop
    asked of the sweep is not one."""
    os.makedirs(point_workdir, exist_ok=True)
    log_path = os.path.join(point_workdir, "train.log")
    with open(log_path, "w") as log:
      with self._lock:
        process = subprocess.Popen(shlex.split(command), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # Ctrl-C reaches it through us
        self._running.add(process)
        if self.stopping:  # asked between this point's start and its process's
          process.send_signal(signal.SIGTERM)
      returncode = process.wait()
      with self._lock:
        self._running.discard(process)
    if returncode and not self.stopping:
      failure = workdirs.read_failure(point_workdir) or {
          "step": checkpoints.latest_step(point_workdir) or 0,
          "reason": f"{command} failed (exit {returncode}); see {log_path}."}
      workdirs.write_failure(point_workdir, failure)
      raise errors.PointFailedError(failure["reason"])


def _point_times(named, workdir: str) -> dict[str, float]:
  """Each timed point's wall time: this machine's (`TIMES_FILE`) and its array tasks'
  (`vae.sweeps.slurm.task_seconds`), summed."""
  times = _load_times(workdir)
  for name, _ in named:
    seconds = slurm.task_seconds(os.path.join(workdir, name))
    if seconds is not None:
      times[name] = times.get(name, 0.0) + seconds
  return times


def _load_times(workdir: str) -> dict[str, float]:
  path = os.path.join(workdir, TIMES_FILE)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _save_times(workdir: str, times: dict[str, float]) -> None:
  with open(os.path.join(workdir, TIMES_FILE), "w") as f:
    json.dump(times, f, indent=2, sort_keys=True)
