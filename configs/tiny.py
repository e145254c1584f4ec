"""A seconds-long smoke run: a small MLP VAE on scikit-learn's 8x8 digits (offline).

Command:

  python -m experiments.train --config=configs/tiny.py --workdir=runs/tiny

Used by the tests; handy to check an installation. On 2 CPU cores: about 10 seconds,
mostly compilation; the numbers it reaches mean little (test ELBO about -40 nats).
"""

from vae.configs import default


def get_config():
  config = default.get_config()
  config.data.name = "embedded_digits"
  config.model.hidden_sizes = (32,)
  config.model.latent_dim = 4
  config.model.conv_features = (8,)
  config.model.conv_hidden_size = 16
  config.optimizer.warmup_steps = 0
  config.train.num_steps = 20
  config.train.batch_size = 32
  config.train.steps_per_dispatch = 5
  config.train.log_every = 10
  config.train.eval_every = 10
  config.train.checkpoint_every = 10
  config.eval.batch_size = 100
  config.eval.num_importance_samples = 20
  config.eval.chunk_size = 10
  config.eval.num_elbo_samples = 2
  config.eval.num_images = 16
  return config
