"""Moves host batches to the device ahead of use, on a background thread."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator

import jax

_DONE = object()


def prefetch_to_device(batches: Iterable, put: Callable[[Any], jax.Array] = jax.device_put,
                       size: int = 2) -> Iterator[jax.Array]:
  """Yields `put(b)` for each b of `batches` (host to device), `size` ready in advance.

  The producer thread prepares and transfers the next batches while the device runs the
  current one, so the step never waits on data. An exception in the producer is
  re-raised in the consumer.
  """
  ready: queue.Queue = queue.Queue(maxsize=size)
  stop = threading.Event()

  def produce():
    try:
      for batch in batches:
        if stop.is_set():
          return
        ready.put(put(batch))
    except BaseException as error:  # Handed to the consumer below.
      ready.put(error)
      return
    ready.put(_DONE)

  thread = threading.Thread(target=produce, daemon=True)
  thread.start()
  try:
    while (item := ready.get()) is not _DONE:
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()
    while thread.is_alive():  # Unblock a producer waiting on a full queue.
      try:
        ready.get(timeout=0.1)
      except queue.Empty:
        pass
