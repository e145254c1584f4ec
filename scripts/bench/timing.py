"""Timing of jitted calls: steady-state seconds per call, throughput, peak memory."""

from __future__ import annotations

import math
import resource
import sys
import time
from typing import Any, Callable

import jax
import numpy as np

MIB = 2**20


def peak_rss_mib() -> float:
  """Peak resident memory of this process so far (ru_maxrss), in MiB."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / MIB if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def time_calls(subjects: dict[str, Callable[[], Any]], repeats: int, min_seconds: float,
               block_each: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
  """Steady-state seconds per call of each subject, repeats interleaved between subjects.

  Each subject is called once (compilation) and once more (warm-up, and to choose how
  many calls make a repeat of at least `min_seconds`); then `repeats` rounds time each
  subject in turn, so a slow spell of the machine hits all of them alike.

  Args:
    subjects: name -> call() that dispatches one call and returns what to wait for.
      Successive calls of one subject must depend on each other (donated state), so
      waiting for the last waits for all; subjects in `block_each` are waited for after
      every call instead.
    repeats: timed rounds, >= 1.
    min_seconds: minimum length of one timed repeat.
    block_each: names of subjects whose calls are independent.

  Returns:
    name -> {first_call_s, calls_per_repeat, seconds_per_call: [repeats], median_s}.
  """
  results = {}
  for name, call in subjects.items():
    start = time.perf_counter()
    jax.block_until_ready(call())
    first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(call())
    second = time.perf_counter() - start
    results[name] = dict(first_call_s=first,
                         calls_per_repeat=max(1, math.ceil(min_seconds / max(second, 1e-6))),
                         seconds_per_call=[])
  for _ in range(repeats):
    for name, call in subjects.items():
      calls = results[name]["calls_per_repeat"]
      start = time.perf_counter()
      for _ in range(calls):
        out = call()
        if name in block_each:
          jax.block_until_ready(out)
      jax.block_until_ready(out)
      results[name]["seconds_per_call"].append((time.perf_counter() - start) / calls)
  for result in results.values():
    result["median_s"] = float(np.median(result["seconds_per_call"]))
  return results


def rate(result: dict[str, Any], examples_per_call: int, flops_per_call: int
          ) -> dict[str, Any]:
  """Throughput figures of one `time_calls` result."""
  seconds = result["median_s"]
  return dict(examples_per_s=examples_per_call / seconds,
              examples_per_s_repeats=[examples_per_call / s
                                      for s in result["seconds_per_call"]],
              gflops=flops_per_call / seconds / 1e9, seconds_per_call=seconds,
              first_call_s=result["first_call_s"],
              compile_s=max(0.0, result["first_call_s"] - seconds),
              calls_per_repeat=result["calls_per_repeat"])
