"""The user's .npz file, `config.data.path`, as a source (`config.data.name="npz"`).

The file holds arrays "train", "test" and optionally "validation": images shaped
(N, H, W) or (N, H, W, C) with C = 1 or 3, as uint8 0..255, floats in [0, 1] or bool.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from vae.data import source
from vae.data.images import as_images


@dataclasses.dataclass(frozen=True)
class NpzFile:
  """An .npz file of splits (a `source.DataSource`).

  Attributes:
    path: the file, "~" expanded; None in `registry.SOURCES`, where it stands for
      whichever file a config names.
    mtime_ns: its modification time, so an edited file is read again.
  """

  path: str | None = None
  mtime_ns: int | None = None

  def for_config(self, data_config) -> NpzFile:
    """The file `config.data.path` names; raises ValueError when it is unset or missing."""
    path = data_config.path
    if not path:
      raise ValueError("config.data.path is not set; set it to an .npz file holding "
                       "arrays 'train' and 'test' (and optionally 'validation').")
    if not os.path.isfile(os.path.expanduser(path)):
      raise ValueError(f"config.data.path={path!r}: no such file.")
    path = os.path.expanduser(os.fspath(path))
    return NpzFile(path, os.stat(path).st_mtime_ns)

  def image_shape_and_kind(self) -> tuple[tuple[int, int, int], str]:
    """Loads the file (cached for the reads that follow)."""
    splits, kind = _read_npz(self.path, self.mtime_ns)
    return splits["train"].shape[1:], kind

  def check_readable(self) -> None:
    """Loads and checks the file; raises ValueError naming what is wrong with it."""
    _read_npz(self.path, self.mtime_ns)

  def split_sizes(self) -> dict[str, int]:
    splits, _ = _read_npz(self.path, self.mtime_ns)
    return {split: len(images) for split, images in splits.items()}

  def read_rows(self, split: str, start: int, stop: int) -> np.ndarray:
    splits, _ = _read_npz(self.path, self.mtime_ns)
    return splits[split][start:stop]


@functools.lru_cache(maxsize=2)
def _read_npz(path: str, mtime_ns: int) -> tuple[dict[str, np.ndarray], str]:
  """Loads and checks an npz file (`mtime_ns` only keys the cache).

  Returns:
    The file's splits as read-only float32 (N, H, W, C) in [0, 1], and their kind
    ("binary", "grayscale" or "color").

  Raises:
    ValueError: naming config.data.path and what is wrong with the file.
  """
  del mtime_ns
  where = f"config.data.path={path!r}"
  try:
    contents = np.load(path)
    if not isinstance(contents, np.lib.npyio.NpzFile):
      raise ValueError("it holds a single array")
    with contents:
      arrays = {split: contents[split] for split in source.SPLITS if split in contents.files}
  except (OSError, ValueError) as error:
    raise ValueError(f"{where} is not a readable .npz archive ({error}); write it with "
                     "np.savez(path, train=..., test=...).") from error
  missing = [split for split in ("train", "test") if split not in arrays]
  if missing:
    raise ValueError(f"{where} lacks the array(s) {missing}; it must hold 'train' and "
                     f"'test' (optionally 'validation'); it holds {sorted(arrays)}.")
  splits = {split: as_images(array, f"{where}, array {split!r}")
            for split, array in arrays.items()}
  shapes = {split: images.shape[1:] for split, images in splits.items()}
  if len(set(shapes.values())) > 1:
    raise ValueError(f"{where}: the splits' image shapes differ: {shapes}; all splits "
                     "must hold images of one (H, W, C).")
  if len(splits["train"]) == 0:
    raise ValueError(f"{where}: the array 'train' holds no images.")
  channels = shapes["train"][-1]
  binary = all(np.isin(images, (0.0, 1.0)).all() for images in splits.values())
  kind = "binary" if binary else "grayscale" if channels == 1 else "color"
  for images in splits.values():
    images.flags.writeable = False
  return splits, kind
