"""Latent-size sweep of the default VAE: log p̂(x), the bound gap and active units vs D.

Command (offline, embedded data; the points train together in one program, padded to
the largest latent size, `vae.training.padded_latents`; --mode=sequential runs them one
after another, as fast on 2 CPU cores for these 3,000 steps):

  python -m experiments.sweep --sweep=configs/sweeps/latent_dim.py --workdir=runs/latent_dim

Writes summary.csv, summary.md, rate_distortion.png, log_px_and_gap_vs_latent_dim.png and
active_units_vs_latent_dim.png. Expected on 2 CPU cores: about 2 minutes either way. Active units
saturate well below D for large D (posterior collapse of the unused dimensions).
"""

from vae import sweeps
from vae.configs.sweeps.base import get_config  # noqa: F401  (the sweep's base config)


def get_sweep():
  return sweeps.axis("model.latent_dim", [2, 5, 10, 20, 50, 100])
