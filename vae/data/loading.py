"""A config's three splits, "train", "validation" and "test", as float32 images in [0, 1],
read from its source (`registry.SOURCES[config.data.name]`), checked and cached.

Sources without their own validation split (mnist, fashion_mnist, cifar10, idx folders,
and npz files without "validation") hold out the LAST `config.data.validation_size`
examples of their train split as "validation": in the order the source stores them, or,
with `config.data.validation_shuffle_seed` set, after shuffling the train split once with
that seed (Tomczak & Welling's protocol; the whole train split is read then). Binarisation follows
`config.data.binarize` (`vae.data.binarization`).

Reading part of a split: `load_split(..., rows=range(a, b))` (and `LazySplit`) read only
rows a..b-1 (TFDS data: only those records), so that with several processes each reads
its own part: the training split as `config.data.num_shards` equal shards
(`TrainBatches`), evaluation splits as contiguous row ranges.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from vae.data import binarization, config_fields, registry, source


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static description of the data a config delivers.

  Attributes:
    name: `config.data.name`.
    image_shape: (H, W, C) of one image.
    kind: "binary" when every delivered value is 0 or 1 (a binary source, or any source
      with `config.data.binarize` != "none"), else "grayscale" (C == 1) or "color".
  """

  name: str
  image_shape: tuple[int, int, int]
  kind: str


def dataset_info(data_config) -> DatasetInfo:
  """Shape and kind of the data `data_config` delivers.

  Cheap for the registry sets (no data is read, TFDS data need not be prepared); for
  "npz" the file is loaded (and cached for `load_split`).

  Raises:
    ValueError: for an invalid name, binarize mode, or npz file.
  """
  image_shape, source_kind = configured_source(data_config).image_shape_and_kind()
  kind = "binary" if data_config.binarize != "none" else source_kind
  return DatasetInfo(data_config.name, tuple(image_shape), kind)


def validate_data_config(data_config) -> None:
  """Checks `data_config` and that its data can be read; call before any long work.

  Checks the fields, then the source: an npz file is loaded and checked, a TFDS set must
  be prepared under `data_dir` (or `download=True`) and readable with what is installed.

  Raises:
    ValueError: one message naming the offending field (e.g. "config.data.name") and the
      fix.
    ImportError: the data needs TensorFlow (tfrecord data, or a download) and it is not
      installed.
  """
  configured_source(data_config).check_readable()


def split_size(data_config, split: str) -> int:
  """Examples in one split of the configured data, reading as little as possible (for
  TFDS sets only the metadata).

  Raises:
    ValueError, ImportError, ConnectionError: as `load_split`.
  """
  config_fields.check_split(split)
  return _split_sizes(configured_source(data_config), data_config.validation_size)[split]


def load_split(data_config, split: str, rows: range | None = None) -> np.ndarray:
  """Rows of one split of the configured data (all of it by default), kept in a small
  cache of recent reads.

  Args:
    data_config: the `config.data` ConfigDict.
    split: "train", "validation" or "test".
    rows: which examples, a contiguous range within range(split_size(...)); only these
      are read (for TFDS data, only these records).

  Returns:
    float32 array (len(rows), H, W, C), values in [0, 1]; read-only, shared between
    calls. Binarised with a fixed seed when `binarize` is "static", and for "validation"
    and "test" when it is "dynamic" (the training batches of "dynamic" are binarised by
    `TrainBatches`); an example's sample does not depend on `rows`. "validation" has 0
    examples when the source has no validation split and `validation_size` is 0.

  Raises:
    ValueError: invalid config, split or rows; unprepared TFDS data (and download
      False); `validation_size` not smaller than the train split.
    ImportError: the data needs TensorFlow (tfrecord data, or a download) and it is not
      installed.
    ConnectionError: `download` is True and the download host does not answer.
  """
  size = split_size(data_config, split)  # the source's own checks run here
  rows = range(size) if rows is None else rows
  if rows.step != 1 or not 0 <= rows.start <= rows.stop <= size:
    raise ValueError(f"rows={rows} must be a contiguous range within range({size}), the "
                     f"{split!r} split of {data_config.name}.")
  return _load_split(configured_source(data_config), data_config.binarize,
                     data_config.validation_size, _shuffle_seed(data_config), split,
                     rows.start, rows.stop)


class LazySplit:
  """A split as a lazy array of images: slicing `[a:b]` reads nothing, `np.asarray(split)`
  reads its rows (through `load_split`: for TFDS data only those records; the embedded
  and npz sources are loaded whole once and sliced). Creating one reads the split's
  size (TFDS: metadata only).

  Lets code written for an array of a whole split (`len(images)`, `images[:n]`,
  `np.asarray(images[a:b])`) read only the rows it uses, e.g. one process's part.
  """

  def __init__(self, data_config, split: str, rows: range | None = None):
    self._data_config, self._split = data_config, split
    self.rows = range(split_size(data_config, split)) if rows is None else rows

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, index: slice) -> LazySplit:
    if not isinstance(index, slice) or index.step not in (None, 1):
      raise TypeError(f"A LazySplit takes only [start:stop], got {index!r}; read it with "
                      "np.asarray first.")
    return LazySplit(self._data_config, self._split, self.rows[index])

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    images = load_split(self._data_config, self._split, self.rows)
    return images.astype(dtype or images.dtype, copy=bool(copy))


def configured_source(data_config) -> source.DataSource:
  """The source `data_config` reads, its fields checked; no data is read.

  Raises:
    ValueError: naming the offending field (e.g. "config.data.name") and the fix.
  """
  config_fields.check_fields(data_config)
  return registry.SOURCES[data_config.name].for_config(data_config)


def _shuffle_seed(data_config) -> int | None:
  return data_config.get("validation_shuffle_seed")  # runs saved before the field: None


@functools.lru_cache(maxsize=8)
def _load_split(data_source: source.DataSource, binarize: str, validation_size: int,
                shuffle_seed: int | None, split: str, start: int, stop: int) -> np.ndarray:
  """`load_split` behind its checks: rows start..stop-1, float32 (n, H, W, C), read-only."""
  source_split, offset = _locate(data_source, validation_size, split)
  if shuffle_seed is not None and "validation" not in data_source.split_sizes() and (
      source_split == "train"):
    rows = _holdout_order(data_source, shuffle_seed)[offset + start:offset + stop]
    images = _read_source_train(data_source)[rows]
  else:
    images = data_source.read_rows(source_split, offset + start, offset + stop)
  if binarize == "static" or (binarize == "dynamic" and split != "train"):
    images = binarization.fixed_bernoulli(
        images, start, binarization.FIXED_BINARIZATION_SEEDS[split])
  images.flags.writeable = False
  return images


def _holdout_order(data_source: source.DataSource, shuffle_seed: int) -> np.ndarray:
  """The rows of the source's train split in the shuffled order whose last
  validation_size are "validation" and the rest "train"."""
  size = data_source.split_sizes()["train"]
  return np.random.default_rng((shuffle_seed, binarization.HOLDOUT_STREAM)).permutation(size)


@functools.lru_cache(maxsize=1)
def _read_source_train(data_source: source.DataSource) -> np.ndarray:
  """The source's whole train split (read once for a shuffled hold-out)."""
  return data_source.read_rows("train", 0, data_source.split_sizes()["train"])


def _split_sizes(data_source: source.DataSource, validation_size: int) -> dict[str, int]:
  """Examples in each of `source.SPLITS`, with the held-out validation split where the
  source has none."""
  sizes = data_source.split_sizes()
  if "validation" in sizes:
    return sizes
  train = sizes["train"]
  if validation_size >= train:
    raise ValueError(
        f"config.data.validation_size={validation_size} leaves no training data: the "
        f"train split has {train} examples; use a smaller value.")
  return {"train": train - validation_size, "validation": validation_size,
          "test": sizes["test"]}


def _locate(data_source: source.DataSource, validation_size: int,
            split: str) -> tuple[str, int]:
  """(source split, index of the split's first row in it): a held-out "validation" is
  the last `validation_size` rows of the source's "train"."""
  if split == "validation" and "validation" not in data_source.split_sizes():
    return "train", _split_sizes(data_source, validation_size)["train"]
  return split, 0
