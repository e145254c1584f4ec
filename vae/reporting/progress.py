"""How far a long job has got: progress lines with speed and ETA, and interval timing.

`Progress` serves every long pass (the training loop, each evaluation pass) with one
line format; `IntervalTimer` times the training between two logs, leaving out the
evaluations and checkpoints in between, so a logged speed is the speed of training.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import Iterator

from absl import logging


def format_duration(seconds: float) -> str:
  """H:MM:SS of a non-negative number of seconds (negative counts as 0)."""
  seconds = int(max(0, seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
  """Items done out of a total, the speed and the ETA of one pass.

  The line reads "<label> <done>/<total> (<percent>%) | <speed> <unit>/s | elapsed
  H:MM:SS | ETA H:MM:SS". From the second update on, the speed and ETA count from the
  first update, so compilation (which the first item pays) does not distort them;
  after one update they include it and the ETA is an upper bound.
  """

  def __init__(self, label: str, total: int, unit: str, start: int = 0):
    """Args: label: what the pass is; total: items when done; unit: their name
    (plural); start: items already done before this pass (a resumed run)."""
    self.label, self.total, self.unit = label, total, unit
    self._start = (time.perf_counter(), start)
    self._first: tuple[float, int] | None = None

  def status(self, done: int) -> str:
    """The progress line at `done` items; the first call marks where speed counts from."""
    now = time.perf_counter()
    if self._first is None:
      self._first = (now, done)
    since, since_done = self._first if done > self._first[1] else self._start
    rate = (done - since_done) / max(now - since, 1e-9)
    eta = format_duration((self.total - done) / rate) if rate > 0 else "--"
    return (f"{self.label} {done}/{self.total} ({100 * done // max(self.total, 1)}%) | "
            f"{rate:.1f} {self.unit}/s | elapsed {format_duration(now - self._start[0])} | "
            f"ETA {eta}")


class ProgressLine:
  """`Progress` shown as it goes: on a terminal one line rewritten in place (`\\r`) on
  stderr; elsewhere (logs, pipes) an absl log line at most every `log_every` seconds
  and at the end. With `only_if_slow`, nothing is shown before `log_every` seconds have
  passed, so work that ends sooner (a run's routine evaluations) stays silent."""

  def __init__(self, label: str, total: int, unit: str = "examples",
               log_every: float = 30.0, only_if_slow: bool = False):
    self._progress = Progress(label, total, unit)
    self._tty = sys.stderr.isatty()
    self._log_every = log_every
    self._last_log = -math.inf
    self._quiet_until = time.perf_counter() + log_every if only_if_slow else -math.inf
    self._width = 0

  def update(self, done: int) -> None:
    now = time.perf_counter()
    if now < self._quiet_until:
      return
    line = self._progress.status(done)
    finished = done >= self._progress.total
    if self._tty:  # Padded to cover a longer previous line.
      sys.stderr.write("\r" + line.ljust(self._width) + ("\n" if finished else ""))
      sys.stderr.flush()
      self._width = len(line)
    elif finished or now - self._last_log >= self._log_every:
      logging.info("%s", line)
      self._last_log = now


class IntervalTimer:
  """Seconds of work since the last `lap`, leaving out the sections run `paused()`."""

  def __init__(self):
    self._start = time.perf_counter()
    self._paused = 0.0

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    start = time.perf_counter()
    try:
      yield
    finally:
      self._paused += time.perf_counter() - start

  def lap(self) -> float:
    """The working seconds since the last lap (or since creation); starts a new lap."""
    now = time.perf_counter()
    seconds = now - self._start - self._paused
    self._start, self._paused = now, 0.0
    return max(seconds, 1e-9)
