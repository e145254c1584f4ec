"""Convolutional VAE on Fashion-MNIST, Bernoulli likelihood on grey levels in [0, 1].

Command (needs fashion_mnist prepared for tfds in --config.data.data_dir, see README):

  python -m experiments.train --config=configs/fashion_mnist.py --workdir=runs/fashion_mnist

Grey levels are kept continuous (no binarisation), so the Bernoulli "log-likelihood" is
a negative cross-entropy, comparable between runs but not a density. Like mnist_conv,
hours on 2 CPU cores for 30,000 steps: meant for an accelerator.
"""

from vae.configs import mnist_conv


def get_config():
  config = mnist_conv.get_config()
  config.data.name = "fashion_mnist"
  config.data.binarize = "none"
  return config
