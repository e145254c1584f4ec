"""Posterior families and priors: what config.model.posterior and config.model.prior name,
and the parameter modules the flow and the learned priors add to the model.

The densities themselves are the kernels' (`vae.kernels.posteriors`,
`vae.kernels.priors`); this module only says which to build from a config.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vae.kernels import posteriors, priors
from vae.models import networks

Array = jax.Array


class FlowParams(nn.Module):
  """The MADE weights of the IAF steps (`vae.kernels.posteriors.MADEStep`, leading steps
  axis), shared by every example; small random weights and zero biases start near
  identity."""

  num_steps: int
  dim: int
  hidden: int

  @nn.compact
  def __call__(self) -> posteriors.MADEStep:
    small, zeros = nn.initializers.normal(0.01), nn.initializers.zeros
    d, h = self.dim, self.hidden
    shapes = dict(w_in=((d, h), small), w_context=((h, h), small), b_in=((h,), zeros),
                  w_shift=((h, d), small), b_shift=((d,), zeros), w_scale=((h, d), small),
                  b_scale=((d,), zeros))
    return posteriors.MADEStep(**{name: self.param(name, init, (self.num_steps,) + shape)
                                  for name, (shape, init) in shapes.items()})


class MixturePriorParams(nn.Module):
  """A learned mixture of `components` diagonal Gaussians over D latents."""

  components: int
  dim: int

  @nn.compact
  def __call__(self) -> priors.GaussianMixture:
    return priors.GaussianMixture(
        self.param("logits", nn.initializers.zeros, (self.components,)),
        self.param("means", nn.initializers.normal(1.0), (self.components, self.dim)),
        self.param("logvars", nn.initializers.zeros, (self.components, self.dim)))


def _normal_init(mean: float, std: float) -> Callable[..., Array]:
  return lambda key, shape, dtype=jnp.float32: mean + std * jax.random.normal(key, shape, dtype)


PSEUDO_INPUTS: dict[str, tuple[Callable[..., Array], Callable[[Array], Array]]] = {
    # u = sigmoid(v), v ~ N(0, 0.01^2): every pseudo-input starts as the same grey 0.5.
    "sigmoid": (nn.initializers.normal(0.01), jax.nn.sigmoid),
    # u = clip(v, 0, 1), v ~ N(0.05, 0.01^2): Tomczak & Welling's hardtanh pseudo-inputs,
    # near the digits' black background at the start, moving at the learning rate's pace
    # (a sigmoid near 0.05 moves 20 times slower); measured in docs/results/tanh_collapse.md.
    "clipped": (_normal_init(0.05, 0.01), lambda v: jnp.clip(v, 0.0, 1.0)),
}
"""config.model.pseudo_inputs: the VampPrior's pseudo-inputs u in [0, 1] from their learned
parameters v -> (the initializer of v, v -> u)."""


class PseudoInputs(nn.Module):
  """The VampPrior's learned pseudo-inputs (C, H, W, C) in [0, 1], parametrised as
  `PSEUDO_INPUTS[parametrization]` says."""

  components: int
  image_shape: networks.ImageShape
  parametrization: str = "sigmoid"

  @nn.compact
  def __call__(self) -> Array:
    init, to_unit_interval = PSEUDO_INPUTS[self.parametrization]
    raw = self.param("pseudo_inputs", init, (self.components,) + tuple(self.image_shape))
    return to_unit_interval(raw)


@dataclasses.dataclass(frozen=True)
class PosteriorFamily:
  """How an encoder's outputs become q(z|x) (`vae.kernels.posteriors`).

  Attributes:
    extra_outputs: model config -> encoder outputs besides (mean, logvar).
    build: (mean, logvar, extra or None, flow params or None) -> the posterior of one
      example ((mean, logvar) itself for the diagonal family).
    has_flow: whether it has global flow parameters (`FlowParams`).
    mi_num_examples: the draws scored against the aggregate posterior for I(x; z) when
      config.eval.mi_num_examples is -1 (`vae.evaluation`'s `Evaluator.information`).
  """

  extra_outputs: Callable[[ml_collections.ConfigDict], int]
  build: Callable[..., Any]
  has_flow: bool = False
  mi_num_examples: int = 1000


POSTERIORS: dict[str, PosteriorFamily] = {
    "diagonal": PosteriorFamily(lambda cfg: 0, lambda mean, logvar, extra, flow: (mean, logvar)),
    # L = diag(exp(logvar / 2)) plus D (D - 1) / 2 entries below it from the encoder.
    "full_covariance": PosteriorFamily(
        lambda cfg: cfg.latent_dim * (cfg.latent_dim - 1) // 2,
        lambda mean, logvar, extra, flow: posteriors.FullCovarianceGaussian(
            mean, posteriors.scale_tril(logvar, extra))),
    # The encoder's diagonal Gaussian through flow_steps IAF steps, with a context h of
    # flow_hidden features from the encoder. Its density inverts the flow one dimension
    # at a time, so I(x; z) draws fewer examples: the aggregate pass stays under 10% of a
    # K = 100 evaluation (README, "Posterior collapse").
    "iaf": PosteriorFamily(
        lambda cfg: cfg.flow_hidden,
        lambda mean, logvar, extra, flow: posteriors.InverseAutoregressiveFlow(
            posteriors.DiagonalGaussian(mean, logvar), flow, extra), has_flow=True,
        mi_num_examples=32),
}
"""config.model.posterior -> how the encoder's outputs become q(z|x)."""

PRIORS = ("standard_normal", "mixture", "vamp")
"""config.model.prior: N(0, I); a learned mixture of `prior_components` diagonal
Gaussians; the VampPrior at `prior_components` learned pseudo-inputs."""


def posterior_family(cfg: ml_collections.ConfigDict) -> PosteriorFamily:
  """The family config.model.posterior names."""
  return POSTERIORS[cfg.posterior]


def latent_sizes(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
  """(D_1, ..., D_L): latent_dim, then the upper_latent_dims of the layers above."""
  return (cfg.latent_dim,) + tuple(cfg.upper_latent_dims)


def prior_params_module(cfg: ml_collections.ConfigDict, image_shape: networks.ImageShape):
  """The module of the learned prior's parameters (over the top layer, z_L), or None for
  N(0, I)."""
  if cfg.prior == "mixture":
    return MixturePriorParams(cfg.prior_components, latent_sizes(cfg)[-1])
  if cfg.prior == "vamp":
    return PseudoInputs(cfg.prior_components, image_shape, cfg.pseudo_inputs)
  return None
