"""Fashion-MNIST, Tomczak & Welling's protocol: the two-level HVAE (configs/fashion_hvae.py)
with a VampPrior of 500 pseudo-inputs over z2 (configs/fashion_vae_vamp.py).

  python -m experiments.train --config=configs/fashion_hvae_vamp.py --workdir=runs/fashion_hvae_vamp
  python -m experiments.evaluate --workdir=runs/fashion_hvae_vamp --best --split=test

Published (Norouzi et al. 2020): -226.72 +- 0.08. Reached here (seed 0): -226.64 on the
test split, early-stopped at epoch 1010 (best at 960) after about 2.5 h of training alone
on 2 CPU cores (about 60 steps/s). Details: docs/results/fashion_mnist.md.
"""

from vae.configs import fashion_hvae, fashion_vae


def get_config():
  return fashion_vae.with_vampprior(fashion_hvae.get_config())
