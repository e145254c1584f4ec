"""Convolutional VAE on MNIST (two stride-2 3x3 convs, 32 latents, Bernoulli).

Command (needs MNIST prepared for tfds in --config.data.data_dir, see README "Data"):

  python -m experiments.train --config=configs/mnist_conv.py --workdir=runs/mnist_conv

Reaches a test log p(x) of about -88 nats (IWAE, K = 1000) after 30,000 steps; on 2 CPU
cores: hours (a step at batch 128 takes ~0.4 s, and IWAE with convolutions is slow on CPU);
meant for an accelerator.
"""

from vae.configs import default


def get_config():
  config = default.get_config()
  config.data.name = "mnist"
  config.data.validation_size = 10000
  config.model.architecture = "conv"
  config.model.conv_features = (32, 64)
  config.model.latent_dim = 32
  config.model.init = "lecun_normal"  # the conv recipe, not re-tuned by issue 20
  config.optimizer.learning_rate = 1e-3
  # One step per call: XLA:CPU runs convolutions inside a lax.scan ~3x slower, and a conv
  # step is long enough that dispatching each one costs nothing (vae.training.train).
  config.train.steps_per_dispatch = 1
  config.train.num_steps = 30000
  config.train.eval_every = 5000
  config.train.checkpoint_every = 5000
  config.eval.num_importance_samples = 1000
  return config
