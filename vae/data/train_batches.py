"""Deterministic training batches, drawn from the training split's equal shards."""

from __future__ import annotations

import numpy as np

from vae.data import binarization


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
  p * num_shards / P onwards, `vae.runtime.distributed.process_shards`), holds their rows
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
        rng = np.random.default_rng((self.seed, binarization.BINARIZATION_STREAM, step, shard))
        part = binarization.bernoulli(part, rng)
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
      rng = np.random.default_rng((self.seed, binarization.PERMUTATION_STREAM, epoch, shard))
      permutations[shard] = rng.permutation(self.shard_size)
    return permutations[shard]
