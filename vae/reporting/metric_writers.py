"""Where a run's numbers go: metrics.jsonl, TensorBoard event files (and its HParams
session, for sweeps), Weights & Biases if asked (`vae.reporting.wandb_run`) and the
console."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np
import tensorboardX.summary
from tensorboardX import SummaryWriter

from vae.reporting import wandb_run

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Writes metrics per (step, split) and images, to every sink at once.

  `workdir/metrics.jsonl` gets one JSON object per call: {"step", "split", **metrics}.
  TensorBoard scalars are named "<split>/<metric>". On resume, `truncate_after(step)`
  drops lines a previous, interrupted run wrote after its last checkpoint, so the file
  reads as one uninterrupted run.
  """

  def __init__(self, workdir: str, enabled: bool = True,
               wandb_project: str | None = None, config: dict[str, Any] | None = None):
    """With enabled=False (e.g. in all but one process of several) nothing is written.
    With a `wandb_project`, Weights & Biases gets the same numbers and images, and the
    run's `config` (a plain dict), in that project (`vae.reporting.wandb_run`)."""
    self.path = os.path.join(workdir, METRICS_FILE)
    self.enabled = enabled
    self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard")) if enabled else None
    self._wandb = (wandb_run.WandbRun(workdir, wandb_project, config or {})
                   if enabled and wandb_project else None)

  def truncate_after(self, step: int) -> None:
    """Keeps the records up to `step` (and drops a last line cut short), in one atomic
    replacement of the file: a stop during it leaves the old file whole."""
    if not self.enabled or not os.path.exists(self.path):
      return
    # Each kept line ends its record, also a last one whose newline a stop cut off.
    kept = [line if line.endswith("\n") else line + "\n"
            for line, record in _read_lines(self.path) if record["step"] <= step]
    partial = self.path + ".tmp"
    with open(partial, "w") as f:
      f.writelines(kept)
    os.replace(partial, self.path)

  def write_metrics(self, step: int, split: str, metrics: dict[str, float | list[float]]
                    ) -> None:
    """Scalars, and vectors (lists, e.g. kl_per_dim) as JSON lists and TensorBoard
    histograms of their values; strings (labels, e.g. which params) in the JSON only."""
    if not self.enabled:
      return
    record = {"step": int(step), "split": split}
    record.update({k: [float(x) for x in v] if isinstance(v, (list, np.ndarray))
                   else v if isinstance(v, str) else float(v) for k, v in metrics.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for name, value in record.items():
      if name in ("step", "split") or isinstance(value, str):  # labels: JSON only
        continue
      if isinstance(value, list):
        self._tensorboard.add_histogram(f"{split}/{name}", np.asarray(value), step)
      else:
        self._tensorboard.add_scalar(f"{split}/{name}", value, step)
    if self._wandb is not None:
      self._wandb.log_metrics(step, split, {k: v for k, v in record.items()
                                            if k not in ("step", "split")})

  def write_image(self, step: int, name: str, grid: np.ndarray) -> None:
    """grid: (H, W, C) uint8."""
    if self.enabled:
      self._tensorboard.add_image(name, grid, step, dataformats="HWC")
    if self._wandb is not None:
      self._wandb.log_image(step, name, grid)

  def flush(self) -> None:
    if self.enabled:
      self._tensorboard.flush()

  def close(self) -> None:
    if self.enabled:
      self._tensorboard.close()
    if self._wandb is not None:
      self._wandb.close()


def write_hparams(workdir: str, hparams: dict[str, Any], metrics: dict[str, float],
                  step: int) -> None:
  """A run's hyperparameters and final metrics for TensorBoard's HParams view, in
  workdir/tensorboard/hparams (rewritten on every call, so a rerun does not add a second
  session). Values that are not bool, int, float or str are shown as text; metrics are
  named "final/<name>"."""
  folder = os.path.join(workdir, "tensorboard", "hparams")
  shutil.rmtree(folder, ignore_errors=True)
  hparams = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
             for k, v in hparams.items()}
  metrics = {f"final/{k}": float(v) for k, v in metrics.items()}
  with SummaryWriter(folder) as writer:
    for summary in tensorboardX.summary.hparams(hparams, metrics):
      writer.file_writer.add_summary(summary)
    for name, value in metrics.items():
      writer.add_scalar(name, value, step)


def read_metrics(workdir: str) -> list[dict]:
  """Every record of workdir/metrics.jsonl, in order; none where the file is missing (a
  last line cut short, as a machine lost during a write leaves it, is not one)."""
  return [record for _, record in _read_lines(os.path.join(workdir, METRICS_FILE))]


def _read_lines(path: str) -> list[tuple[str, dict]]:
  """(line, record) of each record of a metrics file ([] where it is missing).

  Raises:
    ValueError: one line naming the file and the line: a line that is not a record
      ({"step": int, "split": str, ...}), unless it is the last and has no newline (a
      write cut short, which is dropped).
  """
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = f.readlines()
  pairs = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    record = _parse_record(line)
    if record is None:
      if number == len(lines) and not line.endswith("\n"):
        break  # the last write was cut short
      raise ValueError(f"{path}, line {number}, is not a JSON record: the file is damaged; "
                       f"delete that line (or the file, to log afresh) and rerun.")
    pairs.append((line, record))
  return pairs


def _parse_record(line: str) -> dict | None:
  """The record on a line of a metrics file, or None if it is not one."""
  try:
    record = json.loads(line)
  except json.JSONDecodeError:
    return None
  is_record = (isinstance(record, dict) and isinstance(record.get("step"), int)
               and isinstance(record.get("split"), str))
  return record if is_record else None


def format_metrics(metrics: dict[str, float], keys=None) -> str:
  keys = keys or list(metrics)
  return " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)
