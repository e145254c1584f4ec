"""Beta x seed sweep: how much of the beta effect survives seed noise (12 points).

Command (offline, embedded data; all points train together in one vmapped program):

  python -m experiments.sweep --sweep=configs/sweeps/beta_x_seed.py --workdir=runs/beta_x_seed

Expected on 2 CPU cores: about 14 minutes. summary.md lists every (beta, seed) point.
"""

from vae import sweeps
from vae.configs.sweeps.base import get_config  # noqa: F401  (the sweep's base config)


def get_sweep():
  return sweeps.product(sweeps.axis("loss.beta", [0.5, 1.0, 2.0, 4.0]),
                        sweeps.axis("seed", [0, 1, 2]))
