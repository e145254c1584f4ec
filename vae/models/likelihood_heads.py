"""Likelihood heads: how a decoder's raw output becomes the parameters of p(x|z).

Adding a likelihood is one entry in `LIKELIHOOD_HEADS`: how many decoder outputs per pixel,
how to split them into the parameters `vae.kernels.likelihoods` expects, and how to turn
them into a mean image.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class LikelihoodHead:
  """How a decoder's raw output of shape (..., H, W, C * num_params) becomes p(x|z).

  Attributes:
    num_params: decoder outputs per pixel and channel.
    split: raw output -> the parameters the named likelihood of `vae.kernels.likelihoods`
      takes.
    mean_image: those parameters -> E[x|z], an image in [0, 1] for pictures.
    raw_for_mean: an image (H, W, C) in [0, 1] -> the raw output (H, W, C * num_params)
      whose `mean_image` it is (clipped away from 0 and 1 where the parameter is a logit),
      the decoder's output bias of `config.model.decoder_bias_init = "data_mean"`.
  """

  num_params: int
  split: Callable[[Array], Any]
  mean_image: Callable[[Any], Array]
  raw_for_mean: Callable[[Array], Array]


def _logit(mean: Array) -> Array:
  mean = jnp.clip(mean, 1e-3, 1.0 - 1e-3)
  return jnp.log(mean) - jnp.log1p(-mean)


def _mean_and_unit_variance(mean: Array) -> Array:
  return jnp.concatenate([mean, jnp.zeros_like(mean)], axis=-1)


def _split_mean_logvar(raw: Array) -> tuple[Array, Array]:
  mean, logvar = jnp.split(raw, 2, axis=-1)
  return mean, logvar


LIKELIHOOD_HEADS: dict[str, LikelihoodHead] = {
    # Logits of independent Bernoulli pixels.
    "bernoulli": LikelihoodHead(1, lambda raw: raw, jax.nn.sigmoid, _logit),
    # Mean and log-variance of independent Gaussian pixels (learned per-pixel variance).
    "gaussian": LikelihoodHead(
        2, _split_mean_logvar, lambda params: jnp.clip(params[0], 0.0, 1.0),
        _mean_and_unit_variance
    ),
}
"""config.model.likelihood -> how the decoder's raw output becomes p(x|z)."""
