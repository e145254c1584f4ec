"""Convolutional VAE on CIFAR-10 with a Gaussian likelihood with learned per-pixel variance.

Command (needs cifar10 prepared for tfds in --config.data.data_dir, see README "Data"):

  python -m experiments.train --config=configs/cifar10_conv.py --workdir=runs/cifar10

Colour values are continuous in [0, 1], so Bernoulli does not fit them; the Gaussian
likelihood gives a density on [0, 1]-scaled pixels (nats per image; subtract
3072 * log(256) for nats of the 8-bit data under uniform dequantisation). Several hours
on 2 CPU cores; meant for an accelerator.
"""

from vae.configs import default


def get_config():
  config = default.get_config()
  config.data.name = "cifar10"
  config.data.binarize = "none"
  config.data.validation_size = 5000
  config.model.architecture = "conv"
  config.model.likelihood = "gaussian"
  config.model.conv_features = (64, 128, 256)
  config.model.conv_hidden_size = 512
  config.model.latent_dim = 128
  config.model.init = "lecun_normal"  # the conv recipe, not re-tuned by issue 20
  config.optimizer.learning_rate = 3e-4
  config.optimizer.grad_clip_norm = 100.0
  # One step per call: XLA:CPU runs convolutions inside a lax.scan ~3x slower, and a conv
  # step is long enough that dispatching each one costs nothing (vae.training.train).
  config.train.steps_per_dispatch = 1
  config.train.num_steps = 100000
  config.train.eval_every = 10000
  config.train.checkpoint_every = 10000
  config.eval.num_importance_samples = 1000
  return config
