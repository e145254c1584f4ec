"""Binarisation of images in [0, 1] as Bernoulli(pixel intensity), and the seeded random
streams of `vae.data`.

`config.data.binarize`: "static" samples every split once with a fixed seed; "dynamic"
samples every training batch afresh (`train_batches.TrainBatches`) and the evaluation
splits once with a fixed seed, so every evaluation sees the same data. The fixed seeds do
not depend on the run's seed, and the sample of an example depends only on its split and
index in it, not on which rows are read together.
"""

from __future__ import annotations

import numpy as np

BINARIZE_MODES = ("none", "dynamic", "static")

# Fixed seeds of the once-only binarisation of each split.
FIXED_BINARIZATION_SEEDS = {"train": 0, "validation": 1, "test": 2}
# Stream tags, second in every seed tuple, that keep the draws independent (numpy's
# SeedSequence ignores trailing zeros, so a tag in the same place, not a tuple's length,
# must tell the streams apart).
PERMUTATION_STREAM = 0
BINARIZATION_STREAM = 1
FIXED_BINARIZATION_STREAM = 2
HOLDOUT_STREAM = 3  # the shuffle of config.data.validation_shuffle_seed (`vae.data.loading`)
# Rows per block of the fixed binarisation.
_BINARIZATION_BLOCK = 256


def fixed_bernoulli(images: np.ndarray, first_row: int, seed: int) -> np.ndarray:
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
    uniform = np.random.default_rng((seed, FIXED_BINARIZATION_STREAM, block)).random(
        (hi - block_start,) + images.shape[1:], dtype=np.float32)[lo - block_start:]
    samples[lo - first_row:hi - first_row] = uniform < images[lo - first_row:hi - first_row]
  return samples


def bernoulli(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """One Bernoulli(pixel intensity) sample of `images` (values in [0, 1]): float32 0/1."""
  return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)
