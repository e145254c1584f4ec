"""Image grids as uint8 arrays, and PNG files of them."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image


def image_grid(images: np.ndarray, num_columns: int | None = None, pad: int = 1) -> np.ndarray:
  """Tiles images into one picture.

  Args:
    images: (N, H, W, C) floats in [0, 1] (values outside are clipped), C in {1, 3}.
    num_columns: images per row; default the smallest square that holds N.
    pad: pixels of white between tiles.

  Returns:
    (rows * (H + pad) + pad, cols * (W + pad) + pad, C) uint8 array.
  """
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  n, h, w, c = images.shape
  cols = num_columns or math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
  for i, image in enumerate(images):
    top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
    grid[top:top + h, left:left + w] = image
  return np.round(grid * 255).astype(np.uint8)


def interleave(first: np.ndarray, second: np.ndarray) -> np.ndarray:
  """(N, ...) and (N, ...) -> (2N, ...) as first[0], second[0], first[1], ..."""
  return np.stack([first, second], axis=1).reshape((-1,) + first.shape[1:])


def save_png(path: str, grid: np.ndarray, min_size: int = 256) -> None:
  """Writes a uint8 (H, W, C) grid, scaled up by whole pixels to at least min_size wide."""
  scale = max(1, math.ceil(min_size / grid.shape[1]))
  picture = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(path)
