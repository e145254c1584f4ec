"""Several processes (hosts) as one JAX program, through `jax.distributed`.

One process per host (or per accelerator group) runs the same command; JAX joins them
into one set of global devices, and the trainer's mesh spans all of them. Each process
then materialises only its slice of every global batch, and only process 0 writes
metrics, images and summaries; checkpoints are written and restored by all together
(orbax's multi-host protocol).
"""

from __future__ import annotations

import os

import jax
from absl import logging


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
