"""Flax encoders and decoders, built from a config through registries.

`build_model(config.model, image_shape)` checks the config and returns a `Model`: the
VAE's encode, decode and prior as pure functions of an explicit params pytree, the
callables the kernels take (`model.bind(params)`).

Modules, one job each:

  likelihood_heads  decoder outputs -> the parameters of p(x|z) (`LIKELIHOOD_HEADS`);
  initializations   how the params are first drawn (`INITIALIZATIONS`);
  networks          MLP and convolutional encoders and decoders, the layers' Gaussian MLP;
  families          posterior families and priors (`POSTERIORS`, `PRIORS`) and their
                    learned parameters (the IAF's weights, the mixture, the pseudo-inputs);
  autoencoder       the `VAE` Flax module and `Model`, its pure functions (and
                    `with_used_latents`: a run of fewer latents in a padded model);
  build             `ARCHITECTURES`, `check_model_config` and `build_model`.

Adding an architecture, a likelihood, a posterior family or an initialisation is one
entry in its registry.

Floor 1: may import only the kernels (`vae.kernels`), `vae.common`, flax, jax, numpy,
ml_collections and itself; never `vae.data` or the floors above.
"""

from vae.models.autoencoder import Model, with_used_latents
from vae.models.build import ARCHITECTURES, build_model, check_model_config
from vae.models.families import POSTERIORS, PRIORS, PosteriorFamily
from vae.models.initializations import INITIALIZATIONS
from vae.models.likelihood_heads import LIKELIHOOD_HEADS, LikelihoodHead
from vae.models.networks import ACTIVATIONS

__all__ = [
    "ACTIVATIONS", "ARCHITECTURES", "INITIALIZATIONS", "LIKELIHOOD_HEADS", "POSTERIORS",
    "PRIORS", "LikelihoodHead", "Model", "PosteriorFamily", "build_model",
    "check_model_config", "with_used_latents",
]
