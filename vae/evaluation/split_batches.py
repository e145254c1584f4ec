"""A function of a batch applied to a whole split in fixed-size batches, over every device.

Every batch is split over the "data" axis of a mesh of all devices of all processes
(`vae.runtime.distributed`), params replicated, so a batch size must divide by the device
count. Each process reads only its contiguous part of a split (given a
`vae.data.LazySplit`) and fills its rows of every batch from it; every process receives
every result. Batches are padded with zeros to one size, so each function compiles once.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from vae.reporting.progress import ProgressLine
from vae.runtime import distributed


def data_parallel_jit(fn: Callable, mesh: jax.sharding.Mesh, num_replicated: int,
                      num_sharded: int) -> Callable:
  """jax.jit(fn) for fn(*replicated args, *args split along their first axis), every
  output replicated (each process then reads the whole batch of results)."""
  replicated = distributed.replicated(mesh)
  by_example = distributed.sharded_along(mesh, 0)
  return jax.jit(fn, out_shardings=replicated,
                 in_shardings=(replicated,) * num_replicated + (by_example,) * num_sharded)


def map_batches(fn: Callable, arrays: tuple[Any, ...], batch_size: int,
                mesh: jax.sharding.Mesh, progress: ProgressLine | None = None) -> Any:
  """Applies fn(indices (B,), *batches) to fixed-size batches of `arrays` (each (N, ...);
  see `_dispatch_batches`). fn returns replicated arrays, so every process gets every
  result. The next batch is dispatched before the previous one is fetched, so the host
  never leaves the devices idle.

  Returns:
    fn's output pytree with leaves concatenated over the N examples in split order, as
    numpy arrays.
  """
  outputs, positions, pending = [], [], None

  def fetch(item):
    result, valid, num_done = item
    outputs.append(jax.tree.map(lambda leaf: np.asarray(leaf)[valid], jax.device_get(result)))
    if progress is not None:
      progress.update(num_done)

  for result, valid, batch_positions, done in _dispatch_batches(fn, arrays, batch_size, mesh):
    positions.append(batch_positions)
    if pending is not None:
      fetch(pending)
    pending = (result, valid, done)
  fetch(pending)
  order = np.argsort(np.concatenate(positions))
  return jax.tree.map(lambda *leaves: np.concatenate(leaves)[order], *outputs)


def reduce_batches(fn: Callable, arrays: tuple[Any, ...], batch_size: int,
                   mesh: jax.sharding.Mesh, combine: Callable) -> np.ndarray:
  """combine(...combine(fn(batch 1), fn(batch 2))...) over fixed-size batches of
  `arrays`, fn(indices, valid, *batches) returning a replicated array that leaves the
  padding rows (valid False) out; combined on the devices, fetched once."""
  total = None
  for result, *_ in _dispatch_batches(fn, arrays, batch_size, mesh, with_valid=True):
    total = result if total is None else combine(total, result)
  return np.asarray(jax.device_get(total))


def _dispatch_batches(fn: Callable, arrays: tuple[Any, ...], batch_size: int,
                      mesh: jax.sharding.Mesh, with_valid: bool = False):
  """Calls fn(indices (B,), [valid (B,),] *batches) on fixed-size batches of `arrays`
  (each (N, ...)) and yields (result, valid, positions, number done) per call.

  `arrays` are the whole split's (numpy arrays, or `vae.data.LazySplit`s that read only
  what is asked for): each process reads only its part, `distributed.process_rows(N)`,
  and fills rows p/P to (p+1)/P of every global batch from it, padded with zeros where
  its part runs out (so fn compiles once); `indices` are the examples' indices in the
  split, `valid` (host numpy; also passed to fn if `with_valid`) marks the rows that are
  not padding and `positions` their places in the split. fn's arguments are split over
  the mesh's "data" axis.
  """
  num = len(arrays[0])
  if num == 0:
    raise ValueError("There are no examples to evaluate.")
  rows = distributed.process_rows(num)
  local = [np.asarray(array[rows.start:rows.stop]) for array in arrays]
  processes = jax.process_count()
  per_process, local_batch = -(-num // processes), batch_size // processes
  by_example = distributed.sharded_along(mesh, 0)
  done = 0
  # Every process makes the same number of calls, whatever the size of its part.
  for start in range(0, per_process, local_batch):
    offsets = start + np.arange(local_batch)
    # Process q's rows of this batch are examples q * per_process + offsets.
    batch_positions = (np.arange(processes)[:, None] * per_process + offsets).ravel()
    valid = np.tile(offsets < per_process, processes) & (batch_positions < num)
    batches = [rows.start + offsets]
    if with_valid:
      batches.append(valid.reshape(processes, local_batch)[jax.process_index()])
    batches += [_zero_padded(array[start:start + local_batch], local_batch)
                for array in local]
    result = fn(*(distributed.put_process_rows(b, by_example) for b in batches))
    done += int(valid.sum())
    yield result, valid, batch_positions[valid], done


def _zero_padded(rows: np.ndarray, size: int) -> np.ndarray:
  """`rows` (n <= size, ...) followed by size - n rows of zeros."""
  padding = np.zeros((size - len(rows),) + rows.shape[1:], rows.dtype)
  return np.concatenate([rows, padding])
