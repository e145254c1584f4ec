"""Priors p(z) as pure log-densities (no Flax): `log_prob(z (D,)) -> scalar`, in nats.

Each is a NamedTuple of arrays (a pytree, so its parameters can be learned through
`jax.grad`) with `log_prob(z)` and, for the learned ones, `sample(key) -> z (D,)`;
`vae.losses` takes any callable `z -> log p(z)`.

  StandardNormal()                       N(0, I), today's prior;
  GaussianMixture(logits, means, logvars) a learned mixture of C diagonal Gaussians;
  vamp_prior(posteriors)                 the VampPrior: the uniform mixture of the
                                         encoder's posteriors at C learned
                                         pseudo-inputs (Tomczak & Welling 2018).

References:
  Tomczak & Welling, "VAE with a VampPrior", AISTATS 2018.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from vae import posteriors

Array = jax.Array


class StandardNormal(NamedTuple):
  """N(0, I)."""

  def log_prob(self, z: Array) -> Array:
    return -0.5 * jnp.sum(math.log(2.0 * math.pi) + jnp.square(z))


class GaussianMixture(NamedTuple):
  """sum_c softmax(logits)_c N(z; means_c, diag(exp(logvars_c))); logits (C,), means and
  logvars (C, D)."""

  logits: Array
  means: Array
  logvars: Array

  def log_prob(self, z: Array) -> Array:
    log_components = jax.vmap(
        lambda mean, logvar: posteriors.DiagonalGaussian(mean, logvar).log_prob(z))(
            self.means, self.logvars)
    return jax.nn.logsumexp(jax.nn.log_softmax(self.logits) + log_components)

  def sample(self, key: Array) -> Array:
    """One z (D,): a component drawn by its weight, then z from it."""
    pick, draw = jax.random.split(key)
    c = jax.random.categorical(pick, self.logits)
    return posteriors.DiagonalGaussian(self.means[c], self.logvars[c]).sample(draw)[0]


class UniformMixture(NamedTuple):
  """(1/C) sum_c q_c(z) for C posteriors of one family stacked on a leading axis."""

  components: Any

  def log_prob(self, z: Array) -> Array:
    log_components = jax.vmap(lambda component: component.log_prob(z))(self.components)
    return jax.nn.logsumexp(log_components) - jnp.log(log_components.shape[0])

  def sample(self, key: Array) -> Array:
    """One z (D,): a component drawn uniformly, then z from it."""
    pick, draw = jax.random.split(key)
    count = jax.tree.leaves(self.components)[0].shape[0]
    c = jax.random.randint(pick, (), 0, count)
    return jax.tree.map(lambda leaf: leaf[c], self.components).sample(draw)[0]


def vamp_prior(pseudo_posteriors: Any) -> UniformMixture:
  """The VampPrior p(z) = (1/C) sum_c q(z | u_c) from the encoder's posteriors at the C
  pseudo-inputs u_c, stacked on a leading axis (e.g. `jax.vmap(encode)(u)`)."""
  return UniformMixture(pseudo_posteriors)
