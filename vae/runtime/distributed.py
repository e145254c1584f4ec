"""Data parallelism over every device of every process, through `jax.sharding`.

One process per host (or per accelerator group) runs the same command; `jax.distributed`
joins them into one set of global devices, and one mesh with a "data" axis spans all of
them. Batches are sharded over that axis (parameters and optimiser state replicated):
process p of P feeds rows p/P to (p+1)/P of every global batch to its devices, and reads
only the data those rows come from: its shards of the training split
(`process_shards`) and its contiguous part of an evaluation split (`process_rows`).
Only process 0 writes metrics, images and summaries; checkpoints are written and
restored by all together (orbax's multi-host protocol).
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
  """Every device of every process on one "data" axis, grouped by process in process
  order: process p's devices hold rows p/P to (p+1)/P of a batch (`put_process_rows`)."""
  devices = sorted(jax.devices(), key=lambda device: (device.process_index, device.id))
  return jax.sharding.Mesh(np.array(devices), (DATA_AXIS,),
                           axis_types=(jax.sharding.AxisType.Auto,))


def check_divisible(name: str, size: int, mesh: jax.sharding.Mesh, where: str = "") -> None:
  """Raises ValueError unless a global batch of `size` (the setting `name`, set in
  `where`) splits evenly over the mesh."""
  if size % mesh.size:
    lower, upper = size - size % mesh.size, size + mesh.size - size % mesh.size
    fits = f"{lower} or {upper}" if lower else f"{upper}"
    raise ValueError(f"{name}={size} does not divide by the {mesh.size} devices of the "
                     f"data-parallel mesh; use {fits}{where}.")


def process_shards(num_shards: int) -> range:
  """The shards of the training split (of `num_shards`) that this process reads.

  Raises:
    ValueError: num_shards does not divide by the number of processes.
  """
  count, index = jax.process_count(), jax.process_index()
  if num_shards % count:
    raise ValueError(
        f"config.data.num_shards={num_shards} does not divide by the {count} processes: "
        "each process reads whole shards of the training set. Set "
        f"--config.data.num_shards={count} (or a multiple); the batches depend on "
        "num_shards, not on the number of processes, so a one-process run with the same "
        "num_shards gives the same numbers.")
  per_process = num_shards // count
  return range(index * per_process, (index + 1) * per_process)


def process_rows(num_examples: int) -> range:
  """This process's contiguous part of `num_examples` rows: process p of P holds rows
  p * c to (p + 1) * c - 1 (clipped to num_examples), c = ceil(num_examples / P)."""
  per_process = -(-num_examples // jax.process_count())
  start = min(jax.process_index() * per_process, num_examples)
  return range(start, min(start + per_process, num_examples))


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Every device holds the whole array (parameters, optimiser state, keys)."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def sharded_along(mesh: jax.sharding.Mesh, axis: int) -> jax.sharding.NamedSharding:
  """Axis `axis` (the examples) split over the "data" axis, the others whole."""
  return jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(*([None] * axis), DATA_AXIS))


def put_process_rows(rows: np.ndarray, sharding: jax.sharding.NamedSharding,
                     axis: int = 0) -> jax.Array:
  """A global array from each process's contiguous part along `axis`: process p of P
  gives rows p/P to (p+1)/P of the global array (all processes give equal shapes)."""
  global_shape = list(rows.shape)
  global_shape[axis] *= jax.process_count()
  return jax.make_array_from_process_local_data(sharding, rows, tuple(global_shape))

