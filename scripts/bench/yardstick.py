"""The yardstick: a minimal hand-written training step of a model, no Flax, no metrics."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from scripts.bench import flops
from scripts.bench.subjects import IMAGE_SHAPE

_ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}


def _yardstick_layers(model_config: ml_collections.ConfigDict):
  """Encoder body, decoder, and the flat width before the heads, as (kind, shape) lists.

  kind is "dense" (kernel (in, out)), "conv" (3x3 stride 2, SAME), "conv_t" (3x3
  transposed, stride 2, SAME), "conv_out" (3x3 stride 1, SAME) or "reshape" (to the
  conv decoder's first feature map); the same layers as `vae.models` builds.
  """
  cfg = model_config
  height, width, channels = IMAGE_SHAPE
  if cfg.architecture == "mlp":
    widths = [height * width * channels, *cfg.hidden_sizes]
    encoder = [("dense", (a, b)) for a, b in zip(widths[:-1], widths[1:])]
    decoder_widths = [cfg.latent_dim, *reversed(widths)]
    decoder = [("dense", (a, b)) for a, b in zip(decoder_widths[:-1], decoder_widths[1:])]
    return encoder, decoder, widths[-1]
  features = list(cfg.conv_features)
  scale = 2 ** len(features)
  small = (height // scale, width // scale, features[-1])
  encoder = [("conv", (3, 3, a, b)) for a, b in zip([channels] + features[:-1], features)]
  encoder += [("dense", (math.prod(small), cfg.conv_hidden_size))]
  decoder = [("dense", (cfg.latent_dim, cfg.conv_hidden_size)),
             ("dense", (cfg.conv_hidden_size, math.prod(small))), ("reshape", small)]
  reversed_features = features[::-1]
  decoder += [("conv_t", (3, 3, a, b)) for a, b in
              zip([features[-1]] + reversed_features[:-1], reversed_features)]
  decoder += [("conv_out", (3, 3, features[0], channels))]
  return encoder, decoder, cfg.conv_hidden_size


def _apply(layers, params, h, activation, activate_last):
  """Runs (kind, shape) layers with their (kernel, bias) params on a batch h."""
  weighted = [i for i, (kind, _) in enumerate(layers) if kind != "reshape"]
  for i, ((kind, shape), layer_params) in enumerate(zip(layers, params)):
    if kind == "reshape":
      h = h.reshape((h.shape[0],) + shape)
      continue
    kernel, bias = layer_params
    if kind == "dense":
      h = h.reshape(h.shape[0], -1) @ kernel
    elif kind == "conv_t":
      h = jax.lax.conv_transpose(h, kernel, (2, 2), "SAME", dimension_numbers=flops.NHWC)
    else:
      strides = (2, 2) if kind == "conv" else (1, 1)
      h = jax.lax.conv_general_dilated(h, kernel, strides, "SAME", dimension_numbers=flops.NHWC)
    h = h + bias
    if activate_last or i != weighted[-1]:
      h = activation(h)
  return h


def make_yardstick(model_config: ml_collections.ConfigDict, batch: np.ndarray,
                   key: jax.Array) -> tuple[Callable[[], Any], Callable, tuple]:
  """A minimal hand-written training step of the model: no Flax, no metrics.

  Single-sample reparameterised ELBO with a Bernoulli likelihood and the analytic KL,
  `optax.adam(1e-3)`, jitted with params and optimiser state donated.

  Args:
    model_config: `config.model` of a Bernoulli model.
    batch: (B, 28, 28, 1) images in [0, 1].
    key: PRNG key of the initialisation and the samples.

  Returns:
    (call, loss_fn, loss_args): call() runs one step and returns the new params;
    loss_fn(params, key, x) and loss_args (shapes only: the params are donated) give
    the step's jaxpr for FLOP counting.
  """
  encoder, decoder, head_width = _yardstick_layers(model_config)
  activation = _ACTIVATIONS[model_config.activation]
  latent_dim = model_config.latent_dim

  def init_layers(layers, key):
    params = []
    for i, (kind, shape) in enumerate(layers):
      if kind == "reshape":
        params.append(())
        continue
      fan_in = math.prod(shape[:-1])
      kernel = jax.random.normal(jax.random.fold_in(key, i), shape) / math.sqrt(fan_in)
      params.append((kernel, jnp.zeros(shape[-1])))
    return params

  keys = jax.random.split(key, 4)
  heads = [("dense", (head_width, latent_dim))] * 2
  params = {"encoder": init_layers(encoder, keys[0]), "heads": init_layers(heads, keys[1]),
            "decoder": init_layers(decoder, keys[2])}

  def loss_fn(params, key, x):
    h = _apply(encoder, params["encoder"], x, activation, activate_last=True)
    (mean_kernel, mean_bias), (logvar_kernel, logvar_bias) = params["heads"]
    mean, logvar = h @ mean_kernel + mean_bias, h @ logvar_kernel + logvar_bias
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
    logits = _apply(decoder, params["decoder"], z, activation, activate_last=False)
    logits = logits.reshape(x.shape)
    reconstruction = -jnp.sum(jax.nn.softplus(logits) - x * logits, axis=(1, 2, 3))
    kl = 0.5 * jnp.sum(jnp.square(mean) + jnp.expm1(logvar) - logvar, axis=1)
    return -jnp.mean(reconstruction - kl), ()

  optimizer = optax.adam(1e-3)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, step_key, x):
    step_key, sample_key = jax.random.split(step_key)
    grads, _ = jax.grad(loss_fn, has_aux=True)(params, sample_key, x)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, step_key

  x = jnp.asarray(batch)
  carry = [params, optimizer.init(params), keys[3]]

  def call():
    carry[0], carry[1], carry[2] = step(carry[0], carry[1], carry[2], x)
    return carry[0]

  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (params, keys[3], x))
  return call, loss_fn, shapes
