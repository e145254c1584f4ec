"""Runs that differ in model.latent_dim, trained together: each run's state zero-padded to
the group's largest latent size, its unused dimensions masked out of the loss
(`vae.kernels.padding`), and cropped back to its own shapes for its checkpoints, its
evaluations and its images, so its workdir is that of the run trained alone.

Each run is initialised by its own model (its own draws), then padded. The padding
receives no gradient, so Adam leaves it (and its moments) at zero. A padded run's numbers
are the unpadded run's up to float rounding (sums over more, zero, terms).
"""

from __future__ import annotations

import copy
from typing import Any

import jax
import ml_collections
import numpy as np

FIELD = "model.latent_dim"


def why_not_paddable(config: ml_collections.ConfigDict) -> str | None:
  """Why runs of `config` that differ in latent_dim cannot train together, or None."""
  model = config.model
  if model.posterior != "diagonal" or model.prior != "standard_normal":
    return ("only a diagonal posterior with the standard normal prior pads its latents "
            f"(this config: posterior={model.posterior!r}, prior={model.prior!r})")
  if tuple(model.upper_latent_dims):
    return "only one stochastic layer pads its latents (model.upper_latent_dims is set)"
  if not jax.config.jax_threefry_partitionable:
    return ("padded latents draw the unpadded samples only with jax_threefry_partitionable "
            "on (JAX's default)")
  return None


def padded_config(configs: list[ml_collections.ConfigDict]) -> ml_collections.ConfigDict:
  """The first config with the largest model.latent_dim of `configs`: the program's."""
  config = copy.deepcopy(configs[0])
  config.model.latent_dim = max(c.model.latent_dim for c in configs)
  return config


def pad_to(tree: Any, like: Any) -> Any:
  """`tree` on the host (numpy) with each leaf zero-padded at the end of every axis to the
  shape of its leaf in `like` (arrays or `jax.ShapeDtypeStruct`s of the same structure)."""
  def pad(leaf, target):
    leaf = np.asarray(leaf)
    if leaf.shape == tuple(target.shape):
      return leaf
    return np.pad(leaf, [(0, t - n) for n, t in zip(leaf.shape, target.shape)])
  return jax.tree.map(pad, tree, like)


def crop_to(tree: Any, like: Any) -> Any:
  """The inverse of `pad_to`: each leaf's leading block of its `like` leaf's shape."""
  return jax.tree.map(lambda leaf, target: leaf[tuple(slice(0, n) for n in target.shape)],
                      tree, like)
