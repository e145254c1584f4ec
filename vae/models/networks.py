"""The networks: MLP and convolutional encoders and decoders, and the Gaussian MLP of
each stochastic layer above the first.

Every module works on one example or on any leading batch axes: images are
(..., H, W, C), latents (..., D).
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax

Array = jax.Array
ImageShape = tuple[int, int, int]

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "softplus": nn.softplus,
    "swish": nn.swish,
}
"""config.model.activation -> the nonlinearity after every hidden layer."""


def _heads(h: Array, latent_dim: int, extra_outputs: int) -> tuple[Array, ...]:
  """(mean, logvar) of q(z|x), each (..., D), and the posterior family's extra outputs
  (..., E) when it has any (`vae.models.POSTERIORS`), initialised at 0 so that every
  family starts as the diagonal Gaussian of (mean, logvar)."""
  outputs = (nn.Dense(latent_dim, name="mean")(h), nn.Dense(latent_dim, name="logvar")(h))
  if extra_outputs:
    outputs += (nn.Dense(extra_outputs, kernel_init=nn.initializers.zeros, name="extra")(h),)
  return outputs


# ------------------------------------------------------------------ MLP


class MLPEncoder(nn.Module):
  """(..., H, W, C) images -> ((..., D) mean, (..., D) logvar[, (..., E) extra])."""

  hidden_sizes: Sequence[int]
  latent_dim: int
  activation: str
  extra_outputs: int = 0

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, ...]:
    h = x.reshape(x.shape[:-3] + (-1,))
    for size in self.hidden_sizes:
      h = ACTIVATIONS[self.activation](nn.Dense(size)(h))
    return _heads(h, self.latent_dim, self.extra_outputs)


class MLPDecoder(nn.Module):
  """(..., D) latents -> (..., H, W, C * num_params) raw likelihood parameters."""

  hidden_sizes: Sequence[int]
  image_shape: ImageShape
  num_params: int
  activation: str

  @nn.compact
  def __call__(self, z: Array) -> Array:
    h = z
    for size in self.hidden_sizes:
      h = ACTIVATIONS[self.activation](nn.Dense(size)(h))
    height, width, channels = self.image_shape
    out = nn.Dense(height * width * channels * self.num_params)(h)
    return out.reshape(z.shape[:-1] + (height, width, channels * self.num_params))

  def output_bias(self, raw: Array) -> tuple[str, Array]:
    """(the output layer's name, its bias) for a raw output image (H, W, C * num_params)
    at zero hidden activity: one bias per output pixel."""
    return f"Dense_{len(self.hidden_sizes)}", raw.reshape(-1)


class GaussianMLP(nn.Module):
  """(..., D_in) latents -> ((..., D_out) mean, (..., D_out) logvar): one stochastic
  layer above or below another, q(z_{l+1}|z_l) or p(z_l|z_{l+1})."""

  hidden_sizes: Sequence[int]
  out_dim: int
  activation: str

  @nn.compact
  def __call__(self, z: Array) -> tuple[Array, Array]:
    h = z
    for size in self.hidden_sizes:
      h = ACTIVATIONS[self.activation](nn.Dense(size)(h))
    return _heads(h, self.out_dim, 0)


# ------------------------------------------------------------------ convolutional


class ConvEncoder(nn.Module):
  """Stride-2 3x3 convolutions, then a dense layer to (mean, logvar), each (..., D)
  (and the posterior family's extra outputs)."""

  features: Sequence[int]
  hidden_size: int
  latent_dim: int
  activation: str
  extra_outputs: int = 0

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, ...]:
    act = ACTIVATIONS[self.activation]
    h = x
    for feature in self.features:
      h = act(nn.Conv(feature, (3, 3), strides=(2, 2), padding="SAME")(h))
    h = h.reshape(x.shape[:-3] + (-1,))
    h = act(nn.Dense(self.hidden_size)(h))
    return _heads(h, self.latent_dim, self.extra_outputs)


class ConvDecoder(nn.Module):
  """Mirror of ConvEncoder: dense to a small feature map, stride-2 transposed convs up."""

  features: Sequence[int]
  hidden_size: int
  image_shape: ImageShape
  num_params: int
  activation: str

  @nn.compact
  def __call__(self, z: Array) -> Array:
    act = ACTIVATIONS[self.activation]
    height, width, channels = self.image_shape
    scale = 2 ** len(self.features)
    small = (height // scale, width // scale, self.features[-1])
    h = act(nn.Dense(self.hidden_size)(z))
    h = act(nn.Dense(small[0] * small[1] * small[2])(h))
    h = h.reshape(z.shape[:-1] + small)
    for feature in reversed(self.features):
      h = act(nn.ConvTranspose(feature, (3, 3), strides=(2, 2), padding="SAME")(h))
    return nn.Conv(channels * self.num_params, (3, 3), padding="SAME")(h)

  def output_bias(self, raw: Array) -> tuple[str, Array]:
    """(the output convolution's name, its bias) for a raw output image
    (H, W, C * num_params): a convolution has one bias per channel, the image's mean."""
    return "Conv_0", raw.mean(axis=(0, 1))
