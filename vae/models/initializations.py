"""How a model's params are first drawn: config.model.init names an entry of
`INITIALIZATIONS` (flax's own initialisers, or PyTorch's defaults redrawn over them)."""

from __future__ import annotations

import math
from typing import Any, Callable

import jax

Array = jax.Array


def _fan_in_uniform(key: Array, params: Any, he_normal_kernels: bool = False) -> Any:
  """PyTorch's default for nn.Linear and nn.Conv: every kernel and bias uniform in
  +-1/sqrt(fan_in), fan_in = the kernel's size without its output axis. A module named
  "extra" keeps its zeros (a posterior family's head starts at the diagonal Gaussian).
  With he_normal_kernels the kernels are N(0, 2 / fan_in) instead (PyTorch's
  kaiming_normal_, which Tomczak & Welling's `he_init` applies to every nn.Linear)."""
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  fan_ins = {_module_path(path): math.prod(leaf.shape[:-1])
             for path, leaf in paths_and_leaves if path[-1].key == "kernel"}

  def redraw(leaf_key, path, leaf):
    if path[-1].key not in ("kernel", "bias") or "extra" in _module_path(path):
      return leaf
    fan_in = fan_ins[_module_path(path)]
    if he_normal_kernels and path[-1].key == "kernel":
      return math.sqrt(2.0 / fan_in) * jax.random.normal(leaf_key, leaf.shape, leaf.dtype)
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(leaf_key, leaf.shape, leaf.dtype, -bound, bound)

  leaf_keys = jax.random.split(key, len(paths_and_leaves))
  return jax.tree_util.tree_unflatten(treedef, [
      redraw(k, path, leaf) for k, (path, leaf) in zip(leaf_keys, paths_and_leaves)])


def _module_path(path) -> tuple[str, ...]:
  """The names of the modules that hold the leaf at a `tree_flatten_with_path` path."""
  return tuple(entry.key for entry in path[:-1])


INITIALIZATIONS: dict[str, Callable[[Array, Any], Any] | None] = {
    "lecun_normal": None,  # flax's defaults: LeCun-normal kernels, zero biases
    "fan_in_uniform": _fan_in_uniform,  # PyTorch's defaults
    "he_normal": lambda key, params: _fan_in_uniform(key, params, he_normal_kernels=True),
}
"""config.model.init -> how `Model.init` redraws the params flax's own initialisers
made: (key, params) -> params, or None to keep flax's."""
