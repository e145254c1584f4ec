"""Burda's tanh networks with a learned prior keep their latent code (issue 33).

With the decoder's output bias at zero, p(x|z) starts at 0.5 per pixel while the digits
average 0.13; the first reconstruction gradients then move every example's code the same
way, the encoder's second tanh layer saturates within ~50 steps, and the VampPrior (whose
components are the encoder's own outputs) settles at KL = 0 for good. configs/mnist_mlp.py
starts the bias at the training images' mean (`decoder_bias_init = "data_mean"`).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vae import data
from vae.configs import burda_2layer, mnist_mlp
from vae.models import build_model
from vae.training import update


def train_kls(config, num_steps, names=("kl",)):
  """The train KLs `names` (nats per example; "kl", or "kl_z1", ... of each layer) of each
  of `num_steps` Adam steps of batch 100, as an array (num_steps, len(names))."""
  train = np.asarray(data.load_split(config.data, "train"))
  model = build_model(config.model, train.shape[1:])
  state = update.init_state(model, config, jax.random.PRNGKey(0), train.mean(axis=0))
  optimizer, loss_fn = update.make_optimizer(config), update.make_loss_fn(model, config.loss)

  @jax.jit
  def step(params, opt_state, key, x):
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, key, x, 1.0)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state,
            jnp.stack([metrics[name] for name in names]))

  rng = np.random.default_rng(0)
  params, opt_state, kls = state.params, state.opt_state, []
  for t in range(num_steps):
    x = train[rng.choice(len(train), 100, replace=False)]
    x = (rng.random(x.shape) < x).astype(np.float32)
    params, opt_state, kl = step(params, opt_state, jax.random.PRNGKey(t), jnp.asarray(x))
    kls.append(np.asarray(kl))
  return np.array(kls)


def test_a_tanh_vae_with_a_vamp_prior_transmits_information():
  config = mnist_mlp.get_config()
  config.data.name, config.data.validation_size = "embedded_mnist", 500
  config.model.prior, config.model.prior_components = "vamp", 20
  config.model.hidden_sizes, config.model.latent_dim = (100, 100), 20
  config.train.num_steps = 2500  # the schedule's length, as in the runs
  (kl,) = train_kls(config, 150)[-50:].mean(axis=0)
  assert kl > 1.0, kl  # 0.003 nats with the bias at zero


def test_a_tanh_vae_with_two_stochastic_layers_transmits_through_both():
  config = burda_2layer.get_config()
  config.data.name, config.data.validation_size = "embedded_mnist", 500
  config.model.hidden_sizes, config.model.latent_dim = (100, 100), 20
  config.model.upper_hidden_sizes, config.model.upper_latent_dims = (50, 50), (10,)
  config.train.num_steps = 2500
  kl_z1, kl_z2 = train_kls(config, 300, ("kl_z1", "kl_z2"))[-50:].mean(axis=0)
  assert kl_z1 > 2.0 and kl_z2 > 0.5, (kl_z1, kl_z2)  # 0.2 and 0.05 with the bias at zero
