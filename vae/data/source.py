"""What a data source provides: the `DataSource` protocol every source implements.

A source is a data set that `config.data.name` can name (`registry.SOURCES`). It delivers
its own splits ("train" and "test", and "validation" when it has one) as float32 images in
[0, 1]; `vae.data.loading` makes a config's three splits of them (holding out validation,
binarising, caching).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

SPLITS = ("train", "validation", "test")


class DataSource(Protocol):
  """A data set, as one frozen, hashable value.

  The value in `registry.SOURCES` describes the set; `for_config` gives the one a config
  reads. Two sources are equal exactly when they read the same stored data, so a source
  keys the caches of what was read from it.
  """

  def for_config(self, data_config) -> DataSource:
    """This source as `data_config` (`config.data`, its common fields checked) reads it.

    Checks the source's own fields (e.g. config.data.path); reads no data.

    Raises:
      ValueError: naming the offending field and the fix.
    """

  def image_shape_and_kind(self) -> tuple[tuple[int, int, int], str]:
    """(H, W, C) of one image, and the kind of the stored values: "binary" (every value 0
    or 1), "grayscale" (C == 1) or "color"."""

  def check_readable(self) -> None:
    """Raises, quickly, when the data cannot be read as configured (missing, not prepared,
    or needing a library that is not installed)."""

  def split_sizes(self) -> dict[str, int]:
    """Examples in each of the source's own splits: "train" and "test", and "validation"
    when the source has one."""

  def read_rows(self, split: str, start: int, stop: int) -> np.ndarray:
    """Rows start..stop-1 of one of the source's own splits: float32
    (stop - start, H, W, C) in [0, 1], which the caller does not write to."""
