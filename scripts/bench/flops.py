"""FLOP counting from jaxprs, and the roofline: a program's matmuls and convolutions alone.

FLOPs of a step: 2 * multiply-adds of every matmul and convolution of the forward and
backward pass (`dot_general` and `conv_general_dilated` in the jaxpr; the holes of
dilated convolutions are not counted, as in XLA's cost analysis). The roofline replays
exactly those matmuls and convolutions alone in one jitted program on random operands.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.extend

NHWC = ("NHWC", "HWIO", "NHWC")

_MATMULS = ("dot_general", "conv_general_dilated")


def matmul_equations(closed_jaxpr) -> list[tuple[Any, int]]:
  """(equation, times run) of every dot_general and convolution, sub-jaxprs included.

  The body of a `scan` counts `length` times; a `while` body (unknown trip count) once.
  Dead equations count too (none in the programs measured here: their forward results
  feed the backward pass).
  """
  found = []

  def visit(jaxpr, times):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in _MATMULS:
        found.append((eqn, times))
      inner = times * eqn.params["length"] if eqn.primitive.name == "scan" else times
      for value in eqn.params.values():
        for sub in value if isinstance(value, (tuple, list)) else (value,):
          if isinstance(sub, jax.extend.core.ClosedJaxpr):
            visit(sub.jaxpr, inner)
          elif isinstance(sub, jax.extend.core.Jaxpr):
            visit(sub, inner)

  visit(closed_jaxpr.jaxpr, 1)
  return found


def _valid_window_pairs(in_size: int, out_size: int, kernel: int, stride: int,
                        padding: tuple[int, int], lhs_dilation: int, rhs_dilation: int) -> int:
  """(output position, kernel tap) pairs of one spatial dim that read a real input element
  (not padding, not a hole of the input dilation)."""
  extent = (in_size - 1) * lhs_dilation + 1
  count = 0
  for out in range(out_size):
    for tap in range(kernel):
      pos = out * stride + tap * rhs_dilation - padding[0]
      count += 0 <= pos < extent and pos % lhs_dilation == 0
  return count


def equation_flops(eqn) -> int:
  """2 * multiply-adds of one dot_general or conv_general_dilated equation."""
  lhs, rhs = (v.aval.shape for v in eqn.invars)
  out = eqn.outvars[0].aval.shape
  if eqn.primitive.name == "dot_general":
    (contracting, _), _ = eqn.params["dimension_numbers"]
    return 2 * math.prod(out) * math.prod(lhs[d] for d in contracting)
  p = eqn.params
  lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
  pairs = 1
  for i, (l_dim, r_dim, o_dim) in enumerate(zip(lhs_spec[2:], rhs_spec[2:], out_spec[2:])):
    pairs *= _valid_window_pairs(lhs[l_dim], out[o_dim], rhs[r_dim], p["window_strides"][i],
                                 p["padding"][i], p["lhs_dilation"][i], p["rhs_dilation"][i])
  batch_per_group = lhs[lhs_spec[0]] // out[out_spec[0]]
  return (2 * out[out_spec[0]] * out[out_spec[1]] * rhs[rhs_spec[1]] * batch_per_group
          * pairs)


def step_matmuls(loss_fn: Callable, *args) -> list[tuple[Any, int]]:
  """Matmul/conv equations of jax.value_and_grad(loss_fn, has_aux=True)(*args)."""
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  return matmul_equations(jax.make_jaxpr(grad_fn)(*args))


def make_roofline(equations: list[tuple[Any, int]], key: jax.Array
                  ) -> tuple[Callable[[], Any], int]:
  """The distinct matmuls and convolutions of a program, alone, as one jitted program.

  Args:
    equations: from `matmul_equations`; each runs once in the roofline, whatever its
      count (a scan body's equations stand for all their iterations: the rate is what
      the roofline measures).
    key: PRNG key of the random operands.

  Returns:
    (call, flops): call() runs every equation once on fixed random operands of its
    shapes and returns the outputs; flops of one call.
  """
  operands = []
  for i, (eqn, _) in enumerate(equations):
    keys = jax.random.split(jax.random.fold_in(key, i), len(eqn.invars))
    operands.append([jax.random.normal(k, v.aval.shape, v.aval.dtype)
                     for k, v in zip(keys, eqn.invars)])

  @jax.jit
  def run(operands):
    return [eqn.primitive.bind(*ops, **eqn.params)
            for (eqn, _), ops in zip(equations, operands)]

  return functools.partial(run, operands), sum(equation_flops(e) for e, _ in equations)


def total_flops(equations: list[tuple[Any, int]]) -> int:
  """FLOPs of a program: every equation's FLOPs times the times it runs."""
  return sum(times * equation_flops(eqn) for eqn, times in equations)
