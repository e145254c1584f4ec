"""Tiny stand-ins for the TFDS catalog sets that vae/data reads, prepared offline.

Each fake subclasses the installed catalog builder of its set, so it has the catalog's
name, version and features (at the time of writing: mnist 3.0.1, fashion_mnist 3.0.1,
cifar10 3.0.2 with an extra "id" text feature, binarized_mnist 1.0.0), and replaces only
the example generation: tens of examples, made here, no download. Prepared in
array_record format (no TensorFlow needed) under a data_dir, they sit exactly where
`tfds.builder(name, data_dir=...)` looks for the real sets, so `vae.data` reads them
through its real code path.

Example contents, so tests can tell which example they read:
  mnist, fashion_mnist, cifar10: pixel (h, w, c) of example i is the uint8 value i + c,
    with the example ids of `IDS` (disjoint between the sets); label i % 10.
  binarized_mnist: random 0/1 images, `BINARIZED_SIZES` examples per split.

Registration is skipped, so the catalog keeps its real builders.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image  # tfds.features.Image encodes PIL images without TensorFlow.

# Example ids of each split of the sets with graded pixels (none has a validation split).
IDS = {
    "mnist": {"train": range(0, 20), "test": range(100, 107)},
    "fashion_mnist": {"train": range(20, 40), "test": range(107, 114)},
    "cifar10": {"train": range(40, 60), "test": range(114, 121)},
}
# Examples per split of binarized_mnist, which has its own validation split.
BINARIZED_SIZES = {"train": 6, "validation": 4, "test": 3}


def _image(example_id: int, shape: tuple[int, int, int]) -> Image.Image:
  """The image of example `example_id`: pixel (h, w, c) = example_id + c, uint8."""
  pixels = (example_id + np.arange(shape[-1], dtype=np.uint8)) * np.ones(shape, np.uint8)
  return Image.fromarray(pixels[..., 0] if shape[-1] == 1 else pixels)


def _graded_examples(name: str, split: str, shape: tuple[int, int, int]):
  for i in IDS[name][split]:
    yield i, {"image": _image(i, shape), "label": i % 10}


class FakeMnist(tfds.builder_cls("mnist"), skip_registration=True):
  """The catalog's `mnist` with the examples of IDS["mnist"]."""

  name = "mnist"

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: _graded_examples(self.name, split, (28, 28, 1))
            for split in ("train", "test")}


class FakeFashionMnist(tfds.builder_cls("fashion_mnist"), skip_registration=True):
  """The catalog's `fashion_mnist` with the examples of IDS["fashion_mnist"]."""

  name = "fashion_mnist"

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: _graded_examples(self.name, split, (28, 28, 1))
            for split in ("train", "test")}


class FakeCifar10(tfds.builder_cls("cifar10"), skip_registration=True):
  """The catalog's `cifar10` (32x32x3 colour images, "id" and "label") with the
  examples of IDS["cifar10"]."""

  name = "cifar10"

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._examples(split) for split in ("train", "test")}

  def _examples(self, split):
    for key, example in _graded_examples(self.name, split, (32, 32, 3)):
      yield key, dict(example, id=f"{split}_{key:05d}")  # as the catalog's "train_00042"


class FakeBinarizedMnist(tfds.builder_cls("binarized_mnist"), skip_registration=True):
  """The catalog's `binarized_mnist` (its own validation split, uint8 0/1 images) with
  BINARIZED_SIZES random examples."""

  name = "binarized_mnist"

  @classmethod
  def get_metadata(cls):
    # The catalog builder reads its description from files next to its own module;
    # without this, the fake would look for them next to this file.
    return tfds.builder_cls("binarized_mnist").get_metadata()

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._examples(num, seed)
            for seed, (split, num) in enumerate(BINARIZED_SIZES.items())}

  def _examples(self, num, seed):
    pixels = np.random.default_rng(seed).integers(0, 2, (num, 28, 28), np.uint8)
    for i in range(num):
      yield i, {"image": Image.fromarray(pixels[i])}


FAKES = (FakeMnist, FakeFashionMnist, FakeCifar10, FakeBinarizedMnist)


def prepare(data_dir: str | os.PathLike) -> None:
  """Prepares every fake in array_record format under `data_dir`."""
  tfds.disable_progress_bar()
  for fake in FAKES:
    fake(data_dir=os.fspath(data_dir), file_format="array_record").download_and_prepare()
