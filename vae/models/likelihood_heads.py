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
"""config.model.likelihood -> how the decoder's raw output becomes p(x|z)."""
