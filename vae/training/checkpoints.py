"""Orbax checkpoints of the train state, and the check that a workdir fits the config.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so an
interrupted save never damages an earlier checkpoint. A checkpoint damaged afterwards (a
file truncated by a crash or a full disk) raises DamagedCheckpointError on restore, and
`set_aside` moves it out of the way for inspection; a checkpoint whose arrays are not
those of the model raises the "does not fit" ValueError; a save that runs out of disk
space raises `vae.common.errors.DiskFullError` and leaves nothing half-written.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from vae.common import errors
from vae.config import migration
from vae.training import update

CONFIG_FILE = "config.json"
DAMAGED_DIR = "damaged_checkpoints"


class DamagedCheckpointError(ValueError):
  """A checkpoint's files cannot be read back (truncated, missing, corrupted)."""

# Fields a resumed run may change: how long it runs and how it reports, not what it learns.
RESUMABLE_CHANGES = ("train.num_steps", "train.log_every", "train.eval_every",
                     "train.checkpoint_every", "train.keep_checkpoints", "train.keep_best",
                     "eval.", "logging.")


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON types (tuples become lists)."""
  return json.loads(config.to_json())


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
    json.dump(config_to_dict(config), f, indent=2, sort_keys=True)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run saved in its workdir, with the fields it predates at their old
  values (`vae.config.migration`)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise ValueError(f"{path} does not exist: {workdir} holds no run. Check --workdir.")
  with open(path) as f:
    return ml_collections.ConfigDict(migration.migrate(json.load(f)))


def differing_fields(first: dict, second: dict) -> list[str]:
  """Dotted names of the fields whose values differ between two config dicts."""
  first, second = _flatten(first), _flatten(second)
  return sorted(name for name in set(first) | set(second)
                if first.get(name) != second.get(name))


def incompatible_fields(saved: dict, current: dict) -> list[str]:
  """Dotted names of fields that differ and that a resumed run may not change."""
  return [name for name in differing_fields(saved, current)
          if not any(name == r or (r.endswith(".") and name.startswith(r))
                     for r in RESUMABLE_CHANGES)]


def latest_step(workdir: str) -> int | None:
  """The step of the newest complete checkpoint in workdir, without opening a manager.

  Orbax names a checkpoint folder by its step only once it is complete.
  """
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return None
  steps = [int(name) for name in os.listdir(directory) if name.isdigit()]
  return max(steps, default=None)


def discard_after(workdir: str, step: int) -> list[int]:
  """Deletes workdir's checkpoints of steps after `step` (a failed run's frozen state,
  before it is tried again); returns their steps."""
  directory = os.path.join(workdir, "checkpoints")
  later = sorted(int(name) for name in (os.listdir(directory) if os.path.isdir(directory)
                                        else ()) if name.isdigit() and int(name) > step)
  for later_step in later:
    shutil.rmtree(os.path.join(directory, str(later_step)))
  return later


class Checkpointer:
  """Keeps the last `max_to_keep` checkpoints of a pytree under `workdir/<folder>`."""

  def __init__(self, workdir: str, max_to_keep: int, folder: str = "checkpoints"):
    self.directory = os.path.join(os.path.abspath(workdir), folder)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_handlers=ocp.StandardCheckpointHandler(),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any) -> None:
    """Saves and waits until the checkpoint is complete on disk.

    Raises:
      vae.common.errors.DiskFullError: the disk filled up; the partial checkpoint is removed
        and the earlier ones are untouched.
    """
    try:
      self._manager.save(step, args=ocp.args.StandardSave(state))
      self._manager.wait_until_finished()
    except Exception as error:  # orbax raises ValueError (tensorstore) or OSError for it
      if not errors.is_out_of_space(error):
        raise
      for partial in glob.glob(os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*")):
        shutil.rmtree(partial, ignore_errors=True)
      earlier = [s for s in self.all_steps() if s < step]
      raise errors.DiskFullError(
          f"No space left on the disk of {self.directory} to save the checkpoint of step "
          f"{step}. Free space there (or use a --workdir on another disk) and rerun the "
          "command to resume from "
          f"{f'step {earlier[-1]}' if earlier else 'the start'}.") from None

  def restore(self, step: int, like: Any = None) -> Any:
    """Restores the checkpoint of `step` into the structure, shapes and dtypes of `like`,
    by default those saved, as numpy arrays (so every process reads the whole tree,
    whichever devices wrote it).

    Raises:
      DamagedCheckpointError: its files cannot be read.
      ValueError: its arrays are not those of `like` (another model).
    """
    try:
      saved = jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype),
                           self._manager.item_metadata(step).tree)
    except Exception as error:  # orbax raises many types for unreadable metadata
      raise self._damaged(step, error) from error
    if like is not None and array_specs(saved) != array_specs(like):
      raise ValueError(
          f"The checkpoint at step {step} in {self.directory} does not fit the model this "
          "config builds (its arrays have other shapes). Use a new --workdir, or the config "
          "saved with the checkpoint.")
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(
          saved if like is None else like))
    except Exception as error:  # the arrays fit, so their files are at fault
      raise self._damaged(step, error) from error

  def _damaged(self, step: int, error: Exception) -> DamagedCheckpointError:
    return DamagedCheckpointError(
        f"The checkpoint of step {step} in {self.directory} is damaged "
        f"({type(error).__name__}: {str(error)[:200]}).")

  def set_aside(self, step: int) -> str:
    """Moves the checkpoint of `step` to workdir/damaged_checkpoints/<step> (process 0;
    the others wait for it), out of orbax's sight; returns where it went."""
    destination = os.path.join(os.path.dirname(self.directory), DAMAGED_DIR, str(step))
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(destination), exist_ok=True)
      if os.path.exists(destination):
        shutil.rmtree(destination)
      shutil.move(os.path.join(self.directory, str(step)), destination)
    if jax.process_count() > 1:
      ocp.multihost.sync_global_processes(f"set_aside_{step}")
    self._manager.reload()
    return destination

  def delete(self, step: int) -> None:
    self._manager.delete(step)

  def close(self) -> None:
    self._manager.close()


def array_specs(tree: Any) -> list[tuple[tuple[int, ...], str]]:
  """The sorted (shape, dtype) of every array leaf: what a checkpoint must match."""
  return sorted((tuple(np.shape(leaf)), str(np.asarray(leaf).dtype))
                for leaf in jax.tree.leaves(tree))


def check_resumable(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Raises ValueError if workdir holds a run whose config the new one cannot resume."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = migration.migrate(json.load(f))
  changed = incompatible_fields(saved, config_to_dict(config))
  if changed:
    saved_flat, current_flat = _flatten(saved), _flatten(config_to_dict(config))
    details = ", ".join(
        f"{name}: {saved_flat.get(name)!r} -> {current_flat.get(name)!r}" for name in changed
    )
    raise ValueError(
        f"{workdir} holds a run of a different config ({details}); resuming it would mix "
        f"two experiments. Use a new --workdir, or rerun with the saved config {path} "
        "(only train.num_steps, logging, checkpoint and eval settings may change)."
    )


def load_params(workdir: str, step: int | None = None) -> tuple[ml_collections.ConfigDict, Any, int]:
  """The saved config, the model params and the step of a run's checkpoint.

  Args:
    workdir: a run's folder, as `vae.training.train.train_and_evaluate` writes it.
    step: which checkpoint; None for the latest.

  Returns:
    (config, params pytree, step); the params' average where the run keeps one
    (config.train.ema_decay > 0), as its evaluations used.

  Raises:
    ValueError: no config or no checkpoint in workdir, naming what to run first.
  """
  config = load_config(workdir)
  checkpointer = Checkpointer(workdir, config.train.keep_checkpoints)
  available = checkpointer.all_steps()
  if not available:
    raise ValueError(f"{workdir} holds no checkpoint. Train first: python -m "
                     f"experiments.train --config=... --workdir={workdir}")
  step = available[-1] if step is None else step
  if step not in available:
    raise ValueError(f"{workdir} has no checkpoint of step {step}; it has {available}.")
  try:
    state = checkpointer.restore(step)["state"]
  finally:
    checkpointer.close()
  return config, update.evaluated_params(update.from_checkpoint_tree(state)), step
