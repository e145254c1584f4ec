"""Weights & Biases as a sink of a run's numbers (`config.logging.wandb`), beside
metrics.jsonl and TensorBoard: the same scalars ("<split>/<metric>"), vectors as
histograms, the image grids, and the run's config (a sweep point's swept values with it).

One W&B run per workdir: its id is kept in `workdir/wandb_run_id`, so a resumed run goes
on in the same W&B run. W&B's own files go to `workdir/wandb/`; `WANDB_MODE=offline`
keeps everything on the machine (`wandb sync` uploads it later). The `wandb` package is
optional: `pip install wandb`.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import numpy as np

ID_FILE = "wandb_run_id"
INSTALL_HINT = "pip install wandb (or pip install 'vae-jax[wandb]')"


def installed() -> bool:
  """Whether the `wandb` package can be imported."""
  try:
    import wandb  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return True


class WandbRun:
  """An open W&B run for one workdir (see the module docstring)."""

  def __init__(self, workdir: str, project: str, config: dict[str, Any]):
    import wandb  # pylint: disable=import-outside-toplevel
    self._wandb = wandb
    self._run = wandb.init(project=project, dir=workdir, id=_run_id(workdir),
                           resume="allow", name=os.path.basename(os.path.abspath(workdir)),
                           config=config, reinit="create_new")

  def log_metrics(self, step: int, split: str, record: dict[str, Any]) -> None:
    """record: {metric: float, list of floats (a histogram) or str (left out)}."""
    logged = {f"{split}/{name}": (self._wandb.Histogram(np.asarray(value))
                                  if isinstance(value, list) else value)
              for name, value in record.items() if not isinstance(value, str)}
    self._run.log(logged, step=step)

  def log_image(self, step: int, name: str, grid: np.ndarray) -> None:
    """grid: (H, W, C) uint8."""
    self._run.log({name: self._wandb.Image(grid)}, step=step)

  def close(self) -> None:
    self._run.finish()


def _run_id(workdir: str) -> str:
  """The workdir's W&B run id: the one it kept, or a new one, kept."""
  path = os.path.join(workdir, ID_FILE)
  if os.path.exists(path):
    with open(path) as f:
      return f.read().strip()
  run_id = uuid.uuid4().hex[:16]
  with open(path, "w") as f:
    f.write(run_id)
  return run_id
