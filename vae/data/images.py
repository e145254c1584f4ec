"""Images given as arrays, from a file or from Python, checked and made float32 (N, H, W, C)
in [0, 1]: the one place that says which arrays are images and what a wrong one is told.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_images(array: Any, where: str,
              image_shape: tuple[int, int, int] | None = None) -> np.ndarray:
  """`array` as float32 images (N, H, W, C) in [0, 1].

  Accepted: floats in [0, 1], uint8 0..255 (divided by 255) and bool; shaped (N, H, W, C)
  or (N, H, W) (one channel); given `image_shape` (H, W, C), also one image of that shape
  (N = 1), and the shape must be it.

  Args:
    array: the images (a NumPy array or anything `np.asarray` takes).
    where: what to call them in an error, e.g. "images" or "data.npz's array 'train'".
    image_shape: the (H, W, C) they must have, or None for any H, W and C in {1, 3}.

  Raises:
    ValueError: one line naming the shape, dtype or range expected.
  """
  array = np.asarray(array)
  if image_shape is not None and array.shape == tuple(image_shape):
    array = array[None]
  if array.ndim == 3 and (image_shape is None or image_shape[-1] == 1):
    array = array[..., None]
  expected = ("(N, H, W) or (N, H, W, C) with C = 1 or 3" if image_shape is None else
              f"(N, {', '.join(map(str, image_shape))}) or one image {tuple(image_shape)}")
  if (array.ndim != 4 or array.shape[-1] not in (1, 3)
      or (image_shape is not None and array.shape[1:] != tuple(image_shape))):
    raise ValueError(f"{where} has shape {array.shape}; expected images shaped {expected}.")
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
