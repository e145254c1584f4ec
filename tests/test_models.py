"""Flax modules built from configs: shapes, parameter counts, jit and vmap over params."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae import kernels, models
from vae.models import autoencoder
from vae.configs import default


def model_config(**overrides):
  config = default.get_config().model
  config.update(overrides)
  return config


ARCHITECTURE_CASES = [
    ("mlp", "bernoulli", (28, 28, 1)),
    ("mlp", "gaussian", (8, 8, 3)),
    ("conv", "bernoulli", (28, 28, 1)),
    ("conv", "gaussian", (32, 32, 3)),
]


@pytest.mark.parametrize("architecture, likelihood, image_shape", ARCHITECTURE_CASES)
def test_shapes_per_example_and_batched(architecture, likelihood, image_shape):
  cfg = model_config(architecture=architecture, likelihood=likelihood, latent_dim=5,
                     hidden_sizes=(16,), conv_features=(4, 8), conv_hidden_size=16)
  model = models.build_model(cfg, image_shape)
  params = model.init(jax.random.PRNGKey(0))
  x = jax.random.uniform(jax.random.PRNGKey(1), (3,) + image_shape)
  mean, logvar = model.encode(params, x)
  assert mean.shape == logvar.shape == (3, 5)
  one_mean, _ = model.encode(params, x[0])
  assert one_mean.shape == (5,)
  np.testing.assert_allclose(one_mean, mean[0], rtol=1e-5, atol=1e-6)
  decoded = model.decode(params, mean)
  for part in (decoded if likelihood == "gaussian" else (decoded,)):
    assert part.shape == (3,) + image_shape
  picture = model.mean_image(params, mean)
  assert picture.shape == (3,) + image_shape
  assert float(picture.min()) >= 0.0 and float(picture.max()) <= 1.0


def test_burda_mlp_parameter_count():
  # 784-200-200-(50+50) encoder and 50-200-200-784 decoder (Burda et al. 2016).
  cfg = model_config(hidden_sizes=(200, 200), latent_dim=50, activation="tanh")
  params = models.build_model(cfg, (28, 28, 1)).init(jax.random.PRNGKey(0))
  encoder = (784 * 200 + 200) + (200 * 200 + 200) + 2 * (200 * 50 + 50)
  decoder = (50 * 200 + 200) + (200 * 200 + 200) + (200 * 784 + 784)
  assert encoder + decoder == 425_284
  assert sum(p.size for p in jax.tree.leaves(params)) == encoder + decoder
  assert sum(p.size for p in jax.tree.leaves(params["encoder"])) == encoder


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_encode_decode_round_trip_under_jit_feeds_the_kernels(architecture):
  cfg = model_config(architecture=architecture, latent_dim=3, hidden_sizes=(16,),
                     conv_features=(4,), conv_hidden_size=8)
  model = models.build_model(cfg, (8, 8, 1))
  params = model.init(jax.random.PRNGKey(0))
  x = (jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 1)) > 0.5).astype(jnp.float32)

  @jax.jit
  def round_trip(params, x):
    return model.decode(params, model.encode(params, x)[0])

  np.testing.assert_allclose(round_trip(params, x),
                             model.decode(params, model.encode(params, x)[0]), rtol=1e-5)

  @jax.jit
  def elbo(params, key, x):
    return kernels.elbo_batch(key, x, *model.bind(params)).elbo

  values = elbo(params, jax.random.PRNGKey(2), x)
  assert values.shape == (4,) and bool(jnp.all(jnp.isfinite(values)))
  assert bool(jnp.all(values < 0))


def test_params_vmap_over_two_seeds():
  model = models.build_model(model_config(hidden_sizes=(8,), latent_dim=2), (8, 8, 1))
  stacked = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(0), 2))
  x = jnp.ones((3, 8, 8, 1)) * 0.5
  means, _ = jax.vmap(model.encode, in_axes=(0, None))(stacked, x)
  assert means.shape == (2, 3, 2)
  for i in range(2):
    single = jax.tree.map(lambda p: p[i], stacked)
    np.testing.assert_allclose(means[i], model.encode(single, x)[0], rtol=1e-5)
  assert not np.allclose(means[0], means[1])


@pytest.mark.parametrize("field, value, message", [
    ("architecture", "resnet", r"architecture='resnet' is invalid.*\['conv', 'mlp'\]"),
    ("likelihood", "poisson", r"likelihood='poisson' is invalid.*\['bernoulli', 'gaussian'\]"),
    ("init", "xavier", r"init='xavier' is invalid.*\['fan_in_uniform', 'he_normal', 'lecun_normal'\]"),
])
def test_unknown_names_list_the_valid_ones(field, value, message):
  with pytest.raises(ValueError, match=message):
    models.build_model(model_config(**{field: value}), (28, 28, 1))


def test_conv_needs_divisible_image_size():
  cfg = model_config(architecture="conv", conv_features=(8, 8, 8))
  with pytest.raises(ValueError, match=r"conv_features.*divide by 8.*28x28"):
    models.build_model(cfg, (28, 28, 1))


@pytest.mark.parametrize("architecture, image_shape", [("mlp", (28, 28, 1)), ("conv", (8, 8, 3))])
def test_fan_in_uniform_draws_every_kernel_and_bias_as_pytorch_does(architecture, image_shape):
  config = model_config(architecture=architecture, init="fan_in_uniform", posterior="iaf",
                        conv_features=(4,), conv_hidden_size=8, hidden_sizes=(32,))
  params = models.build_model(config, image_shape).init(jax.random.PRNGKey(0))
  again = models.build_model(config, image_shape).init(jax.random.PRNGKey(0))
  weight_kernels = {path[:-1]: leaf
                    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
                    if path[-1].key == "kernel"}
  checked = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if path[-1].key not in ("kernel", "bias"):
      continue
    if any(getattr(entry, "key", None) == "extra" for entry in path):
      assert not np.any(leaf), "the family's head starts at zero"  # diagonal Gaussian at 0
      continue
    bound = 1 / np.sqrt(np.prod(weight_kernels[path[:-1]].shape[:-1]))
    assert np.all(np.abs(leaf) <= bound), path
    assert leaf.size < 32 or np.abs(leaf).max() > 0.8 * bound, path  # spread to the bound
    checked += 1
  assert checked >= 8
  jax.tree.map(np.testing.assert_array_equal, params, again)  # deterministic in the key
  flax_default = models.build_model(model_config(architecture=architecture, hidden_sizes=(32,),
                                                 conv_features=(4,), conv_hidden_size=8,
                                                 init="lecun_normal"),
                                    image_shape).init(jax.random.PRNGKey(0))
  assert not np.any(flax_default["encoder"]["Dense_0"]["bias"])  # flax's zero biases


@pytest.mark.parametrize("architecture, likelihood, image_shape", ARCHITECTURE_CASES)
def test_a_data_mean_decoder_bias_starts_p_x_at_the_data_mean(architecture, likelihood,
                                                               image_shape):
  """decoder_bias_init="data_mean": the output layer's bias gives the likelihood's mean
  image at zero hidden activity (a convolution's bias: each channel's mean); "zeros"
  keeps the initialisation's own bias."""
  config = model_config(architecture=architecture, likelihood=likelihood,
                        hidden_sizes=(16,), conv_features=(4,), conv_hidden_size=8,
                        decoder_bias_init="data_mean")
  model = models.build_model(config, image_shape)
  mean = jax.random.uniform(jax.random.PRNGKey(1), image_shape)
  params = model.init(jax.random.PRNGKey(0), mean)
  layer = "Dense_1" if architecture == "mlp" else "Conv_0"
  bias = params["decoder"][layer]["bias"]
  head = models.LIKELIHOOD_HEADS[likelihood]
  if architecture == "conv":  # one bias per channel: the mean over pixels of the raw image
    np.testing.assert_allclose(bias, head.raw_for_mean(mean).mean(axis=(0, 1)), rtol=1e-6)
  else:
    raw = bias.reshape(image_shape[:2] + (image_shape[2] * head.num_params,))
    expected = jnp.clip(mean, 1e-3, 1 - 1e-3) if likelihood == "bernoulli" else mean
    np.testing.assert_allclose(head.mean_image(head.split(raw)), expected, rtol=1e-5,
                               atol=1e-6)
  zeros = models.build_model(model_config(architecture=architecture, likelihood=likelihood,
                                          hidden_sizes=(16,), conv_features=(4,),
                                          conv_hidden_size=8), image_shape)
  untouched = zeros.init(jax.random.PRNGKey(0))
  assert set(jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, untouched,
                                          params))) == {True}
  with pytest.raises(ValueError, match="needs the training images' mean"):
    model.init(jax.random.PRNGKey(0))


def test_clipped_pseudo_inputs_start_near_black_and_learn_at_the_rate():
  """model.pseudo_inputs="clipped": u = clip(v, 0, 1), v ~ N(0.05, 0.01^2) (Tomczak &
  Welling's), so du/dv = 1 inside [0, 1]; "sigmoid" starts every u at 0.5 with du/dv ~ 1/4."""
  image_shape = (4, 4, 1)
  pseudo = {}
  for parametrization in ("clipped", "sigmoid"):
    config = model_config(hidden_sizes=(8,), prior="vamp", prior_components=30,
                          pseudo_inputs=parametrization)
    model = models.build_model(config, image_shape)
    params = model.init(jax.random.PRNGKey(0))
    inputs = lambda v, m=model, p=params: m.module.apply(
        {"params": {**p, "prior": {"pseudo_inputs": v}}}, method=autoencoder.VAE.prior_params)
    raw = params["prior"]["pseudo_inputs"]
    pseudo[parametrization] = inputs(raw)
    slope = jax.grad(lambda v, f=inputs: f(v).sum())(raw)
    np.testing.assert_allclose(slope, 1.0 if parametrization == "clipped" else 0.25, atol=1e-4)
  assert pseudo["clipped"].shape == (30,) + image_shape
  assert 0.0 <= pseudo["clipped"].min() and pseudo["clipped"].max() <= 1.0
  assert abs(float(pseudo["clipped"].mean()) - 0.05) < 0.002
  assert abs(float(pseudo["clipped"].std()) - 0.01) < 0.002
  np.testing.assert_allclose(pseudo["sigmoid"], 0.5, atol=0.01)
