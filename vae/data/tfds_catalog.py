"""tensorflow-datasets (TFDS) catalog sets (mnist, fashion_mnist, cifar10,
binarized_mnist), read from `config.data.data_dir`.

Catalog sets follow a "prepared data or a clear error" policy. Reading needs data already
prepared under `data_dir`; preferably in the `array_record` format, which is read with
`tfds.data_source` and needs no TensorFlow. Data in TFDS's default `tfrecord` format can
only be read when TensorFlow is installed. A set that is not prepared raises at once a
ValueError naming the set, the folder searched and the commands that prepare it, instead
of entering TFDS's minutes-long download retry loop. With `config.data.download=True` the
set is downloaded and prepared here (in `array_record`) after a few-second network probe.
TensorFlow is only an optional extra (`pip install '.[prepare]'`): TFDS needs it to
prepare catalog image sets, never to read `array_record` data.

tensorflow_datasets is imported only when a catalog set is read.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import urllib.error
import urllib.request

import numpy as np

from vae.data import source

# Seconds the network probe waits before declaring the download host unreachable.
_PROBE_TIMEOUT = 5.0

_PREPARE_EXTRA = "pip install tensorflow-cpu (or the extra: pip install '.[prepare]')"


@dataclasses.dataclass(frozen=True)
class CatalogSet:
  """A TFDS catalog set (a `source.DataSource`); these sets have no validation split.

  Attributes:
    name: the catalog name, also `config.data.name`.
    image_shape: (H, W, C) of one image.
    kind: "binary" (stored as uint8 0/1), "grayscale" or "color" (uint8 0..255).
    data_dir: `config.data.data_dir`, "~" expanded; None: TFDS's default.
    download: `config.data.download`: download and prepare the set when it is not.
  """

  name: str
  image_shape: tuple[int, int, int]
  kind: str
  data_dir: str | None = None
  download: bool = False

  def for_config(self, data_config) -> CatalogSet:
    data_dir = data_config.data_dir
    data_dir = None if data_dir is None else os.path.expanduser(os.fspath(data_dir))
    return dataclasses.replace(self, data_dir=data_dir, download=data_config.download)

  def image_shape_and_kind(self) -> tuple[tuple[int, int, int], str]:
    """Needs no data: the set need not be prepared."""
    return self.image_shape, self.kind

  def check_readable(self) -> None:
    """The set must be prepared under `data_dir` (or `download` True) and readable with
    what is installed.

    Raises:
      ValueError: the set is not prepared and `download` is False.
      ImportError: the data needs TensorFlow (tfrecord data, or a download) and it is not
        installed.
    """
    builder = _builder(self.name, self.data_dir)
    if builder.is_prepared():
      _check_readable(builder)
    elif not self.download:
      raise ValueError(_not_prepared_message(builder))
    else:
      _require_tensorflow_to_download(self.name)

  def split_sizes(self) -> dict[str, int]:
    """Read from the metadata alone (preparing the set first when `download`)."""
    splits = _prepared_builder(self.name, self.data_dir, self.download).info.splits
    return {split: splits[split].num_examples for split in source.SPLITS if split in splits}

  def read_rows(self, split: str, start: int, stop: int) -> np.ndarray:
    """Records start..stop-1 of a split, float32 (stop - start, H, W, C) in [0, 1].

    Only those records are read: array_record (and parquet) data through random access
    (`tfds.data_source`, no TensorFlow); tfrecord data through the sliced split
    "split[start:stop]" of `tfds.load`'s reader (needs TensorFlow; it skips the files
    before the slice but reads through the records before `start` in its first file).
    """
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    builder = _prepared_builder(self.name, self.data_dir, self.download)
    if start == stop:
      return np.zeros((0,) + self.image_shape, np.float32)
    if _random_access_formats(builder):
      records = builder.as_data_source(split).__getitems__(range(start, stop))
      images = np.stack([record["image"] for record in records])
    else:
      dataset = builder.as_dataset(  # files in order, so a slice is rows start..stop-1
          split=f"{split}[{start}:{stop}]", batch_size=-1, shuffle_files=False,
          read_config=tfds.ReadConfig(interleave_cycle_length=1))
      images = tfds.as_numpy(dataset)["image"]
    scale = 1.0 if self.kind == "binary" else 1.0 / 255.0  # binary sets store uint8 0/1
    return images.astype(np.float32) * np.float32(scale)


def _builder(name: str, data_dir: str | None):
  """The catalog builder of `name` reading from `data_dir` (TFDS's default when None).
  Only locates the data: nothing is read or downloaded."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  return tfds.builder(name, data_dir=data_dir)


@functools.lru_cache(maxsize=4)
def _prepared_builder(name: str, data_dir: str | None, download: bool):
  """The builder of a TFDS set whose data is prepared (preparing it first when
  `download`), and readable with what is installed."""
  builder = _builder(name, data_dir)
  if not builder.is_prepared():
    if not download:
      raise ValueError(_not_prepared_message(builder))
    _download_and_prepare(builder)
  _check_readable(builder)
  return builder


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
