"""Flax encoders and decoders, built from a config through one registry.

Why linen: a linen module is a pure function of an explicit params pytree,
`module.apply({"params": params}, x)`. That is exactly what the kernels of
`vae/losses.py` need (`encode(x)`, `decode(z)` closures over params), and it lets a sweep
`jax.vmap` over stacked params and orbax checkpoint them with no split/merge step. nnx
would give the same after `nnx.split`, at the cost of one more concept for readers.

Every module works on one example or on any leading batch axes: images are
(..., H, W, C), latents (..., D).

Adding an architecture is one entry in `ARCHITECTURES` (a function from the model config
and image shape to an encoder and a decoder module); adding a likelihood is one entry in
`LIKELIHOOD_HEADS` (how many decoder outputs per pixel, how to split them into the
parameters `vae.losses` expects, and how to turn them into a mean image).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vae import field_checks

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


# ------------------------------------------------------------------ likelihood heads


@dataclasses.dataclass(frozen=True)
class LikelihoodHead:
  """How a decoder's raw output of shape (..., H, W, C * num_params) becomes p(x|z).

  Attributes:
    num_params: decoder outputs per pixel and channel.
    split: raw output -> the parameters the named likelihood of `vae.losses` takes.
    mean_image: those parameters -> E[x|z], an image in [0, 1] for pictures.
  """

  num_params: int
  split: Callable[[Array], Any]
  mean_image: Callable[[Any], Array]


def _split_mean_logvar(raw: Array) -> tuple[Array, Array]:
  mean, logvar = jnp.split(raw, 2, axis=-1)
  return mean, logvar


LIKELIHOOD_HEADS: dict[str, LikelihoodHead] = {
    # Logits of independent Bernoulli pixels.
    "bernoulli": LikelihoodHead(1, lambda raw: raw, jax.nn.sigmoid),
    # Mean and log-variance of independent Gaussian pixels (learned per-pixel variance).
    "gaussian": LikelihoodHead(
        2, _split_mean_logvar, lambda params: jnp.clip(params[0], 0.0, 1.0)
    ),
}


# ------------------------------------------------------------------ MLP


class MLPEncoder(nn.Module):
  """(..., H, W, C) images -> ((..., D) mean, (..., D) logvar) of q(z|x)."""

  hidden_sizes: Sequence[int]
  latent_dim: int
  activation: str

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, Array]:
    h = x.reshape(x.shape[:-3] + (-1,))
    for size in self.hidden_sizes:
      h = ACTIVATIONS[self.activation](nn.Dense(size)(h))
    mean = nn.Dense(self.latent_dim, name="mean")(h)
    logvar = nn.Dense(self.latent_dim, name="logvar")(h)
    return mean, logvar


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


# ------------------------------------------------------------------ convolutional


class ConvEncoder(nn.Module):
  """Stride-2 3x3 convolutions, then a dense layer to (mean, logvar), each (..., D)."""

  features: Sequence[int]
  hidden_size: int
  latent_dim: int
  activation: str

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, Array]:
    act = ACTIVATIONS[self.activation]
    h = x
    for feature in self.features:
      h = act(nn.Conv(feature, (3, 3), strides=(2, 2), padding="SAME")(h))
    h = h.reshape(x.shape[:-3] + (-1,))
    h = act(nn.Dense(self.hidden_size)(h))
    mean = nn.Dense(self.latent_dim, name="mean")(h)
    logvar = nn.Dense(self.latent_dim, name="logvar")(h)
    return mean, logvar


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


# ------------------------------------------------------------------ registry


def _mlp(cfg: ml_collections.ConfigDict, image_shape: ImageShape, num_params: int):
  encoder = MLPEncoder(tuple(cfg.hidden_sizes), cfg.latent_dim, cfg.activation)
  decoder = MLPDecoder(tuple(reversed(cfg.hidden_sizes)), image_shape, num_params,
                       cfg.activation)
  return encoder, decoder


def _conv(cfg: ml_collections.ConfigDict, image_shape: ImageShape, num_params: int):
  features = tuple(cfg.conv_features)
  encoder = ConvEncoder(features, cfg.conv_hidden_size, cfg.latent_dim, cfg.activation)
  decoder = ConvDecoder(features, cfg.conv_hidden_size, image_shape, num_params,
                        cfg.activation)
  return encoder, decoder


ARCHITECTURES: dict[str, Callable[..., tuple[nn.Module, nn.Module]]] = {
    "mlp": _mlp,
    "conv": _conv,
}
"""name -> fn(model_config, image_shape, num_params) -> (encoder, decoder) modules."""


def check_model_config(cfg: ml_collections.ConfigDict, image_shape: ImageShape) -> None:
  """Raises ValueError naming the first invalid field of `config.model`, or where the
  architecture cannot produce images of this shape (H, W, C)."""
  config = ml_collections.ConfigDict({"model": cfg})
  field_checks.one_of(config, "model.architecture", ARCHITECTURES)
  field_checks.one_of(config, "model.likelihood", LIKELIHOOD_HEADS)
  field_checks.one_of(config, "model.activation", ACTIVATIONS)
  field_checks.int_at_least(config, "model.latent_dim")
  field_checks.sizes(config, "model.hidden_sizes")
  field_checks.sizes(config, "model.conv_features")
  field_checks.int_at_least(config, "model.conv_hidden_size")
  if cfg.architecture == "conv":
    if not cfg.conv_features:
      field_checks.fail("model.conv_features", cfg.conv_features, "non-empty for 'conv'")
    scale = 2 ** len(cfg.conv_features)
    if image_shape[0] % scale or image_shape[1] % scale:
      raise ValueError(
          f"config.model.conv_features has {len(cfg.conv_features)} stride-2 layers, so "
          f"image height and width must divide by {scale}, but the data's images are "
          f"{image_shape[0]}x{image_shape[1]}. Use fewer conv_features or the 'mlp' "
          "architecture."
      )


class VAE(nn.Module):
  """An encoder q(z|x) and a decoder p(x|z) under one params tree."""

  encoder: nn.Module
  decoder: nn.Module

  def __call__(self, x: Array) -> tuple[Array, Array, Array]:
    """Encodes x and decodes the posterior mean (used to initialise every parameter)."""
    mean, logvar = self.encoder(x)
    return mean, logvar, self.decoder(mean)

  def encode(self, x: Array) -> tuple[Array, Array]:
    return self.encoder(x)

  def decode(self, z: Array) -> Array:
    return self.decoder(z)


@dataclasses.dataclass(frozen=True)
class Model:
  """A VAE as pure functions of an explicit params pytree.

  `encode(params, x)` and `decode(params, z)` match the callables `vae.losses` takes once
  params are bound, e.g. `losses.elbo(key, x, functools.partial(model.encode, params),
  functools.partial(model.decode, params), likelihood=model.likelihood)`.
  """

  module: VAE
  likelihood: str
  image_shape: ImageShape
  latent_dim: int

  def init(self, key: Array) -> Any:
    """Returns a fresh params pytree (no batch axis needed)."""
    return self.module.init(key, jnp.zeros(self.image_shape))["params"]

  def encode(self, params: Any, x: Array) -> tuple[Array, Array]:
    """x (..., H, W, C) -> (mean, logvar), each (..., D)."""
    return self.module.apply({"params": params}, x, method=VAE.encode)

  def decode(self, params: Any, z: Array) -> Any:
    """z (..., D) -> likelihood parameters of shape (..., H, W, C) each."""
    raw = self.module.apply({"params": params}, z, method=VAE.decode)
    return LIKELIHOOD_HEADS[self.likelihood].split(raw)

  def mean_image(self, params: Any, z: Array) -> Array:
    """z (..., D) -> E[x|z], (..., H, W, C) in [0, 1]."""
    return LIKELIHOOD_HEADS[self.likelihood].mean_image(self.decode(params, z))


def build_model(cfg: ml_collections.ConfigDict, image_shape: ImageShape) -> Model:
  """Builds the model that `config.model` names for images of `image_shape` (H, W, C).

  Raises:
    ValueError: an invalid field (`check_model_config`).
  """
  check_model_config(cfg, image_shape)
  num_params = LIKELIHOOD_HEADS[cfg.likelihood].num_params
  encoder, decoder = ARCHITECTURES[cfg.architecture](cfg, tuple(image_shape), num_params)
  return Model(VAE(encoder, decoder), cfg.likelihood, tuple(image_shape), cfg.latent_dim)
