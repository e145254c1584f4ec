"""The base every shipped sweep starts from: the default config, trained for 3,000 steps.

Not a sweep itself; `beta.py`, `latent_dim.py` and `beta_x_seed.py` import its get_config.
Run alone it is a shorter default run:

  python -m experiments.train --config=configs/sweeps/base.py --workdir=runs/base
"""

from vae.configs import default


def get_config():
  config = default.get_config()
  config.train.num_steps = 3000
  config.train.eval_every = 1000
  config.train.checkpoint_every = 1000
  return config
