"""Fashion-MNIST, Tomczak & Welling's protocol: the VAE with a VampPrior of 500
pseudo-inputs (initialised N(0.05, 0.01^2), kept in [0, 1]); otherwise configs/fashion_vae.py.

  python -m experiments.train --config=configs/fashion_vae_vamp.py --workdir=runs/fashion_vae_vamp
  python -m experiments.evaluate --workdir=runs/fashion_vae_vamp --best --split=test

Published (Norouzi et al. 2020): -227.35 +- 0.05. Reached here: -227.18 +- 0.03 on the
test split over seeds 0 and 1 (-227.20: early-stopped at epoch 1010, best at 960, 2.4 h of
training on 2 CPU cores, shared with another run part of the time; -227.16: epoch 1205,
best at 1155, 3.9 h beside other runs). Details: docs/results/fashion_mnist.md.
"""

from vae.configs import fashion_vae


def get_config():
  return fashion_vae.with_vampprior(fashion_vae.get_config())
