"""Data parallelism over every device of every process, through `jax.sharding`.

One process per host (or per accelerator group) runs the same command; `jax.distributed`
joins them into one set of global devices, and one mesh with a "data" axis spans all of
them. Batches are sharded over that axis (parameters and optimiser state replicated):
every process holds the same host data and puts only its own rows of each global batch
on its devices. Only process 0 writes metrics, images and summaries; checkpoints are
written and restored by all together (orbax's multi-host protocol).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging

DATA_AXIS = "data"


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Joins this process to the others, if there are others.

  With `coordinator_address` (host:port of process 0), `num_processes` and `process_id`,
  joins explicitly. Without them, under a SLURM job of several tasks, lets JAX read the
  cluster from the environment. Otherwise does nothing: one process, its local devices.
  On CPU, collectives between processes go through gloo.
  """
  if coordinator_address is not None:
    if num_processes is None or process_id is None:
      raise ValueError("--coordinator_address needs --num_processes and --process_id too.")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id={process_id} must be in [0, {num_processes}).")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  elif int(os.environ.get("SLURM_NTASKS", "1")) > 1:
    jax.distributed.initialize()
  else:
    return
  logging.info("Process %d of %d; %d local and %d global devices.", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def is_primary() -> bool:
  """True in the one process that writes files meant to exist once."""
  return jax.process_index() == 0


def data_mesh() -> jax.sharding.Mesh:
  """Every device of every process on one "data" axis."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def check_divisible(name: str, size: int, mesh: jax.sharding.Mesh, where: str = "") -> None:
  """Raises ValueError unless a global batch of `size` (the setting `name`, set in
  `where`) splits evenly over the mesh."""
  if size % mesh.size:
    lower, upper = size - size % mesh.size, size + mesh.size - size % mesh.size
    fits = f"{lower} or {upper}" if lower else f"{upper}"
    raise ValueError(f"{name}={size} does not divide by the {mesh.size} devices of the "
                     f"data-parallel mesh; use {fits}{where}.")


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Every device holds the whole array (parameters, optimiser state, keys)."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def sharded_along(mesh: jax.sharding.Mesh, axis: int) -> jax.sharding.NamedSharding:
  """Axis `axis` (the examples) split over the "data" axis, the others whole."""
  return jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(*([None] * axis), DATA_AXIS))


def put_global_batch(batch: np.ndarray, sharding: jax.sharding.NamedSharding,
                     axis: int = 0) -> jax.Array:
  """A global array from a host batch that every process holds in full.

  Each process transfers only its own contiguous rows along `axis` (process i of n: the
  i-th n-th), so that with several hosts no process feeds devices it does not own.
  """
  size = batch.shape[axis]
  local = size // jax.process_count()
  rows = np.arange(jax.process_index() * local, (jax.process_index() + 1) * local)
  return jax.make_array_from_process_local_data(
      sharding, np.take(batch, rows, axis=axis), batch.shape)
