"""Latents padded to a larger size: models of different latent sizes in one program.

A model of D latents runs as one of D_max >= D latents whose networks hold zeros for
dimensions D..D_max-1 (the encoder's output columns, the decoder's input rows), with those
dimensions masked out by `mask_unused`: there q(z_d|x) = N(0, 1) = p(z_d), so their
closed-form KL is exactly 0 and their Monte Carlo terms cancel between log q(z|x) and
log p(z) (to float rounding); the decoder reads 0 for them, so its output is the unpadded
model's; and no gradient reaches the padded weights, which stay zero under Adam. Samples
are drawn per dimension index (`bounds.elbo` draws eps of shape (D,) from a key per
sample; with jax's partitionable threefry, its default, the first D of D_max normals
from one key are the D normals), so z_1..z_D are the unpadded model's draws.

The masked model's ELBO, IWAE bounds and their gradients (ELBO's family, DReG, STL) are
therefore the unpadded model's up to float rounding, for a diagonal Gaussian q(z|x) and
the N(0, I) prior over one stochastic layer. A sweep over the latent size then trains its
points vmapped, each with its own number of used dimensions (traced).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def used_dimensions(num_used: int | Array, size: int) -> Array:
  """(size,) bool: True for the first `num_used` dimensions (`num_used` may be traced)."""
  return jnp.arange(size) < num_used


def mask_unused(encode: Callable[[Array], tuple[Array, Array]], decode: Callable[[Array], object],
                used: Array) -> tuple[Callable, Callable]:
  """The (encode, decode) of a padded model, its unused latent dimensions masked out.

  Args:
    encode: x -> (mean, logvar) of a diagonal Gaussian q(z|x), each (D_max,).
    decode: z (D_max,) -> likelihood parameters.
    used: (D_max,) bool, `used_dimensions(D, D_max)`.

  Returns:
    encode giving mean 0 and logvar 0 (q = N(0, 1)) on the unused dimensions, and decode
    reading z with those dimensions set to 0; the kernels take them as any model's.
  """

  return (lambda x: masked_posterior(*encode(x), used),
          lambda z: decode(masked_latents(z, used)))


def masked_posterior(mean: Array, logvar: Array, used: Array) -> tuple[Array, Array]:
  """(mean, logvar) (..., D_max) of q(z|x) with N(0, 1) on the unused dimensions."""
  return jnp.where(used, mean, 0.0), jnp.where(used, logvar, 0.0)


def masked_latents(z: Array, used: Array) -> Array:
  """z (..., D_max) with its unused dimensions set to 0: what the decoder reads."""
  return jnp.where(used, z, 0.0)
