"""Flax encoders and decoders, built from a config through one registry.

Why linen: a linen module is a pure function of an explicit params pytree,
`module.apply({"params": params}, x)`. That is exactly what the kernels of
`vae/bounds.py` need (`encode(x)`, `decode(z)` closures over params), and it lets a sweep
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
import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vae.common import field_checks
from vae.kernels import bounds, posteriors, priors

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


# ------------------------------------------------------------------ initialisation


def _fan_in_uniform(key: Array, params: Any) -> Any:
  """PyTorch's default for nn.Linear and nn.Conv: every kernel and bias uniform in
  +-1/sqrt(fan_in), fan_in = the kernel's size without its output axis. A module named
  "extra" keeps its zeros (a posterior family's head starts at the diagonal Gaussian)."""
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  fan_ins = {_module_path(path): math.prod(leaf.shape[:-1])
             for path, leaf in paths_and_leaves if path[-1].key == "kernel"}

  def redraw(leaf_key, path, leaf):
    if path[-1].key not in ("kernel", "bias") or "extra" in _module_path(path):
      return leaf
    bound = 1.0 / math.sqrt(fan_ins[_module_path(path)])
    return jax.random.uniform(leaf_key, leaf.shape, leaf.dtype, -bound, bound)

  leaf_keys = jax.random.split(key, len(paths_and_leaves))
  return jax.tree_util.tree_unflatten(treedef, [
      redraw(k, path, leaf) for k, (path, leaf) in zip(leaf_keys, paths_and_leaves)])


def _module_path(path) -> tuple[str, ...]:
  """The names of the modules that hold the leaf at a `tree_flatten_with_path` path."""
  return tuple(entry.key for entry in path[:-1])


# config.model.init: the params Model.init returns, from flax's own initialisers.
INITIALIZATIONS: dict[str, Callable[[Array, Any], Any] | None] = {
    "lecun_normal": None,  # flax's defaults: LeCun-normal kernels, zero biases
    "fan_in_uniform": _fan_in_uniform,  # PyTorch's defaults
}


# ------------------------------------------------------------------ MLP


def _heads(h: Array, latent_dim: int, extra_outputs: int) -> tuple[Array, ...]:
  """(mean, logvar) of q(z|x), each (..., D), and the posterior family's extra outputs
  (..., E) when it has any (`POSTERIORS`), initialised at 0 so that every family starts
  as the diagonal Gaussian of (mean, logvar)."""
  outputs = (nn.Dense(latent_dim, name="mean")(h), nn.Dense(latent_dim, name="logvar")(h))
  if extra_outputs:
    outputs += (nn.Dense(extra_outputs, kernel_init=nn.initializers.zeros, name="extra")(h),)
  return outputs


class MLPEncoder(nn.Module):
  """(..., H, W, C) images -> ((..., D) mean, (..., D) logvar[, (..., E) extra])."""

  hidden_sizes: Sequence[int]
  latent_dim: int
  activation: str
  extra_outputs: int = 0

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, ...]:
    h = x.reshape(x.shape[:-3] + (-1,))
    for size in self.hidden_sizes:
      h = ACTIVATIONS[self.activation](nn.Dense(size)(h))
    return _heads(h, self.latent_dim, self.extra_outputs)


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


class GaussianMLP(nn.Module):
  """(..., D_in) latents -> ((..., D_out) mean, (..., D_out) logvar): one stochastic
  layer above or below another, q(z_{l+1}|z_l) or p(z_l|z_{l+1})."""

  hidden_sizes: Sequence[int]
  out_dim: int
  activation: str

  @nn.compact
  def __call__(self, z: Array) -> tuple[Array, Array]:
    h = z
    for size in self.hidden_sizes:
      h = ACTIVATIONS[self.activation](nn.Dense(size)(h))
    return _heads(h, self.out_dim, 0)


# ------------------------------------------------------------------ convolutional


class ConvEncoder(nn.Module):
  """Stride-2 3x3 convolutions, then a dense layer to (mean, logvar), each (..., D)
  (and the posterior family's extra outputs)."""

  features: Sequence[int]
  hidden_size: int
  latent_dim: int
  activation: str
  extra_outputs: int = 0

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, ...]:
    act = ACTIVATIONS[self.activation]
    h = x
    for feature in self.features:
      h = act(nn.Conv(feature, (3, 3), strides=(2, 2), padding="SAME")(h))
    h = h.reshape(x.shape[:-3] + (-1,))
    h = act(nn.Dense(self.hidden_size)(h))
    return _heads(h, self.latent_dim, self.extra_outputs)


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


# ------------------------------------------------------------------ posteriors and priors


class FlowParams(nn.Module):
  """The MADE weights of the IAF steps (`vae.posteriors.MADEStep`, leading steps axis),
  shared by every example; small random weights and zero biases start near identity."""

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


class PseudoInputs(nn.Module):
  """The VampPrior's learned pseudo-inputs (C, H, W, C), in (0, 1) through a sigmoid."""

  components: int
  image_shape: ImageShape

  @nn.compact
  def __call__(self) -> Array:
    raw = self.param("pseudo_inputs", nn.initializers.normal(0.01),
                     (self.components,) + tuple(self.image_shape))
    return jax.nn.sigmoid(raw)


@dataclasses.dataclass(frozen=True)
class PosteriorFamily:
  """How an encoder's outputs become q(z|x) (`vae.posteriors`).

  Attributes:
    extra_outputs: model config -> encoder outputs besides (mean, logvar).
    build: (mean, logvar, extra or None, flow params or None) -> the posterior of one
      example ((mean, logvar) itself for the diagonal family).
    has_flow: whether it has global flow parameters (`FlowParams`).
    mi_num_examples: the draws scored against the aggregate posterior for I(x; z) when
      config.eval.mi_num_examples is -1 (`vae.evaluate.Evaluator.information`).
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


def _family(cfg: ml_collections.ConfigDict) -> PosteriorFamily:
  return POSTERIORS[cfg.posterior]


def latent_sizes(cfg: ml_collections.ConfigDict) -> tuple[int, ...]:
  """(D_1, ..., D_L): latent_dim, then the upper_latent_dims of the layers above."""
  return (cfg.latent_dim,) + tuple(cfg.upper_latent_dims)


def _prior_module(cfg: ml_collections.ConfigDict, image_shape: ImageShape):
  if cfg.prior == "mixture":
    return MixturePriorParams(cfg.prior_components, latent_sizes(cfg)[-1])
  if cfg.prior == "vamp":
    return PseudoInputs(cfg.prior_components, image_shape)
  return None


# ------------------------------------------------------------------ registry


def _mlp(cfg: ml_collections.ConfigDict, image_shape: ImageShape, num_params: int):
  encoder = MLPEncoder(tuple(cfg.hidden_sizes), cfg.latent_dim, cfg.activation,
                       _family(cfg).extra_outputs(cfg))
  decoder = MLPDecoder(tuple(reversed(cfg.hidden_sizes)), image_shape, num_params,
                       cfg.activation)
  return encoder, decoder


def _conv(cfg: ml_collections.ConfigDict, image_shape: ImageShape, num_params: int):
  features = tuple(cfg.conv_features)
  encoder = ConvEncoder(features, cfg.conv_hidden_size, cfg.latent_dim, cfg.activation,
                        _family(cfg).extra_outputs(cfg))
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
  field_checks.sizes(config, "model.upper_latent_dims")
  field_checks.sizes(config, "model.upper_hidden_sizes")
  field_checks.one_of(config, "model.posterior", POSTERIORS)
  field_checks.one_of(config, "model.prior", PRIORS)
  field_checks.one_of(config, "model.init", INITIALIZATIONS)
  if cfg.posterior == "iaf":
    field_checks.int_at_least(config, "model.flow_steps")
    field_checks.int_at_least(config, "model.flow_hidden")
  if cfg.prior != "standard_normal":
    field_checks.int_at_least(config, "model.prior_components")
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
  """An encoder q(z_1|x), a decoder p(x|z_1), for each layer above the first its
  q(z_{l+1}|z_l) and p(z_l|z_{l+1}) and, where the config has them, the flow's and the
  prior's parameters, under one params tree."""

  encoder: nn.Module
  decoder: nn.Module
  flow: nn.Module | None = None
  prior: nn.Module | None = None
  upper_encoders: Sequence[nn.Module] = ()
  conditionals: Sequence[nn.Module] = ()

  def __call__(self, x: Array) -> Any:
    """Touches every parameter once (to initialise them): encodes x up the layers at
    their means, decodes each layer's mean."""
    outputs = self.encoder(x)
    below, touched = outputs[0], [outputs, self.decoder(outputs[0])]
    for encode_up, conditional in zip(self.upper_encoders, self.conditionals):
      above = encode_up(below)[0]
      touched.append(conditional(above))
      below = above
    return touched, self.flow_params(), self.prior_params()

  def encode(self, x: Array) -> tuple[tuple[Array, ...], Any]:
    return self.encoder(x), self.flow_params()

  def encode_up(self, layer: int, z: Array) -> tuple[Array, Array]:
    """q(z_{layer+2}|z_{layer+1}) as (mean, logvar) of z_{layer+1} (layer from 0)."""
    return self.upper_encoders[layer](z)

  def conditional(self, layer: int, z: Array) -> tuple[Array, Array]:
    """p(z_{layer+1}|z_{layer+2}) as (mean, logvar) of z_{layer+2} (layer from 0)."""
    return self.conditionals[layer](z)

  def decode(self, z: Array) -> Array:
    return self.decoder(z)

  def flow_params(self) -> Any:
    return None if self.flow is None else self.flow()

  def prior_params(self) -> Any:
    return None if self.prior is None else self.prior()


@dataclasses.dataclass(frozen=True)
class Model:
  """A VAE as pure functions of an explicit params pytree.

  `encode(params, x)` and `decode(params, z)` match the callables `vae.kernels` takes once
  params are bound (`bind`), e.g. `kernels.elbo(key, x, *model.bind(params),
  likelihood=model.likelihood, prior=model.prior(params))`. With several stochastic layers z is concat(z_1, ..., z_L),
  (latent_dim,) with latent_dim = sum(latent_sizes), q a `vae.posteriors.Hierarchical`
  and p(z) a `vae.priors.Hierarchical`.
  """

  module: VAE
  likelihood: str
  image_shape: ImageShape
  latent_sizes: tuple[int, ...]
  posterior: str = "diagonal"
  prior_name: str = "standard_normal"
  initialization: str = "lecun_normal"

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
  def layer_kl_keys(self) -> tuple[str, ...]:
    """("kl_z1", ..., "kl_zL"): the per-layer KL metrics, () with one layer."""
    return tuple(f"kl_{name}" for name in self.layer_names)

  def init(self, key: Array) -> Any:
    """Returns a fresh params pytree (no batch axis needed), initialised as
    `INITIALIZATIONS[initialization]` says."""
    module_key, redraw_key = jax.random.split(key)
    redraw = INITIALIZATIONS[self.initialization]
    if redraw is None:  # flax's own, from `key` itself (the numbers of earlier versions)
      return self.module.init(key, jnp.zeros(self.image_shape))["params"]
    return redraw(redraw_key, self.module.init(module_key, jnp.zeros(self.image_shape))["params"])

  def _apply(self, params: Any, method: Callable, *args) -> Any:
    return self.module.apply({"params": params}, *args, method=method)

  def encode(self, params: Any, x: Array) -> Any:
    """x (H, W, C) -> q(z|x): (mean, logvar), each (D,), for the diagonal family with
    one layer (also for x (..., H, W, C)), else a posterior of `vae.posteriors`."""
    outputs, flow = self._apply(params, VAE.encode, x)
    extra = outputs[2] if len(outputs) > 2 else None
    first = POSTERIORS[self.posterior].build(outputs[0], outputs[1], extra, flow)
    if not self.is_hierarchy:
      return first
    up = lambda p: tuple(functools.partial(self._apply, p, VAE.encode_up, layer)
                         for layer in range(len(self.latent_sizes) - 1))
    return posteriors.Hierarchical(bounds.as_posterior(first), up(params),
                                   up(jax.lax.stop_gradient(params)), self.latent_sizes)

  @property
  def fits_own_family(self) -> bool:
    """Whether `posterior_parameters` gives a family to fit q* in besides the diagonal."""
    return self.posterior != "diagonal" and not self.is_hierarchy

  def posterior_parameters(self, params: Any, x: Array) -> tuple[Any, Callable] | None:
    """q(z|x) of one x as (its parameters, parameters -> q): the encoder's outputs for
    x and the flow's weights, to fit per example in the model's own family
    (`vae.inference_gap.Family`). None where that family is the diagonal Gaussian's, or
    with several stochastic layers (whose upper layers are networks, not per-example
    parameters)."""
    if not self.fits_own_family:
      return None
    outputs, flow = self._apply(params, VAE.encode, x)
    family = POSTERIORS[self.posterior]
    extra = outputs[2] if len(outputs) > 2 else None
    return ((outputs[0], outputs[1], extra), flow), lambda raw: family.build(*raw[0], raw[1])

  def encode_mean(self, params: Any, x: Array) -> Array:
    """x (..., H, W, C) -> a point of each q(z|x), (..., D): its mean (the IAF: the flow
    of its base's mean; each layer's given the point of the layer below)."""
    if self.posterior == "diagonal" and not self.is_hierarchy:
      return self.encode(params, x)[0]
    flat = x.reshape((-1,) + self.image_shape)
    points = jax.vmap(lambda xi: bounds.as_posterior(self.encode(params, xi)).location())(flat)
    return points.reshape(x.shape[:-3] + (self.latent_dim,))

  def _top_posterior(self, params: Any, x: Array) -> Any:
    """q(z_L|x) of one x: q itself for one layer, else the top layer's diagonal
    Gaussian given the points of the layers below (`Hierarchical.diagonal`)."""
    q = bounds.as_posterior(self.encode(params, x))
    if not self.is_hierarchy:
      return q
    top = self.latent_sizes[-1]
    diagonal = q.diagonal()
    return posteriors.DiagonalGaussian(diagonal.mean[-top:], diagonal.logvar[-top:])

  def prior(self, params: Any) -> Any:
    """p(z) for `vae.losses`' prior=: None for N(0, I) with one layer, else a prior of
    `vae.priors` (with several layers a Hierarchical one over p(z_L) as configured)."""
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
    """z (..., D) -> likelihood parameters of shape (..., H, W, C) each (from z_1)."""
    if self.is_hierarchy:
      z = z[..., :self.latent_sizes[0]]
    raw = self._apply(params, VAE.decode, z)
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
  flow = (FlowParams(cfg.flow_steps, cfg.latent_dim, cfg.flow_hidden)
          if _family(cfg).has_flow else None)
  sizes = latent_sizes(cfg)
  hidden = tuple(cfg.upper_hidden_sizes)
  upper_encoders = tuple(GaussianMLP(hidden, above, cfg.activation) for above in sizes[1:])
  conditionals = tuple(GaussianMLP(hidden, below, cfg.activation) for below in sizes[:-1])
  module = VAE(encoder, decoder, flow, _prior_module(cfg, image_shape), upper_encoders,
               conditionals)
  return Model(module, cfg.likelihood, tuple(image_shape), sizes, cfg.posterior, cfg.prior,
               cfg.init)


# What a run saved before these fields existed had.
