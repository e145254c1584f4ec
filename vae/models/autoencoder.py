"""The VAE: one Flax module holding every network, and `Model`, its pure functions.

Why linen: a linen module is a pure function of an explicit params pytree,
`module.apply({"params": params}, x)`. That is exactly what the kernels of
`vae.kernels.bounds` need (`encode(x)`, `decode(z)` closures over params), and it lets a
sweep `jax.vmap` over stacked params and orbax checkpoint them with no split/merge step.
nnx would give the same after `nnx.split`, at the cost of one more concept for readers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae.kernels import bounds, padding, posteriors, priors
from vae.models import families, initializations, likelihood_heads, networks

Array = jax.Array


class VAE(nn.Module):
  """An encoder and a decoder, the networks of the stochastic layers besides the first
  drawn and, where the config has them, the flow's and the prior's parameters, under one
  params tree.

  Bottom-up (Burda et al.): the encoder is q(z_1|x), the decoder p(x|z_1), and
  upper_encoders[l] q(z_{l+2}|z_{l+1}). Top-down (Tomczak & Welling's HVAE): the encoder is
  q(z_L|x), the decoder p(x|z_1, ..., z_L), and upper_encoders[j] q(z_{L-1-j}|x, z_{L-j}).
  Either way conditionals[l] is p(z_{l+1}|z_{l+2}) (layers from 0 in the names below)."""

  encoder: nn.Module
  decoder: nn.Module
  flow: nn.Module | None = None
  prior: nn.Module | None = None
  upper_encoders: Sequence[nn.Module] = ()
  conditionals: Sequence[nn.Module] = ()
  top_down: bool = False

  def __call__(self, x: Array) -> Any:
    """Touches every parameter once (to initialise them): encodes x through the layers
    at their means, decodes the means."""
    if self.top_down:
      return self._touch_top_down(x), self.flow_params(), self.prior_params()
    outputs = self.encoder(x)
    below, touched = outputs[0], [outputs, self.decoder(outputs[0])]
    for encode_up, conditional in zip(self.upper_encoders, self.conditionals):
      above = encode_up(below)[0]
      touched.append(conditional(above))
      below = above
    return touched, self.flow_params(), self.prior_params()

  def _touch_top_down(self, x: Array) -> list[Any]:
    outputs = self.encoder(x)
    means, touched = [outputs[0]], [outputs]
    for layer in range(len(self.upper_encoders)):
      means.insert(0, self.encode_down(layer, x, means[0])[0])
    touched += [conditional(above) for conditional, above in zip(self.conditionals, means[1:])]
    return touched + [self.decoder(jnp.concatenate(means, axis=-1))]

  def encode(self, x: Array) -> tuple[tuple[Array, ...], Any]:
    return self.encoder(x), self.flow_params()

  def encode_up(self, layer: int, z: Array) -> tuple[Array, Array]:
    """q(z_{layer+2}|z_{layer+1}) as (mean, logvar) of z_{layer+1} (layer from 0)."""
    return self.upper_encoders[layer](z)

  def encode_down(self, layer: int, x: Array, z: Array) -> tuple[Array, Array]:
    """Top-down: q(z_{L-1-layer}|x, z_{L-layer}) as (mean, logvar), from x (H, W, C) and
    the layer above (layer from 0, in the order of drawing)."""
    return self.upper_encoders[layer](x.reshape(x.shape[:-3] + (-1,)), z)

  def conditional(self, layer: int, z: Array) -> tuple[Array, Array]:
    """p(z_{layer+1}|z_{layer+2}) as (mean, logvar) of z_{layer+2} (layer from 0)."""
    return self.conditionals[layer](z)

  def decode(self, z: Array) -> Array:
    return self.decoder(z)

  def flow_params(self) -> Any:
    return None if self.flow is None else self.flow()

  def prior_params(self) -> Any:
    return None if self.prior is None else self.prior()


USED_LATENTS = "used_latents"
"""The params entry of a run padded to a model of more latents (`with_used_latents`)."""


def with_used_latents(params: Any, num_used: int | Array) -> Any:
  """`params` of a model of D_max latents holding a run of `num_used` <= D_max (may be
  traced): the model then masks the others out of q(z|x) and the decoder's input
  (`vae.kernels.padding`), so it scores the run as its own model of num_used latents
  does, up to float rounding, while runs of other sizes share one compiled program
  (`vae.training.padded_latents`)."""
  return {**params, USED_LATENTS: num_used}


def _fan_in_offsets(weights: Any) -> tuple[Any, Callable[[Any], Any]]:
  """(zero offsets like `weights`, offsets -> the weights they make): w + offset / fan_in
  for arrays of two or more axes (fan_in: the product of all axes but the last), w +
  offset for vectors, so one step of an offset moves a layer's outputs about as far as a
  step of its bias."""
  def scale(w):
    return 1.0 / math.prod(w.shape[:-1]) if w.ndim > 1 else 1.0
  make = lambda offsets: jax.tree.map(lambda w, u: w + u * scale(w), weights, offsets)
  return jax.tree.map(jnp.zeros_like, weights), make


DECODER_BIAS_INITS = ("zeros", "data_mean")
"""config.model.decoder_bias_init: the decoder's output bias at step 0, as the
initialisation draws it ("zeros": flax's zeros; PyTorch's uniform with "fan_in_uniform"),
or the training images' per-pixel mean through the likelihood ("data_mean")."""


@dataclasses.dataclass(frozen=True)
class Model:
  """A VAE as pure functions of an explicit params pytree.

  `encode(params, x)` and `decode(params, z)` match the callables `vae.kernels` takes once
  params are bound (`bind`), e.g. `kernels.elbo(key, x, *model.bind(params),
  likelihood=model.likelihood, prior=model.prior(params))`. With several stochastic layers
  z is concat(z_1, ..., z_L), (latent_dim,) with latent_dim = sum(latent_sizes), q a
  `vae.kernels.posteriors.Hierarchical` and p(z) a `vae.kernels.priors.Hierarchical`.
  """

  module: VAE
  likelihood: str
  image_shape: networks.ImageShape
  latent_sizes: tuple[int, ...]
  posterior: str = "diagonal"
  prior_name: str = "standard_normal"
  initialization: str = "lecun_normal"
  decoder_bias_init: str = "zeros"
  top_down: bool = False  # the order of a hierarchy's posterior (`VAE`)

  def bind(self, params: Any) -> tuple[Callable[[Array], Any], Callable[[Array], Any]]:
    """(encode, decode) with `params` bound: x -> q(z|x) and z -> the likelihood's
    parameters, on one example, the two callables every kernel takes."""
    return functools.partial(self.encode, params), functools.partial(self.decode, params)

  @property
  def latent_dim(self) -> int:
    """D = D_1 + ... + D_L, the size of z."""
    return sum(self.latent_sizes)

  @property
  def is_hierarchy(self) -> bool:
    return len(self.latent_sizes) > 1

  @property
  def layer_names(self) -> tuple[str, ...]:
    """("z1", ..., "zL") with several stochastic layers, () with one: the suffixes of
    the per-layer metrics (kl_z1, active_units_z1, ...)."""
    return tuple(f"z{layer + 1}" for layer in range(len(self.latent_sizes))
                 ) if self.is_hierarchy else ()

  @property
  def layer_kl_names(self) -> tuple[str, ...]:
    """("kl_z1", ..., "kl_zL"): the per-layer KL metrics, () with one layer."""
    return tuple(f"kl_{name}" for name in self.layer_names)

  def init(self, key: Array, data_mean: Array | None = None) -> Any:
    """Returns a fresh params pytree (no batch axis needed), initialised as
    `INITIALIZATIONS[initialization]` says; with decoder_bias_init "data_mean", the
    decoder's output bias then makes p(x|z) at zero hidden activity have the mean image
    `data_mean` (H, W, C) in [0, 1], the training images' per-pixel mean."""
    module_key, redraw_key = jax.random.split(key)
    redraw = initializations.INITIALIZATIONS[self.initialization]
    if redraw is None:  # flax's own, from `key` itself (the numbers of earlier versions)
      params = self.module.init(key, jnp.zeros(self.image_shape))["params"]
    else:
      params = redraw(redraw_key,
                      self.module.init(module_key, jnp.zeros(self.image_shape))["params"])
    if self.decoder_bias_init == "zeros":
      return params
    if data_mean is None:
      raise ValueError('config.model.decoder_bias_init="data_mean" needs the training '
                       "images' mean: pass data_mean to Model.init.")
    raw = likelihood_heads.LIKELIHOOD_HEADS[self.likelihood].raw_for_mean(
        jnp.asarray(data_mean, jnp.float32))
    layer, bias = self.module.decoder.output_bias(raw)
    decoder = {**params["decoder"], layer: {**params["decoder"][layer], "bias": bias}}
    return {**params, "decoder": decoder}

  def _apply(self, params: Any, method: Callable, *args) -> Any:
    networks_params = {k: v for k, v in params.items() if k != USED_LATENTS}
    return self.module.apply({"params": networks_params}, *args, method=method)

  def _used_latents(self, params: Any) -> Array | None:
    """(D,) bool of the latents a padded run uses (`with_used_latents`), else None."""
    if USED_LATENTS not in params:
      return None
    return padding.used_dimensions(params[USED_LATENTS], self.latent_dim)

  def encode(self, params: Any, x: Array) -> Any:
    """x (H, W, C) -> q(z|x): (mean, logvar), each (D,), for the diagonal family with
    one layer (also for x (..., H, W, C)), else a posterior of `vae.kernels.posteriors`."""
    outputs, flow = self._apply(params, VAE.encode, x)
    extra = outputs[2] if len(outputs) > 2 else None
    used = self._used_latents(params)
    if used is not None:  # a diagonal q over one layer (`padded_latents.why_not_paddable`)
      outputs = padding.masked_posterior(outputs[0], outputs[1], used)
    return self._posterior(params, x, (outputs[0], outputs[1], extra), flow)

  def _posterior(self, params: Any, x: Array, first_outputs: tuple[Array, Array, Any],
                 flow: Any) -> Any:
    """q(z|x) from the encoder's outputs for x, (mean, logvar, extra), and the flow's
    weights; the layers drawn after the first from the upper encoders in `params`."""
    first = families.POSTERIORS[self.posterior].build(*first_outputs, flow)
    if not self.is_hierarchy:
      return first
    if self.top_down:
      down = lambda p: tuple(functools.partial(self._apply, p, VAE.encode_down, layer, x)
                             for layer in range(len(self.latent_sizes) - 1))
      return posteriors.Hierarchical(bounds.as_posterior(first), down(params),
                                     down(jax.lax.stop_gradient(params)), self.latent_sizes,
                                     top_down=True)
    up = lambda p: tuple(functools.partial(self._apply, p, VAE.encode_up, layer)
                         for layer in range(len(self.latent_sizes) - 1))
    return posteriors.Hierarchical(bounds.as_posterior(first), up(params),
                                   up(jax.lax.stop_gradient(params)), self.latent_sizes)

  @property
  def fits_own_family(self) -> bool:
    """Whether `posterior_parameters` gives a family to fit q* in besides the diagonal."""
    return self.posterior != "diagonal" or self.is_hierarchy

  @property
  def own_family_name(self) -> str | None:
    """The family `posterior_parameters` fits, as reports name it; None without one."""
    if not self.fits_own_family:
      return None
    if not self.is_hierarchy:
      return self.posterior
    order = "top-down" if self.top_down else "bottom-up"
    return f"{order} hierarchy ({self.posterior} layers)"

  def posterior_parameters(self, params: Any, x: Array) -> tuple[Any, Callable] | None:
    """q(z|x) of one x as (its parameters, parameters -> q), to fit per example in the
    model's own family (`vae.kernels.inference_gap.Family`): the encoder's outputs for x,
    the flow's weights and, with several stochastic layers, the upper encoders' weights
    (the networks of q(z_l|x, z_{l+1}) top-down, q(z_{l+1}|z_l) bottom-up), so the fit
    gives the example its own copy of each. None where that family is the diagonal
    Gaussian's of one layer.

    The upper encoders' weights are fitted as offsets from the trained ones, a matrix's
    divided by its fan-in (`_fan_in_offsets`): Adam moves every entry by about its
    learning rate, so a raw 784 x 600 kernel would move its outputs hundreds of times
    further than a bias does, and the fit, unstable, would stop short of the diagonal q*
    (which this family contains: zero weights from the layer above)."""
    if not self.fits_own_family:
      return None
    outputs, flow = self._apply(params, VAE.encode, x)
    first = (outputs[0], outputs[1], outputs[2] if len(outputs) > 2 else None)
    upper = {k: v for k, v in params.items() if k.startswith("upper_encoders")}
    offsets, weights = _fan_in_offsets(upper)
    build = lambda raw: self._posterior({**params, **weights(raw[2])}, x, raw[0], raw[1])
    return (first, flow, offsets), build

  def encode_mean(self, params: Any, x: Array) -> Array:
    """x (..., H, W, C) -> a point of each q(z|x), (..., D): its mean (the IAF: the flow
    of its base's mean; each layer's given the point of the layer below)."""
    if self.posterior == "diagonal" and not self.is_hierarchy:
      return self.encode(params, x)[0]
    flat = x.reshape((-1,) + self.image_shape)
    points = jax.vmap(lambda xi: bounds.as_posterior(self.encode(params, xi)).location())(flat)
    return points.reshape(x.shape[:-3] + (self.latent_dim,))

  def _top_posterior(self, params: Any, x: Array) -> Any:
    """q(z_L|x) of one x: q itself for one layer, the encoder's own top-down, else the
    top layer's diagonal Gaussian given the points of the layers below
    (`Hierarchical.diagonal`)."""
    q = bounds.as_posterior(self.encode(params, x))
    if not self.is_hierarchy:
      return q
    if self.top_down:
      return q.first
    top = self.latent_sizes[-1]
    diagonal = q.diagonal()
    return posteriors.DiagonalGaussian(diagonal.mean[-top:], diagonal.logvar[-top:])

  def prior(self, params: Any) -> Any:
    """p(z) for the kernels' prior=: None for N(0, I) with one layer, else a prior of
    `vae.kernels.priors` (with several layers a Hierarchical one over p(z_L) as
    configured)."""
    made = self._apply(params, VAE.prior_params)
    if self.prior_name == "vamp":
      made = priors.vamp_prior(jax.vmap(lambda u: self._top_posterior(params, u))(made))
    if not self.is_hierarchy:
      return made
    return priors.Hierarchical(made, tuple(
        functools.partial(self._apply, params, VAE.conditional, layer)
        for layer in range(len(self.latent_sizes) - 1)), self.latent_sizes)

  def sample_prior(self, params: Any, key: Array, num: int) -> Array:
    """(num, D) draws of z ~ p(z)."""
    prior = self.prior(params)
    if prior is None:
      return jax.random.normal(key, (num, self.latent_dim))
    return jax.vmap(prior.sample)(jax.random.split(key, num))

  def decode(self, params: Any, z: Array) -> Any:
    """z (..., D) -> likelihood parameters of shape (..., H, W, C) each (from z_1, or
    top-down from every layer)."""
    if self.is_hierarchy and not self.top_down:
      z = z[..., :self.latent_sizes[0]]
    used = self._used_latents(params)
    if used is not None:
      z = padding.masked_latents(z, used)
    raw = self._apply(params, VAE.decode, z)
    return likelihood_heads.LIKELIHOOD_HEADS[self.likelihood].split(raw)

  def mean_image(self, params: Any, z: Array) -> Array:
    """z (..., D) -> E[x|z], (..., H, W, C) in [0, 1]."""
    return likelihood_heads.LIKELIHOOD_HEADS[self.likelihood].mean_image(self.decode(params, z))
