"""A run that starts from another run's params (`config.train.init_from`): fine-tuning,
e.g. a model trained by the ELBO trained on by an IWAE objective.

The source is a run's workdir. Its params (those it evaluates: its average where it keeps
one) come from its best checkpoint when it kept one (`config.train.keep_best`), else from
its latest. Everything else starts afresh: step 0, the optimiser's state (Adam's moments
at zero), the schedule, the best so far. Only a fresh run starts from the source: a run
with checkpoints of its own resumes from them. Which checkpoint it started from is kept
in its workdir (ORIGIN_FILE), so the run says where it came from after the source moves
on or is gone.
"""

from __future__ import annotations

import os
from typing import Any

import jax

from vae.training import best_checkpoint, checkpoints, update, workdirs

FIELD = "config.train.init_from"
ORIGIN_FILE = "warm_start.json"
"""`{"source": absolute workdir, "checkpoint": "best" | "latest", "step": N}` in the
workdir of a run that started from another run's params."""


def source_checkpoint(source: str) -> tuple[str, int]:
  """Which checkpoint of the run in `source` a warm start reads: ("best" | "latest", step).
  Reads no arrays, so it serves the config's checks.

  Raises:
    ValueError: one line: `source` is not a run's folder, or it holds no checkpoint.
  """
  if not isinstance(source, str) or not os.path.isfile(
      os.path.join(source, checkpoints.CONFIG_FILE)):
    raise ValueError(f"{FIELD}={source!r} must be the workdir of a trained run (a folder "
                     f"with {checkpoints.CONFIG_FILE}): check the path.")
  record = best_checkpoint.read(source)
  if record is not None:
    return "best", record["step"]
  step = checkpoints.latest_step(source)
  if step is None:
    raise ValueError(f"{FIELD}={source!r} holds no checkpoint yet: train it first "
                     f"(python -m experiments.train --workdir={source} ...).")
  return "latest", step


def load_source_params(source: str) -> tuple[Any, dict[str, Any]]:
  """(params, origin: {"source", "checkpoint", "step"} naming the checkpoint read) of the
  run in `source`."""
  which, step = source_checkpoint(source)
  params, step = best_checkpoint.load_params_at(source, "best" if which == "best" else step)
  return params, {"source": os.path.abspath(source), "checkpoint": which, "step": int(step)}


def describe(origin: dict[str, Any]) -> str:
  """'the best checkpoint (step N) of SOURCE' for an origin record."""
  return f"the {origin['checkpoint']} checkpoint (step {origin['step']}) of {origin['source']}"


def warm_started(state: update.TrainState, source: str
                 ) -> tuple[update.TrainState, dict[str, Any]]:
  """`state` (a fresh one) with the params, and their average if it keeps one, of the
  run in `source`; and the origin record of the checkpoint they came from.

  Raises:
    ValueError: one line: the source's params do not fit the model of `state`.
  """
  params, origin = load_source_params(source)
  if (jax.tree.structure(params) != jax.tree.structure(state.params)
      or checkpoints.array_specs(params) != checkpoints.array_specs(state.params)):
    raise ValueError(f"{FIELD}: the params of {describe(origin)} do not fit the model this "
                     "config builds (other layers or shapes). Start from a run of the "
                     "same model config.")
  params = jax.tree.map(lambda fresh, loaded: loaded.astype(fresh.dtype), state.params,
                        params)
  ema_params = None if state.ema_params is None else params
  return update.TrainState(state.step, params, state.opt_state, ema_params), origin


def save_origin(workdir: str, origin: dict[str, Any]) -> None:
  """Writes ORIGIN_FILE (process 0), replacing one an earlier attempt that saved no
  checkpoint left."""
  if jax.process_index() == 0:
    workdirs.write_json(os.path.join(workdir, ORIGIN_FILE), origin)


def forget_origin(workdir: str) -> None:
  """Removes ORIGIN_FILE, if any (process 0): a run that starts from scratch."""
  if jax.process_index() == 0 and os.path.exists(os.path.join(workdir, ORIGIN_FILE)):
    os.remove(os.path.join(workdir, ORIGIN_FILE))


def read_origin(workdir: str) -> dict[str, Any] | None:
  """The origin record of a warm-started run, or None where it is not recorded: a run
  started from scratch or before ORIGIN_FILE existed, or one whose file is damaged (it
  only says where the run came from)."""
  try:
    return workdirs.read_json(os.path.join(workdir, ORIGIN_FILE),
                              {"source": str, "checkpoint": str, "step": int}, "")
  except ValueError:
    return None
