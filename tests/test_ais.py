"""vae/ais.py against exact log p(x): the linear-Gaussian model and a quadrature oracle.

Float64, so tolerances reflect Monte Carlo error, not rounding.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linear_gaussian import (TopDownLinearGaussian, TwoLayerLinearGaussian, fixed_encoder, gaussian_log_density,
                             make_model, mc_mean)

from vae import kernels
from vae.kernels import ais, posteriors, priors


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def replicates(key, num, fn):
  """fn(key) for `num` independent keys, jitted and vmapped."""
  return jax.jit(jax.vmap(fn))(jax.random.split(key, num))


def test_schedules_run_from_zero_to_one():
  for betas in (ais.sigmoid_schedule(50), ais.linear_schedule(7), ais.make_schedule("sigmoid", 1)):
    assert betas[0] == 0.0 and betas[-1] == 1.0 and np.all(np.diff(betas) > 0)
  sigmoid = ais.sigmoid_schedule(100)
  assert sigmoid[1] < 0.01 and 1 - sigmoid[-2] < 0.01  # small steps at both ends
  with pytest.raises(ValueError, match="sigmoid"):
    ais.make_schedule("cosine", 10)
  with pytest.raises(ValueError, match="increase"):
    ais.ais_log_normalizer(jax.random.PRNGKey(0), lambda z: -jnp.sum(z**2),
                           posteriors.DiagonalGaussian(jnp.zeros(2), jnp.zeros(2)),
                           betas=np.array([0.0, 0.7, 0.5, 1.0]))


def test_ais_and_iwae_match_the_exact_log_px_of_the_linear_gaussian_model():
  model, x = make_model(orthogonal=False)  # correlated posterior: no diagonal q is exact
  post_mean, post_cov = model.posterior(x)
  encode = fixed_encoder(post_mean + 0.2, np.diag(post_cov) * 1.5)
  log_px = model.log_px(x)
  result = replicates(jax.random.PRNGKey(0), 16, lambda k: ais.ais(
      k, x, encode, model.decode, likelihood="gaussian", num_steps=200, num_chains=16))
  mean, se = mc_mean(result.log_px)
  assert abs(mean - log_px) < 4 * se + 0.01, (mean, se, log_px)
  assert np.all(np.isfinite(result.log_weights))
  # The same check for IWAE at K = 5000, from the same poor q.
  iwae = replicates(jax.random.PRNGKey(1), 16, lambda k: kernels.iwae_bound(
      k, x, encode, model.decode, num_samples=5000, likelihood="gaussian", chunk_size=1000))
  mean, se = mc_mean(iwae)
  assert abs(mean - log_px) < 4 * se + 0.01, (mean, se, log_px)


def test_ais_from_the_encoder_is_exact_on_average_over_a_batch_of_examples():
  model, _ = make_model(orthogonal=False)
  rng = np.random.default_rng(5)
  xs = rng.normal(size=(16, 3)) @ model.w.T + model.b + rng.normal(size=(16, 6)) * 0.5
  # A q that depends on x (so vmap must keep examples apart) and is wrong for each.
  encode = lambda x: (jnp.asarray(np.linalg.pinv(model.w)) @ (x - model.b), -jnp.ones(3))
  result = jax.jit(lambda k, xs: ais.ais_batch(
      k, xs, encode, model.decode, likelihood="gaussian", num_steps=200, num_chains=16,
      start="encoder"))(jax.random.PRNGKey(3), xs)
  assert result.log_px.shape == (16,) and result.step_sizes.shape == (16, 200)
  errors = result.log_px - np.array([model.log_px(x) for x in xs])
  mean, se = mc_mean(errors)
  assert abs(mean) < 4 * se + 0.01, (mean, se, errors)
  assert np.max(np.abs(errors)) < 0.5


def test_ais_is_exact_when_the_base_is_the_posterior():
  model, x = make_model(orthogonal=True)  # diagonal posterior, which the encoder matches
  post_mean, post_cov = model.posterior(x)
  encode = fixed_encoder(post_mean, np.diag(post_cov))
  result = jax.jit(lambda k: ais.ais(k, x, encode, model.decode, likelihood="gaussian",
                                     num_steps=5, num_chains=4, start="encoder"))(
                                         jax.random.PRNGKey(0))
  # log p(x, z) - log q(z) = log p(x) everywhere, so every weight is exact.
  np.testing.assert_allclose(result.log_weights, model.log_px(x), rtol=1e-10)
  np.testing.assert_allclose(result.log_px, model.log_px(x), rtol=1e-10)


def test_step_size_is_adapted_toward_the_target_acceptance():
  model, x = make_model(orthogonal=False)
  encode = fixed_encoder(np.zeros(3), np.ones(3))
  targets = jnp.array([0.65, 0.9])
  result = jax.jit(jax.vmap(lambda target: ais.ais(
      jax.random.PRNGKey(2), x, encode, model.decode, likelihood="gaussian", num_steps=300,
      num_chains=16, target_acceptance=target, initial_step_size=1.0)))(targets)
  np.testing.assert_allclose(result.acceptance_rate, targets, atol=0.08)
  # The prior is wide, the posterior narrow: the step size shrinks along the path, and
  # more so for the higher acceptance target.
  assert np.all(result.step_sizes[:, -1] < result.step_sizes[:, 0])
  assert result.step_sizes[1, -1] < result.step_sizes[0, -1]
  assert result.step_sizes.shape == (2, 300)


def test_ais_matches_quadrature_on_a_non_gaussian_posterior():
  """A 2-D latent with a Bernoulli decoder: log p(x) by numerical integration on a grid."""
  rng = np.random.default_rng(0)
  w = rng.normal(size=(30, 2)) * 3.0
  x = (rng.uniform(size=30) < 0.5).astype(np.float64)
  decode = lambda z: jnp.asarray(w) @ z
  grid = np.linspace(-7.0, 7.0, 701)
  z = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
  logits = z @ w.T
  log_joint = (np.sum(x * logits - np.logaddexp(0.0, logits), axis=1)
               - 0.5 * np.sum(z**2, axis=1) - math.log(2 * math.pi))
  peak = log_joint.max()
  exact = peak + math.log(np.sum(np.exp(log_joint - peak)) * (grid[1] - grid[0]) ** 2)
  encode = lambda _: (jnp.zeros(2), jnp.zeros(2))
  result = replicates(jax.random.PRNGKey(4), 16, lambda k: ais.ais(
      k, x, encode, decode, num_steps=200, num_chains=16))
  mean, se = mc_mean(result.log_px)
  assert abs(mean - exact) < 4 * se + 0.01, (mean, se, exact)


def test_ais_from_a_learned_prior_and_from_two_layers_matches_the_exact_log_px():
  """From a one-component mixture prior N(m, diag(v)) (x ~ N(W m + b, W V W^T + s2 I))
  and from the prior of the two-layer linear-Gaussian models (bottom-up and top-down),
  whose log p(x) is exact."""
  with jax.enable_x64(True):
    model, x = make_model(orthogonal=False)
    mean, var = np.array([0.3, -0.2, 0.1]), np.array([0.5, 1.5, 1.0])
    prior = priors.GaussianMixture(jnp.zeros(1), jnp.asarray(mean)[None],
                                   jnp.log(jnp.asarray(var))[None])
    exact = gaussian_log_density(x, model.w @ mean + model.b,
                                 model.w @ np.diag(var) @ model.w.T + 0.3 * np.eye(6))
    two, top_down = TwoLayerLinearGaussian(), TopDownLinearGaussian()
    for target, log_px, kwargs in (
        (x, exact, dict(encode=fixed_encoder(np.zeros(3), np.ones(3)), decode=model.decode,
                        prior=prior)),
        (two.x, two.log_px(), dict(encode=lambda _: two.posterior(), decode=two.decode,
                                   prior=two.prior())),
        (top_down.x, top_down.log_px(), dict(encode=lambda _: top_down.posterior(),
                                             decode=top_down.decode,
                                             prior=top_down.prior()))):
      result = replicates(jax.random.PRNGKey(5), 16, lambda k, target=target, kwargs=kwargs:
                          ais.ais(k, target, **kwargs, likelihood="gaussian", num_steps=200,
                                  num_chains=16, start="prior"))
      estimate, se = mc_mean(result.log_px)
      assert abs(estimate - log_px) < 4 * se + 0.02, (estimate, se, log_px)
