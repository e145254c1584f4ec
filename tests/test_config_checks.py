"""Every bad config value stops with one clear ValueError naming the field, before tracing."""

import math

import numpy as np
import pytest

from vae import data
from vae.config import checks as config_checks
from vae.configs import tiny


def config_with(**overrides):
  config = tiny.get_config()
  for dotted, value in overrides.items():
    section, field = dotted.split("__")
    config[section][field] = value
  return config


@pytest.mark.parametrize("overrides, message", [
    (dict(model__architecture="resnet"), r"model.architecture='resnet'.*\['conv', 'mlp'\]"),
    (dict(model__likelihood="poisson"), r"model.likelihood='poisson'.*'bernoulli', 'gaussian'"),
    (dict(model__activation="sigmoidal"), r"model.activation='sigmoidal'.*'relu'"),
    (dict(model__decoder_bias_init="mean"), r"model.decoder_bias_init='mean'.*'data_mean'"),
    (dict(model__prior="vamp", model__pseudo_inputs="hardtanh"),
     r"model.pseudo_inputs='hardtanh'.*'clipped', 'sigmoid'"),
    (dict(data__name="imagenet"), r"config.data.name.*imagenet.*embedded_mnist"),
    (dict(model__latent_dim=0), r"model.latent_dim=0.*integer >= 1"),
    (dict(model__latent_dim=-3), r"model.latent_dim=-3"),
    (dict(model__hidden_sizes=(32, 0)), r"model.hidden_sizes"),
    (dict(loss__beta=-0.5), r"loss.beta=-0.5.*finite number >= 0"),
    (dict(loss__beta=math.inf), r"loss.beta=inf"),
    (dict(loss__objective="vampprior"), r"loss.objective='vampprior'.*'elbo', 'iwae'"),
    (dict(loss__objective="iwae", loss__beta=2.0), r"loss.beta=2.0.*'iwae'"),
    (dict(loss__objective="miwae", loss__kl_warmup_steps=100),
     r"loss.kl_warmup_steps=100.*0 with the 'miwae' objective.*kl_warmup_steps=0"),
    (dict(loss__num_samples=0), r"loss.num_samples=0"),
    (dict(loss__free_bits=-0.1), r"loss.free_bits=-0.1.*finite number >= 0"),
    (dict(loss__free_bits=0.5, loss__objective="iwae"), r"loss.free_bits=0.5.*'iwae'"),
    (dict(loss__free_bits=0.5, model__posterior="full_covariance"),
     r"loss.free_bits=0.5.*factorise.*model.posterior='diagonal'"),
    (dict(loss__free_bits=0.5, loss__analytic_kl=False), r"loss.analytic_kl=False.*free bits"),
    (dict(eval__mi_num_examples=-2), r"eval.mi_num_examples=-2.*integer >= -1"),
    (dict(train__batch_size=0), r"train.batch_size=0.*integer >= 1"),
    (dict(train__batch_size=-8), r"train.batch_size=-8"),
    (dict(train__num_steps=0), r"train.num_steps=0"),
    (dict(optimizer__learning_rate=math.nan), r"optimizer.learning_rate=nan.*finite"),
    (dict(optimizer__learning_rate=math.inf), r"optimizer.learning_rate=inf"),
    (dict(optimizer__learning_rate=0.0), r"optimizer.learning_rate=0.0"),
    (dict(optimizer__schedule="linear"), r"optimizer.schedule='linear'.*'constant', 'cosine'"),
    (dict(optimizer__grad_clip_norm=-1.0), r"optimizer.grad_clip_norm=-1.0"),
    (dict(optimizer__schedule="piecewise", optimizer__decay_boundaries=(20, 10)),
     r"optimizer.decay_boundaries=\(20, 10\).*strictly increasing"),
    (dict(optimizer__schedule="piecewise", optimizer__decay_boundaries=(0,)),
     r"optimizer.decay_boundaries=\(0,\).*integers >= 1"),
    (dict(optimizer__schedule="piecewise", optimizer__decay_factor=0.0),
     r"optimizer.decay_factor=0.0.*> 0"),
    (dict(optimizer__adam_eps=-1e-8), r"optimizer.adam_eps=-1e-08.*> 0"),
    (dict(train__log_every=7), r"train.log_every=7.*multiple of config.train.steps_per_dispatch"),
    (dict(train__num_steps=22), r"train.num_steps=22.*Use 20"),
    (dict(eval__num_importance_samples=0), r"eval.num_importance_samples=0"),
    (dict(eval__splits=("test", "holdout")), r"eval.splits.*'train', 'validation', 'test'"),
    (dict(model__likelihood="gaussian"), r"model.likelihood='gaussian'.*binary pixels.*'bernoulli'"),
    (dict(model__architecture="conv", model__conv_features=(4, 4, 4, 4)),
     r"image height and width must divide by 16.*8x8"),
])
def test_bad_values_raise_one_clear_error(overrides, message):
  with pytest.raises(ValueError, match=message):
    config_checks.check_config(config_with(**overrides))


def test_tiny_config_passes_and_describes_its_data():
  info = config_checks.check_config(tiny.get_config())
  assert info == data.DatasetInfo("embedded_digits", (8, 8, 1), "binary")


def test_bernoulli_does_not_fit_colour_values(tmp_path):
  cifar = data.DatasetInfo("cifar10", (32, 32, 3), "color")
  with pytest.raises(ValueError, match=r"likelihood='bernoulli'.*colour values.*'gaussian'"):
    config_checks.check_model(tiny.get_config(), cifar)
  path = tmp_path / "colour.npz"
  rng = np.random.default_rng(0)
  np.savez(path, train=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
           test=rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8))
  config = config_with(data__name="npz", data__path=str(path), data__binarize="none",
                       data__validation_size=10)
  with pytest.raises(ValueError, match=r"likelihood='bernoulli'.*colour"):
    config_checks.check_config(config)
  config.model.likelihood = "gaussian"
  assert config_checks.check_config(config).kind == "color"
