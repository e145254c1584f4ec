"""A folder of MNIST-format idx files as a source (`config.data.name="idx"`): MNIST,
Fashion-MNIST, KMNIST, EMNIST, each as its authors distribute it.

`config.data.path` is the folder holding `train-images-idx3-ubyte` and
`t10k-images-idx3-ubyte` (gzipped or not, ".gz"), or a folder and a file-name prefix
where one folder holds several sets (EMNIST: ".../emnist-balanced" reads
`emnist-balanced-train-images-idx3-ubyte.gz`). Images are uint8 (N, H, W), delivered as
float32 (N, H, W, 1) in [0, 1]. The full Fashion-MNIST installs offline with
`apt-get install dataset-fashion-mnist`, into `FASHION_MNIST_FOLDER`.

The idx format (LeCun et al.): two zero bytes, a type code (0x08: unsigned bytes), the
number of dimensions, each dimension as a big-endian uint32, then the values.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os

import numpy as np

FASHION_MNIST_FOLDER = "/usr/share/datasets/fashion-mnist"
FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
_UNSIGNED_BYTES = 0x08


@dataclasses.dataclass(frozen=True)
class IdxFolder:
  """The train and test images of one idx set (a `source.DataSource`).

  Attributes:
    files: {"train": path, "test": path} of the two image files; empty in
      `registry.SOURCES`, where it stands for whichever folder a config names.
    mtimes_ns: their modification times, so an edited file is read again.
  """

  files: tuple[tuple[str, str], ...] = ()
  mtimes_ns: tuple[int, ...] = ()

  def for_config(self, data_config) -> IdxFolder:
    """The files `config.data.path` names; raises ValueError when it is unset or a file
    is missing (saying which folder was read and how to install Fashion-MNIST)."""
    path = data_config.path
    if not path:
      raise ValueError("config.data.path is not set; set it to a folder of idx files, e.g. "
                       f"{FASHION_MNIST_FOLDER!r} (apt-get install dataset-fashion-mnist).")
    path = os.path.expanduser(os.fspath(path))
    files = tuple((split, _find(path, name)) for split, name in FILES.items())
    return IdxFolder(files, tuple(os.stat(f).st_mtime_ns for _, f in files))

  def image_shape_and_kind(self) -> tuple[tuple[int, int, int], str]:
    """Reads the train file's header only."""
    shape = _header(dict(self.files)["train"])
    return (shape[1], shape[2], 1), "grayscale"

  def check_readable(self) -> None:
    """Reads both headers; raises ValueError naming a file that is not idx images."""
    for _, path in self.files:
      _header(path)

  def split_sizes(self) -> dict[str, int]:
    return {split: _header(path)[0] for split, path in self.files}

  def read_rows(self, split: str, start: int, stop: int) -> np.ndarray:
    return _read_images(dict(self.files)[split], self.mtimes_ns)[start:stop]


def _find(path: str, name: str) -> str:
  """The file of `name` (gzipped or not) in folder `path`, or at prefix `path`."""
  candidates = ([os.path.join(path, name)] if os.path.isdir(path) else [f"{path}-{name}"])
  for candidate in candidates:
    for suffix in ("", ".gz"):
      if os.path.isfile(candidate + suffix):
        return candidate + suffix
  where = (f"no {name}[.gz] in the folder {path!r}" if os.path.isdir(path) else
           f"no folder {path!r} (nor files {os.path.basename(path)}-{name}[.gz] beside it)")
  raise ValueError(
      f"config.data.path={path!r}: {where}. "
      f"For Fashion-MNIST run `apt-get install dataset-fashion-mnist` (files in "
      f"{FASHION_MNIST_FOLDER}), or read it through tensorflow-datasets with "
      "config.data.name='fashion_mnist'.")


def _open(path: str):
  return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _parse_header(head: bytes, path: str) -> tuple[int, ...]:
  """(N, H, W) from the first 16 bytes of an idx file of images."""
  if len(head) < 4 or head[:2] != b"\0\0" or head[2] != _UNSIGNED_BYTES or head[3] != 3:
    raise ValueError(f"{path} is not an idx file of images (unsigned bytes, 3 dimensions): "
                     f"it starts with {head[:4].hex()!r}, not '00000803'.")
  if len(head) < 16:
    raise ValueError(f"{path} is truncated: its header ends after {len(head)} bytes.")
  return tuple(int(d) for d in np.frombuffer(head[4:16], ">u4"))


def _header(path: str) -> tuple[int, ...]:
  try:
    with _open(path) as f:
      return _parse_header(f.read(16), path)
  except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
    raise ValueError(f"{path} cannot be read ({error}); reinstall the data set.") from error


@functools.lru_cache(maxsize=4)
def _read_images(path: str, mtimes_ns: tuple[int, ...]) -> np.ndarray:
  """The whole file as read-only float32 (N, H, W, 1) in [0, 1] (`mtimes_ns` only keys
  the cache)."""
  del mtimes_ns
  try:
    with _open(path) as f:
      raw = f.read()
  except (OSError, EOFError) as error:
    raise ValueError(f"{path} cannot be read ({error}); reinstall the data set.") from error
  shape = _parse_header(raw[:16], path)
  expected = int(np.prod(shape))
  if len(raw) - 16 != expected:
    raise ValueError(f"{path} is truncated or damaged: its header says {shape} images, "
                     f"{expected} bytes, but it holds {len(raw) - 16}; reinstall the data set.")
  images = np.frombuffer(raw, np.uint8, offset=16).reshape(shape + (1,))
  images = images.astype(np.float32) / 255.0
  images.flags.writeable = False
  return images
