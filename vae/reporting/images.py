"""Image grids as uint8 arrays, PNG files of them, and the pictures a run shows."""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import numpy as np
from PIL import Image

from vae.reporting import metric_writers


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


def kl_bar_chart(kl_per_dim: np.ndarray, layer_sizes: tuple[int, ...]) -> np.ndarray:
  """The KL of each latent dimension (D,) nats as bars, each layer's sorted from the
  largest, layers side by side; (H, W, 3) uint8."""
  # Imported here: only runs that draw it need matplotlib. Figure objects, not pyplot: no
  # global backend is chosen or changed (a notebook keeps its own).
  from matplotlib import figure, ticker  # pylint: disable=import-outside-toplevel
  from matplotlib.backends import backend_agg  # pylint: disable=import-outside-toplevel
  fig = figure.Figure(figsize=(max(4.0, 0.08 * len(kl_per_dim) + 1.5), 2.6), dpi=100)
  backend_agg.FigureCanvasAgg(fig)
  axes = fig.add_subplot()
  start = 0
  for layer, size in enumerate(layer_sizes):
    values = np.sort(np.asarray(kl_per_dim[start:start + size]))[::-1]
    axes.bar(start + np.arange(size), values, width=0.9,
             label=f"z{layer + 1}" if len(layer_sizes) > 1 else None)
    start += size
  axes.set_xlabel("latent dimension (sorted by KL)")
  axes.set_ylabel("KL (nats)")
  for axis, integer in ((axes.xaxis, True), (axes.yaxis, False)):
    # a few ticks: each tick label costs ~1 ms to draw (16 dims: 0.041 s -> 0.031 s)
    axis.set_major_locator(ticker.MaxNLocator(4, integer=integer))
  if len(layer_sizes) > 1:
    axes.legend(fontsize="small")
  fig.tight_layout()
  fig.canvas.draw()
  return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


class ImageWriter:
  """A run's pictures: reconstructions beside inputs, samples of p(z) decoded, and latent
  traversals, as PNG files in `workdir/images` and TensorBoard images.

  `model` is a `vae.models.Model` (encode_mean, mean_image, sample_prior).
  """

  def __init__(self, model: Any, workdir: str, writer: metric_writers.MetricWriter,
               key: jax.Array, num_images: int):
    self._dir = os.path.join(workdir, "images")
    self._writer = writer
    self._key = key
    self._num_images = num_images
    self._encode_mean = jax.jit(model.encode_mean)
    self._mean_image = jax.jit(model.mean_image)
    self._sample_prior = jax.jit(model.sample_prior, static_argnums=2)
    self._decoded_dims = model.latent_sizes[0]  # the decoder reads z_1
    self._layer_sizes = model.latent_sizes

  def _save(self, step: int, name: str, grid: np.ndarray, min_size: int = 256) -> None:
    if not self._writer.enabled:
      return
    save_png(os.path.join(self._dir, f"{name}_step{step}.png"), grid, min_size)
    self._writer.write_image(step, name, grid)

  def write(self, step: int, params: Any, inputs: np.ndarray,
            metrics: dict[str, Any] | None = None) -> None:
    """inputs: (N, H, W, C) evaluation images; the first num_images are shown. With
    `metrics` holding `kl_per_dim`, its bar chart too (`kl_bar_chart`)."""
    if metrics and "kl_per_dim" in metrics and self._writer.enabled:
      self._save(step, "kl_per_dim", kl_bar_chart(metrics["kl_per_dim"], self._layer_sizes),
                 min_size=0)
    inputs = inputs[:self._num_images]
    reconstructions = self._mean_image(params, self._encode_mean(params, inputs))
    columns = 2 * math.ceil(math.sqrt(len(inputs)))
    self._save(step, "reconstructions",
               image_grid(interleave(inputs, np.asarray(reconstructions)), columns))
    z = self._sample_prior(params, self._key, self._num_images)
    self._save(step, "samples", image_grid(np.asarray(self._mean_image(params, z))))

  def write_traversal(self, step: int, params: Any, inputs: np.ndarray,
                      num_dims: int = 10, num_values: int = 9) -> None:
    """Rows: the dims of z_1 whose posterior means vary most; columns: z_d in [-3, 3]."""
    means = np.asarray(self._encode_mean(params, inputs))
    dims = np.argsort(-np.var(means[:, :self._decoded_dims], axis=0))[:num_dims]
    values = np.linspace(-3.0, 3.0, num_values)
    z = np.zeros((len(dims), num_values, means.shape[1]), np.float32)
    z[np.arange(len(dims)), :, dims] = values
    pictures = np.asarray(self._mean_image(params, z.reshape(-1, means.shape[1])))
    self._save(step, "traversal", image_grid(pictures, num_values))
