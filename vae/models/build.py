"""A model from config.model: the architectures' registry, the config's checks and
`build_model`.

Adding an architecture is one entry in `ARCHITECTURES` (a function from the model config
and image shape to an encoder and a decoder module).
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import ml_collections

from vae.common import field_checks
from vae.models import autoencoder, families, initializations, likelihood_heads, networks


def _mlp(cfg: ml_collections.ConfigDict, image_shape: networks.ImageShape, num_params: int):
  encoder = networks.MLPEncoder(tuple(cfg.hidden_sizes), cfg.latent_dim, cfg.activation,
                                families.posterior_family(cfg).extra_outputs(cfg))
  decoder = networks.MLPDecoder(tuple(reversed(cfg.hidden_sizes)), image_shape, num_params,
                                cfg.activation)
  return encoder, decoder


def _conv(cfg: ml_collections.ConfigDict, image_shape: networks.ImageShape, num_params: int):
  features = tuple(cfg.conv_features)
  encoder = networks.ConvEncoder(features, cfg.conv_hidden_size, cfg.latent_dim,
                                 cfg.activation, families.posterior_family(cfg).extra_outputs(cfg))
  decoder = networks.ConvDecoder(features, cfg.conv_hidden_size, image_shape, num_params,
                                 cfg.activation)
  return encoder, decoder


ARCHITECTURES: dict[str, Callable[..., tuple[nn.Module, nn.Module]]] = {
    "mlp": _mlp,
    "conv": _conv,
}
"""name -> fn(model_config, image_shape, num_params) -> (encoder, decoder) modules."""


def check_model_config(cfg: ml_collections.ConfigDict, image_shape: networks.ImageShape) -> None:
  """Raises ValueError naming the first invalid field of `config.model`, or where the
  architecture cannot produce images of this shape (H, W, C)."""
  config = ml_collections.ConfigDict({"model": cfg})
  field_checks.one_of(config, "model.architecture", ARCHITECTURES)
  field_checks.one_of(config, "model.likelihood", likelihood_heads.LIKELIHOOD_HEADS)
  field_checks.one_of(config, "model.activation", networks.ACTIVATIONS)
  field_checks.int_at_least(config, "model.latent_dim")
  field_checks.sizes(config, "model.hidden_sizes")
  field_checks.sizes(config, "model.conv_features")
  field_checks.int_at_least(config, "model.conv_hidden_size")
  field_checks.sizes(config, "model.upper_latent_dims")
  field_checks.sizes(config, "model.upper_hidden_sizes")
  field_checks.one_of(config, "model.posterior", families.POSTERIORS)
  field_checks.one_of(config, "model.prior", families.PRIORS)
  field_checks.one_of(config, "model.init", initializations.INITIALIZATIONS)
  field_checks.one_of(config, "model.decoder_bias_init", autoencoder.DECODER_BIAS_INITS)
  if cfg.posterior == "iaf":
    field_checks.int_at_least(config, "model.flow_steps")
    field_checks.int_at_least(config, "model.flow_hidden")
  if cfg.prior != "standard_normal":
    field_checks.int_at_least(config, "model.prior_components")
  if cfg.prior == "vamp":
    field_checks.one_of(config, "model.pseudo_inputs", families.PSEUDO_INPUTS)
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


def build_model(cfg: ml_collections.ConfigDict,
                image_shape: networks.ImageShape) -> autoencoder.Model:
  """Builds the model that `config.model` names for images of `image_shape` (H, W, C).

  Raises:
    ValueError: an invalid field (`check_model_config`).
  """
  check_model_config(cfg, image_shape)
  num_params = likelihood_heads.LIKELIHOOD_HEADS[cfg.likelihood].num_params
  encoder, decoder = ARCHITECTURES[cfg.architecture](cfg, tuple(image_shape), num_params)
  flow = (families.FlowParams(cfg.flow_steps, cfg.latent_dim, cfg.flow_hidden)
          if families.posterior_family(cfg).has_flow else None)
  sizes = families.latent_sizes(cfg)
  hidden = tuple(cfg.upper_hidden_sizes)
  upper_encoders = tuple(networks.GaussianMLP(hidden, above, cfg.activation)
                         for above in sizes[1:])
  conditionals = tuple(networks.GaussianMLP(hidden, below, cfg.activation)
                       for below in sizes[:-1])
  module = autoencoder.VAE(encoder, decoder, flow,
                           families.prior_params_module(cfg, image_shape), upper_encoders,
                           conditionals)
  return autoencoder.Model(module, cfg.likelihood, tuple(image_shape), sizes, cfg.posterior,
                           cfg.prior, cfg.init, cfg.decoder_bias_init)
