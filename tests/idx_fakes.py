"""Small idx files (MNIST's format) the tests write: a stand-in for the Debian package's
Fashion-MNIST folder, which no test needs."""

import gzip
import os

import numpy as np


def write_idx(path, images, compress):
  """uint8 images (N, H, W) as an idx file (gzipped when `compress`)."""
  header = bytes([0, 0, 0x08, 3]) + np.asarray(images.shape, ">u4").tobytes()
  with (gzip.open if compress else open)(path, "wb") as f:
    f.write(header + images.astype(np.uint8).tobytes())


def make_set(folder, prefix="", num_train=30, num_test=7, compress=True, seed=0,
             image_size=(6, 5)):
  """Writes `{prefix}train-images-idx3-ubyte[.gz]` and `{prefix}t10k-...` of random
  images into `folder`; returns {"train": ..., "t10k": ...} as written."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  splits = {"train": rng.integers(0, 256, (num_train,) + tuple(image_size)),
            "t10k": rng.integers(0, 256, (num_test,) + tuple(image_size))}
  for name, images in splits.items():
    write_idx(os.path.join(folder, f"{prefix}{name}-images-idx3-ubyte"
                           + (".gz" if compress else "")), images, compress)
  return splits
