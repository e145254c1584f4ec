"""What the benchmark times: the models, and the library's trainer as a timed call."""

from __future__ import annotations

from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from vae.configs import (burda_2layer, default, fashion_hvae, fashion_hvae_vamp,
                         fashion_hvae_vamp_iwae, fashion_vae, fashion_vae_vamp, mnist_conv,
                         mnist_mlp)
from vae.models import build_model
from vae.runtime import distributed
from vae.training import random_streams, update

IMAGE_SHAPE = (28, 28, 1)

def _mlp_400_20() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.hidden_sizes = (400,)
  config.model.latent_dim = 20
  config.model.activation = "relu"
  config.model.likelihood = "bernoulli"
  return config


def _default_with(posterior: str = "diagonal", prior: str = "standard_normal", **loss
                  ) -> Callable[[], ml_collections.ConfigDict]:
  def config_factory() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model.posterior, config.model.prior = posterior, prior
    config.loss.update(loss)
    return config
  return config_factory


MODELS: dict[str, tuple[str, Callable[[], ml_collections.ConfigDict]]] = {
    "default": ("configs/default.py: MLP 784-400-20 relu", default.get_config),
    "burda_mlp": ("configs/mnist_mlp.py: MLP 784-200-200-50 tanh", mnist_mlp.get_config),
    "burda_2layer": ("configs/burda_2layer.py: 784-[200-200]-100-[100-100]-50 tanh",
                     burda_2layer.get_config),
    "mlp_400_20": ("MLP 784-400-20 relu (the tutorials' VAE)", _mlp_400_20),
    "mnist_conv": ("configs/mnist_conv.py: 2 stride-2 convs, 32 latents",
                   mnist_conv.get_config),
    "default_full_cov": ("configs/default.py, full-covariance posterior",
                         _default_with(posterior="full_covariance")),
    "default_iaf": ("configs/default.py, IAF posterior (2 steps)", _default_with(posterior="iaf")),
    "default_vamp": ("configs/default.py, VampPrior (50 pseudo-inputs)",
                     _default_with(prior="vamp")),
    **{f"default_{name}{k}": (f"configs/default.py, {label} K = {k}", _default_with(
        objective="iwae", num_samples=k, gradient_estimator=estimator))
       for k in (5, 50) for name, label, estimator in (
           ("iwae", "IWAE", "reparameterized"), ("dreg", "IWAE-DReG", "dreg"))},
    # Tomczak & Welling's protocol on Fashion-MNIST (issue 30): gated MLPs 784-300-300-40.
    "fashion_vae": ("configs/fashion_vae.py: gated MLP 784-300-300-40", fashion_vae.get_config),
    "fashion_vae_vamp": ("configs/fashion_vae_vamp.py: the same, VampPrior of 500 "
                         "pseudo-inputs", fashion_vae_vamp.get_config),
    "fashion_hvae": ("configs/fashion_hvae.py: two-level top-down HVAE, 40 + 40 latents",
                     fashion_hvae.get_config),
    "fashion_hvae_vamp": ("configs/fashion_hvae_vamp.py: the HVAE with a VampPrior of 500 "
                          "pseudo-inputs", fashion_hvae_vamp.get_config),
    "fashion_hvae_vamp_iwae": ("configs/fashion_hvae_vamp_iwae.py: the same trained by "
                               "IWAE-DReG", fashion_hvae_vamp_iwae.get_config),
}
"""name -> (description, config factory); every model is Bernoulli on 28x28x1 images."""

MLP_MODELS = ("default", "burda_mlp", "mlp_400_20")
YARDSTICK_MODELS = ("default", "burda_mlp", "mlp_400_20", "mnist_conv")
"""The models the hand-written yardstick implements (diagonal q, N(0, I) prior)."""


# ------------------------------------------------------------------ the trainer's block


def make_trainer(config: ml_collections.ConfigDict, block_batches: np.ndarray
                 ) -> tuple[Callable[[], Any], Any, Any]:
  """The library's jitted block for one run, built through `vae.training.update`'s public functions
  as `vae.training.runs.RunGroup` builds it.

  Args:
    config: the run's config (only the model, loss and optimiser are used).
    block_batches: (T, B, 28, 28, 1) images: T steps per call, batch sharded over the
      mesh's "data" axis (all devices of this process).

  Returns:
    (call, model, params): call() runs one block of T steps and returns the
    accumulator; the model and the fresh params (unstacked) for FLOP counting.
  """
  mesh = distributed.data_mesh()
  model = build_model(config.model, IMAGE_SHAPE)
  init_key = random_streams.stream(config.seed, random_streams.INIT)
  state = update.init_state(model, config, init_key, np.asarray(block_batches).mean(axis=(0, 1)))
  replicated = distributed.replicated(mesh)
  carry = [jax.device_put(update.stack_runs([state]), replicated),
           jax.device_put(update.stack_runs([update.empty_accumulator()]), replicated)]
  hp = jax.device_put(update.stack_runs([update.hyperparams(config)]), replicated)
  train_keys = jax.device_put(
      np.stack([random_streams.stream(config.seed, random_streams.TRAIN)]), replicated)
  block = update.make_train_block(model, config, True, mesh)
  examples_axis = update.batch_axis(True)
  batches = distributed.put_process_rows(  # one process: its rows are the whole batch
      block_batches, distributed.sharded_along(mesh, examples_axis), examples_axis)

  def call():
    carry[0], carry[1] = block(carry[0], carry[1], hp, train_keys, batches)
    return carry[1]

  return call, model, state.params
