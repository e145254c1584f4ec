"""Fashion-MNIST, Tomczak & Welling's protocol: the two-level HVAE with a Gaussian prior,
q(z2|x) q(z1|x, z2), p(z2) p(z1|z2) p(x|z1, z2), 40 latents a level, every network gated
MLPs of 300 units; otherwise configs/fashion_vae.py.

  python -m experiments.train --config=configs/fashion_hvae.py --workdir=runs/fashion_hvae
  python -m experiments.evaluate --workdir=runs/fashion_hvae --best --split=test

Published (Norouzi et al. 2020): -227.37 +- 0.1. Reached here: -227.24 +- 0.04 on the
test split over seeds 0 and 1 (-227.27: early-stopped at epoch 1010, best at 960, 7.1 h
of training on 2 CPU cores shared with other runs; -227.21: epoch 1115, best at 1065,
1.5 h). Details: docs/results/fashion_mnist.md.
"""

from vae.configs import fashion_vae


def get_config():
  config = fashion_vae.get_config()
  model = config.model
  model.hierarchy, model.upper_latent_dims, model.upper_hidden_sizes = "top_down", (40,), (300, 300)
  return config
