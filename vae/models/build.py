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


def _mlp(cfg: ml_collections.ConfigDict, image_shape: networks.ImageShape, num_params: int,
         encoded_dim: int, decoded_sizes: tuple[int, ...]):
  encoder = networks.MLPEncoder(tuple(cfg.hidden_sizes), encoded_dim, cfg.activation,
                                families.posterior_family(cfg).extra_outputs(cfg),
                                tuple(cfg.logvar_bounds))
  decoder = networks.MLPDecoder(tuple(reversed(cfg.hidden_sizes)), image_shape, num_params,
                                cfg.activation, decoded_sizes)
  return encoder, decoder


def _conv(cfg: ml_collections.ConfigDict, image_shape: networks.ImageShape, num_params: int,
          encoded_dim: int, decoded_sizes: tuple[int, ...]):
  del encoded_dim, decoded_sizes  # one layer, or bottom-up (checked)
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
"""name -> fn(model_config, image_shape, num_params, encoded_dim, decoded_sizes) ->
(encoder, decoder) modules: the encoder's q over encoded_dim latents (z_1, or top-down
z_L), the decoder reading the layers of decoded_sizes (one entry: one input)."""

HIERARCHIES = ("bottom_up", "top_down")
"""config.model.hierarchy: the order of several stochastic layers' posterior
(`vae.kernels.posteriors.Hierarchical`): "bottom_up" q(z_1|x) q(z_2|z_1) ..., the decoder
reading z_1 (Burda et al. 2016); "top_down" q(z_L|x) q(z_{L-1}|x, z_L) ..., the decoder
reading every layer (Tomczak & Welling 2018's HVAE)."""


def check_model_config(cfg: ml_collections.ConfigDict, image_shape: networks.ImageShape) -> None:
  """Raises ValueError naming the first invalid field of `config.model`, or where the
  architecture cannot produce images of this shape (H, W, C)."""
  config = ml_collections.ConfigDict({"model": cfg})
  field_checks.one_of(config, "model.architecture", ARCHITECTURES)
  field_checks.one_of(config, "model.likelihood", likelihood_heads.LIKELIHOOD_HEADS)
  field_checks.one_of(config, "model.activation", (*networks.ACTIVATIONS, networks.GATED))
  field_checks.one_of(config, "model.hierarchy", HIERARCHIES)
  _check_logvar_bounds(cfg.logvar_bounds)
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
  if cfg.hierarchy == "top_down" and cfg.upper_latent_dims and cfg.posterior != "diagonal":
    field_checks.fail("model.posterior", cfg.posterior, "'diagonal' with hierarchy="
                      "'top_down'", "Richer families of q(z_L|x) are for one layer or "
                      "hierarchy='bottom_up'.")
  if cfg.architecture == "conv":
    if cfg.activation == networks.GATED:
      field_checks.fail("model.activation", cfg.activation, "a nonlinearity for 'conv'",
                        "Gated layers are the MLPs'; use architecture='mlp'.")
    if cfg.hierarchy == "top_down" and cfg.upper_latent_dims:
      field_checks.fail("model.hierarchy", cfg.hierarchy, "'bottom_up' for 'conv'",
                        "The top-down decoder is an MLP; use architecture='mlp'.")
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


def _check_logvar_bounds(bounds) -> None:
  ok = (isinstance(bounds, (tuple, list)) and (len(bounds) == 0 or (
      len(bounds) == 2 and all(isinstance(b, (int, float)) and not isinstance(b, bool)
                               for b in bounds) and bounds[0] < bounds[1])))
  if not ok:
    field_checks.fail("model.logvar_bounds", bounds, "() or (low, high) with low < high",
                      "E.g. (-6.0, 2.0), Tomczak & Welling's hardtanh.")


def build_model(cfg: ml_collections.ConfigDict,
                image_shape: networks.ImageShape) -> autoencoder.Model:
  """Builds the model that `config.model` names for images of `image_shape` (H, W, C).

  Raises:
    ValueError: an invalid field (`check_model_config`).
  """
  check_model_config(cfg, image_shape)
  num_params = likelihood_heads.LIKELIHOOD_HEADS[cfg.likelihood].num_params
  sizes = families.latent_sizes(cfg)
  top_down = cfg.hierarchy == "top_down" and len(sizes) > 1
  encoder, decoder = ARCHITECTURES[cfg.architecture](
      cfg, tuple(image_shape), num_params, sizes[-1] if top_down else sizes[0],
      sizes if top_down else (sizes[0],))
  flow = (families.FlowParams(cfg.flow_steps, cfg.latent_dim, cfg.flow_hidden)
          if families.posterior_family(cfg).has_flow else None)
  gaussian = lambda out_dim: networks.GaussianMLP(tuple(cfg.upper_hidden_sizes), out_dim,
                                                  cfg.activation, tuple(cfg.logvar_bounds))
  # The layers drawn after the first: above z_1 bottom-up, below z_L top-down.
  upper_encoders = tuple(gaussian(size) for size in (sizes[-2::-1] if top_down else sizes[1:]))
  conditionals = tuple(gaussian(below) for below in sizes[:-1])
  module = autoencoder.VAE(encoder, decoder, flow,
                           families.prior_params_module(cfg, image_shape), upper_encoders,
                           conditionals, top_down)
  return autoencoder.Model(module, cfg.likelihood, tuple(image_shape), sizes, cfg.posterior,
                           cfg.prior, cfg.init, cfg.decoder_bias_init, top_down)
