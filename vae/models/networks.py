"""The networks: MLP and convolutional encoders and decoders, and the Gaussian MLP of
each stochastic layer above the first.

Every module works on one example or on any leading batch axes: images are
(..., H, W, C), latents (..., D).
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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
"""config.model.activation -> the nonlinearity after every hidden layer; or "gated"
(`GATED`), which is a layer of its own."""

GATED = "gated"
"""config.model.activation="gated": every hidden layer of the MLPs is a gated dense layer
h = (W x + b) * sigmoid(V x + c) (Dauphin et al. 2017; Tomczak & Welling 2018's MLPs), one
dense layer of twice the width split in two."""


def hidden_layer(h: Array, size: int, activation: str) -> Array:
  """One hidden layer of `size` units, (..., size): a dense layer and the activation, or
  with "gated" a gated dense layer (`GATED`). Call inside a compact module."""
  if activation == GATED:
    value, gate = jnp.split(nn.Dense(2 * size)(h), 2, axis=-1)
    return value * jax.nn.sigmoid(gate)
  return ACTIVATIONS[activation](nn.Dense(size)(h))


def mlp_trunk(inputs: Sequence[Array], hidden_sizes: Sequence[int], activation: str) -> Array:
  """The hidden layers of an MLP. One input: `hidden_sizes` in a row. Several (e.g. x
  and z_2 of q(z_1|x, z_2)): each through a hidden layer of its own of hidden_sizes[0]
  units, then those concatenated through the rest (Tomczak & Welling's HVAE)."""
  if len(inputs) == 1:
    h = inputs[0]
    for size in hidden_sizes:
      h = hidden_layer(h, size, activation)
    return h
  h = jnp.concatenate([hidden_layer(x, hidden_sizes[0], activation) for x in inputs], -1)
  for size in hidden_sizes[1:]:
    h = hidden_layer(h, size, activation)
  return h


def _heads(h: Array, latent_dim: int, extra_outputs: int,
           logvar_bounds: Sequence[float] = ()) -> tuple[Array, ...]:
  """(mean, logvar) of q(z|x), each (..., D), and the posterior family's extra outputs
  (..., E) when it has any (`vae.models.POSTERIORS`), initialised at 0 so that every
  family starts as the diagonal Gaussian of (mean, logvar). With `logvar_bounds` (low,
  high) the log-variance is clipped to them (a hardtanh, as Tomczak & Welling's (-6, 2)):
  no gradient beyond them."""
  mean, logvar = nn.Dense(latent_dim, name="mean")(h), nn.Dense(latent_dim, name="logvar")(h)
  if logvar_bounds:
    logvar = jnp.clip(logvar, *logvar_bounds)
  outputs = (mean, logvar)
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
  logvar_bounds: Sequence[float] = ()

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, ...]:
    h = mlp_trunk([x.reshape(x.shape[:-3] + (-1,))], self.hidden_sizes, self.activation)
    return _heads(h, self.latent_dim, self.extra_outputs, self.logvar_bounds)


class MLPDecoder(nn.Module):
  """(..., D) latents -> (..., H, W, C * num_params) raw likelihood parameters.

  With `input_sizes` (D_1, ..., D_L) of several layers, z = concat(z_1, ..., z_L) and each
  layer enters through a hidden layer of its own (`mlp_trunk`): p(x|z_1, ..., z_L)."""

  hidden_sizes: Sequence[int]
  image_shape: ImageShape
  num_params: int
  activation: str
  input_sizes: Sequence[int] = ()

  @nn.compact
  def __call__(self, z: Array) -> Array:
    inputs = (jnp.split(z, np.cumsum(self.input_sizes)[:-1], axis=-1)
              if len(self.input_sizes) > 1 else [z])
    h = mlp_trunk(inputs, self.hidden_sizes, self.activation)
    height, width, channels = self.image_shape
    out = nn.Dense(height * width * channels * self.num_params)(h)
    return out.reshape(z.shape[:-1] + (height, width, channels * self.num_params))

  def output_bias(self, raw: Array) -> tuple[str, Array]:
    """(the output layer's name, its bias) for a raw output image (H, W, C * num_params)
    at zero hidden activity: one bias per output pixel."""
    branches = max(len(self.input_sizes), 1)
    return f"Dense_{len(self.hidden_sizes) + branches - 1}", raw.reshape(-1)


class GaussianMLP(nn.Module):
  """(..., D_in) inputs -> ((..., D_out) mean, (..., D_out) logvar): one stochastic
  layer given another, q(z_{l+1}|z_l) or p(z_l|z_{l+1}); called with several inputs
  (e.g. the flattened x and z_{l+1} of a top-down q(z_l|x, z_{l+1})), each enters
  through a hidden layer of its own (`mlp_trunk`)."""

  hidden_sizes: Sequence[int]
  out_dim: int
  activation: str
  logvar_bounds: Sequence[float] = ()

  @nn.compact
  def __call__(self, *inputs: Array) -> tuple[Array, Array]:
    h = mlp_trunk(inputs, self.hidden_sizes, self.activation)
    return _heads(h, self.out_dim, 0, self.logvar_bounds)


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
