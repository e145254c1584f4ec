"""Per-example kernels over a batch, one key per example: the one place that says which.

Example i of a batch gets the key fold_in(key, first_index + i), so its numbers depend on
its index alone, never on the batch size or on how a split is cut into batches: the
evaluator passes each example's index in its split, and a batch cut in two gives the same
numbers as the whole. With first_index = 0 these keys are bit for bit those of
`jax.random.split(key, B)` (JAX's partitionable threefry, its default since 0.5).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def example_keys(key: Array, indices: Array) -> Array:
  """(B,) keys fold_in(key, i), one per example index i of `indices` (B,)."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)


def batch_keys(key: Array, batch_size: int, first_index: int | Array = 0) -> Array:
  """(batch_size,) keys of the examples first_index, first_index + 1, ... of a batch."""
  return example_keys(key, first_index + jnp.arange(batch_size))


def map_examples(per_example: Callable[..., Any], key: Array, *batched: Any,
                 first_index: int | Array = 0) -> Any:
  """`per_example(key_i, *arrays_i)` over the leading axis of every array in `batched`
  (each (B, ...)), with example i's key fold_in(key, first_index + i); every output gains
  a leading (B,) axis."""
  batch_size = jax.tree_util.tree_leaves(batched[0])[0].shape[0]
  return jax.vmap(per_example)(batch_keys(key, batch_size, first_index), *batched)
