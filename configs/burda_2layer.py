"""Burda et al. (2016), two stochastic layers on MNIST: 784-[200-200]-100-[100-100]-50, tanh.

q(z1|x) q(z2|z1) and p(z2) p(z1|z2) p(x|z1): the encoder's MLP 784-200-200 gives q(z1|x)
over 100 latents, an MLP 100-100-100 gives q(z2|z1) over 50, and the generative side
mirrors it (p(z1|z2) from 50-100-100, p(x|z1) from 100-200-200-784), every hidden layer
tanh; Bernoulli pixels, dynamic binarisation, as configs/mnist_mlp.py for one layer.

Command (needs MNIST prepared for tfds in --config.data.data_dir, see README "Data"):

  python -m experiments.train --config=configs/burda_2layer.py --workdir=runs/burda_2layer

A quick offline run on the embedded 5,000 digits (about 2 minutes on 2 CPU cores):

  python -m experiments.train --config=configs/burda_2layer.py \
      --config.data.name=embedded_mnist --config.train.num_steps=6000 \
      --workdir=runs/burda_2layer_embedded

Burda et al. report a test log p(x) of -85.33 nats (VAE) and -82.90 (IWAE, k = 50) for
this model after 3,280 epochs, against -86.76 and -84.78 with one stochastic layer. The
logged metrics add the KL (`kl_z1`, `kl_z2`) and active units of each layer.
"""

from vae.configs import mnist_mlp


def get_config():
  config = mnist_mlp.get_config()
  config.model.hidden_sizes = (200, 200)
  config.model.latent_dim = 100
  config.model.upper_latent_dims = (50,)
  config.model.upper_hidden_sizes = (100, 100)
  return config
