"""The best evaluation of a run (`config.train.keep_best`): its params in `workdir/best/`
(an orbax checkpoint named by its step) and what it scored in `workdir/best.json`.

Evaluations are compared on the validation split by one metric, higher is better; a
tie keeps the earlier step. A run resumed from a checkpoint before the best step forgets
that best (the steps after the checkpoint are trained again).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import jax

from vae.training import checkpoints, workdirs

METRICS = ("log_px", "elbo")  # config.train.keep_best: per example nats, higher is better
SPLIT = "validation"
FILE = "best.json"
FOLDER = "best"


def read(workdir: str) -> dict[str, Any] | None:
  """best.json of a run ({step, metric, split, value, results}), or None.

  Raises:
    ValueError: one line: best.json is damaged (nothing is deleted: `best/` still holds
      the params it named).
  """
  return workdirs.read_json(
      os.path.join(workdir, FILE),
      {"step": int, "metric": str, "split": str, "value": (int, float)},
      f"restore it ({FOLDER}/ beside it still holds the params it named), or, to keep a "
      f"new best from the run's next evaluation, delete it and {FOLDER}/.")


def load_params(workdir: str) -> tuple[Any, int]:
  """(params, step) of a run's best evaluation.

  Raises:
    ValueError: one line: the run kept no best checkpoint, or best.json names one that
      best/ no longer holds.
  """
  record = read(workdir)
  checkpointer = checkpoints.Checkpointer(workdir, 1, FOLDER)
  try:
    if record is None:
      raise ValueError(f"{workdir} holds no best checkpoint: train it with "
                       "--config.train.keep_best=log_px (or elbo).")
    if record["step"] not in checkpointer.all_steps():
      raise ValueError(f"{os.path.join(workdir, FILE)} names the params of step "
                       f"{record['step']}, which {os.path.join(workdir, FOLDER)} no longer "
                       f"holds: restore {FOLDER}/{record['step']}, or delete {FILE} to use the "
                       "run's latest checkpoint instead.")
    return checkpointer.restore(record["step"])["params"], record["step"]
  finally:
    checkpointer.close()


def load_params_at(workdir: str, step: int | str | None = None) -> tuple[Any, int]:
  """(params, step) of a run's checkpoint: the latest (None), a step (int), or "best"
  (`load_params`); the params its evaluations use.

  Raises:
    ValueError: one line naming what is missing.
  """
  if step == "best":
    return load_params(workdir)
  _, params, found = checkpoints.load_params(workdir, step)
  return params, found


class BestCheckpoint:
  """Keeps the params of a run's best evaluation so far (see the module docstring)."""

  def __init__(self, workdir: str, metric: str, start_step: int):
    self.workdir, self.metric = workdir, metric
    self.record = read(workdir)
    if self.record is not None and self.record["step"] > start_step:
      self.record = None  # trained again from before it, by whichever metric
      if jax.process_index() == 0:
        shutil.rmtree(os.path.join(workdir, FOLDER), ignore_errors=True)
        os.remove(os.path.join(workdir, FILE))
    if self.record is not None and self.record["metric"] != metric:
      raise ValueError(
          f"{workdir} keeps its best evaluation by {self.record['metric']} (best.json), which "
          f"config.train.keep_best={metric!r} would discard. Resume with "
          f"--config.train.keep_best={self.record['metric']}, or use a new --workdir.")
    # Two at most: the new best is saved beside the old, best.json then names it, and
    # only then is the old one deleted, so that a stop at any point leaves best.json
    # naming a checkpoint that exists.
    self._checkpointer = checkpoints.Checkpointer(workdir, 2, FOLDER)
    if self.record is not None and self.record["step"] in self._checkpointer.all_steps():
      self._keep_only(self.record["step"])  # a newer one a stop left unnamed

  def offer(self, step: int, params: Any, results: dict[str, dict[str, Any]]) -> bool:
    """Keeps `params` if `results` ({split: metrics} of step's evaluation) beat the
    best so far on the validation split; returns whether they did."""
    value = float(results[SPLIT][self.metric])
    if self.record is not None and (value <= self.record["value"]
                                    or step == self.record["step"]):
      return False
    self._checkpointer.save(step, {"params": params})
    self.record = dict(step=step, metric=self.metric, split=SPLIT, value=value,
                       results={split: {k: v if isinstance(v, str) else float(v)
                                        for k, v in metrics.items()
                                        if not isinstance(v, (list, tuple))}
                                for split, metrics in results.items()})
    if jax.process_index() == 0:
      workdirs.write_json(os.path.join(self.workdir, FILE), self.record)
    self._keep_only(step)
    return True

  def _keep_only(self, step: int) -> None:
    """Deletes every kept checkpoint but step's."""
    for other in self._checkpointer.all_steps():
      if other != step:
        self._checkpointer.delete(other)

  def close(self) -> None:
    self._checkpointer.close()
