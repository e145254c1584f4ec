"""Free bits against posterior collapse: beta = 8, free_bits in {0, 0.25, 0.5, 1} nats/dim.

Command (offline, embedded data; free_bits is part of the compiled loss, so the points
run one after another):

  python -m experiments.sweep --sweep=configs/sweeps/free_bits.py --workdir=runs/free_bits

At beta = 8 the default VAE switches off 7 of its 16 dimensions (configs/sweeps/beta.py);
free bits (Kingma et al. 2016) leave every dimension its first `free_bits` nats of KL
unpenalised, so the switched-off ones come back. Writes summary.md and
kl_per_dim_heatmap.png; see README, "Posterior collapse".
"""

from vae import sweeps
from vae.configs.sweeps.base import get_config as base_config


def get_config():
  config = base_config()
  config.loss.beta = 8.0
  return config


def get_sweep():
  return sweeps.axis("loss.free_bits", [0.0, 0.25, 0.5, 1.0])
