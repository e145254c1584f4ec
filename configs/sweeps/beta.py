"""Beta sweep of the default VAE: the rate-distortion trade-off and the bound gap.

Command (offline, embedded data; all 7 points train together in one vmapped program):

  python -m experiments.sweep --sweep=configs/sweeps/beta.py --workdir=runs/beta

Writes runs/beta/<point>/ per point, summary.csv, summary.md and rate_distortion.png.
Expected on 2 CPU cores: about 8 minutes. Larger beta gives a lower rate (KL) and a worse
reconstruction; the beta = 1 ELBO and log p̂(x) are best near beta = 1.
"""

from vae import sweeps
from vae.configs.sweeps.base import get_config  # noqa: F401  (the sweep's base config)


def get_sweep():
  return sweeps.axis("loss.beta", [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
