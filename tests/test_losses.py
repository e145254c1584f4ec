"""Kernels of vae/kernels.py against exact oracles, properties, gradients and transforms.

The oracle is probabilistic PCA, z ~ N(0, I_D), x | z ~ N(W z + b, s2 I), for which
log p(x) = log N(x; b, W W^T + s2 I) and p(z|x) = N(M^-1 W^T (x - b), s2 M^-1) with
M = W^T W + s2 I, all in closed form. Tests run in float64 so tolerances reflect Monte
Carlo error, not rounding.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from linear_gaussian import fixed_encoder, make_model, mc_mean

from vae import kernels


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


# ------------------------------------------------------------------ closed-form KL values


@pytest.mark.parametrize(
    "mean, var, expected",
    [
        ([1.0], [1.0], 0.5),
        ([0.0], [4.0], 0.5 * (3 - math.log(4))),
        ([1.0, 2.0], [0.5, 2.0], 2.75),
        ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], 0.0),
    ],
)
def test_gaussian_kl_exact_values(mean, var, expected):
  kl = kernels.gaussian_kl(jnp.array(mean), jnp.log(jnp.array(var)))
  np.testing.assert_allclose(kl, expected, rtol=1e-12, atol=1e-15)


def test_gaussian_kl_pair_matches_standard_prior_and_closed_form():
  rng = np.random.default_rng(1)
  mean, logvar = rng.normal(size=5), rng.normal(size=5)
  zeros = np.zeros(5)
  np.testing.assert_allclose(
      kernels.gaussian_kl_pair(mean, logvar, zeros, zeros),
      kernels.gaussian_kl(mean, logvar), rtol=1e-12)
  mean_p, logvar_p = rng.normal(size=5), rng.normal(size=5)
  var_q, var_p = np.exp(logvar), np.exp(logvar_p)
  expected = 0.5 * np.sum(np.log(var_p / var_q) + (var_q + (mean - mean_p) ** 2) / var_p - 1)
  np.testing.assert_allclose(
      kernels.gaussian_kl_pair(mean, logvar, mean_p, logvar_p), expected, rtol=1e-12)


def test_gaussian_kl_nonnegative_and_zero_only_at_prior():
  rng = np.random.default_rng(2)
  mean, logvar = rng.normal(size=(500, 4)) * 2, rng.normal(size=(500, 4)) * 2
  kl = jax.vmap(kernels.gaussian_kl)(mean, logvar)
  assert np.all(kl > 0)
  kl_pair = jax.vmap(kernels.gaussian_kl_pair)(mean, logvar, mean[::-1], logvar[::-1])
  assert np.all(kl_pair >= 0)
  assert kernels.gaussian_kl(np.zeros(4), np.zeros(4)) == 0.0
  assert kernels.gaussian_kl(np.array([1e-4, 0, 0, 0]), np.zeros(4)) > 0


def test_log_densities_match_scipy_free_formulas():
  x = np.array([0.0, 1.0, 1.0, 0.0])
  logits = np.array([-2.0, 0.5, 3.0, 1.0])
  p = 1 / (1 + np.exp(-logits))
  expected = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p))
  np.testing.assert_allclose(kernels.bernoulli_log_likelihood(x, logits), expected, rtol=1e-12)
  mean, var = np.array([0.5, -1.0, 0.0, 2.0]), np.array([0.5, 2.0, 1.0, 0.1])
  expected = np.sum(-0.5 * np.log(2 * np.pi * var) - (x - mean) ** 2 / (2 * var))
  np.testing.assert_allclose(
      kernels.gaussian_log_likelihood(x, mean, np.log(var)), expected, rtol=1e-12)
  np.testing.assert_allclose(
      kernels.gaussian_log_prob(x, mean, np.log(var)), expected, rtol=1e-12)


def test_gaussian_log_likelihood_broadcasts_a_shared_variance():
  x = np.arange(6.0).reshape(2, 3)
  shared = kernels.gaussian_log_likelihood(x, np.zeros((2, 3)), np.array(0.3))
  full = kernels.gaussian_log_likelihood(x, np.zeros((2, 3)), np.full((2, 3), 0.3))
  np.testing.assert_allclose(shared, full, rtol=1e-12)


# ------------------------------------------------------------------ numerical range


def test_finite_and_exact_at_extremes_float32():
  with jax.enable_x64(False):
    logits = jnp.array([-1e4, -30.0, 0.0, 30.0, 1e4], jnp.float32)
    for x_value in (0.0, 0.3, 1.0):
      x = jnp.full(5, x_value, jnp.float32)
      ll = kernels.bernoulli_log_likelihood(x, logits)
      assert jnp.isfinite(ll)
      grad = jax.grad(kernels.bernoulli_log_likelihood, argnums=1)(x, logits)
      assert jnp.all(jnp.isfinite(grad))
    # Confident and right costs ~0 nats, confident and wrong costs |logit| nats.
    np.testing.assert_allclose(
        kernels.bernoulli_log_likelihood(jnp.array([1.0, 0.0]), jnp.array([1e4, -1e4])), 0.0)
    np.testing.assert_allclose(
        kernels.bernoulli_log_likelihood(jnp.array([0.0]), jnp.array([1e4])), -1e4, rtol=1e-6)
    logvar = jnp.linspace(-30.0, 30.0, 7, dtype=jnp.float32)
    mean = jnp.linspace(-3.0, 3.0, 7, dtype=jnp.float32)
    for value in (
        kernels.gaussian_kl(mean, logvar),
        kernels.gaussian_kl_pair(mean, logvar, -mean, logvar[::-1]),
        kernels.gaussian_log_likelihood(mean + 1.0, mean, logvar),
        *jax.grad(kernels.gaussian_kl, argnums=(0, 1))(mean, logvar),
        *jax.grad(kernels.gaussian_log_likelihood, argnums=(1, 2))(mean + 1.0, mean, logvar),
    ):
      assert jnp.all(jnp.isfinite(value)), value


def test_unknown_likelihood_names_the_valid_ones():
  with pytest.raises(ValueError, match="bernoulli"):
    kernels.get_log_likelihood("poisson")


# ------------------------------------------------------------------ the linear-Gaussian oracle


def test_elbo_matches_closed_form_within_mc_error():
  model, x = make_model(orthogonal=False)
  q_mean, q_var = np.array([0.3, -0.2, 0.5]), np.array([0.2, 0.4, 0.3])
  keys = jax.random.split(jax.random.PRNGKey(0), 4000)
  for analytic_kl in (True, False):
    terms = jax.vmap(
        lambda k: kernels.elbo(k, x, fixed_encoder(q_mean, q_var), model.decode,
                              likelihood="gaussian", analytic_kl=analytic_kl))(keys)
    mean, se = mc_mean(terms.elbo)
    assert abs(mean - model.elbo(x, q_mean, q_var)) < 4 * se, (mean, se)
  # log p(x) - ELBO is exactly KL(q || p(z|x)): the seeds' identity.
  np.testing.assert_allclose(
      model.log_px(x) - model.elbo(x, q_mean, q_var),
      model.kl_to_posterior(x, q_mean, q_var), rtol=1e-10)


def test_elbo_reports_beta_weighted_objective_and_beta_one_bound():
  model, x = make_model(orthogonal=False)
  encode = fixed_encoder([0.3, -0.2, 0.5], [0.2, 0.4, 0.3])
  key = jax.random.PRNGKey(3)
  terms = kernels.elbo(key, x, encode, model.decode, beta=4.0, likelihood="gaussian")
  np.testing.assert_allclose(terms.objective, terms.reconstruction - 4.0 * terms.kl,
                             rtol=1e-12)
  np.testing.assert_allclose(terms.elbo, terms.reconstruction - terms.kl, rtol=1e-12)
  beta_one = kernels.elbo(key, x, encode, model.decode, likelihood="gaussian")
  np.testing.assert_allclose(beta_one.objective, terms.elbo, rtol=1e-12)


def test_iwae_equals_log_px_for_every_k_when_q_is_the_exact_posterior():
  model, x = make_model(orthogonal=True)
  post_mean, post_cov = model.posterior(x)
  assert np.allclose(post_cov, np.diag(np.diag(post_cov)))  # orthogonal W: diagonal posterior
  encode = fixed_encoder(post_mean, np.diag(post_cov))
  for k in (1, 2, 17, 100):
    iwae = kernels.iwae_bound(jax.random.PRNGKey(k), x, encode, model.decode,
                             num_samples=k, likelihood="gaussian")
    np.testing.assert_allclose(iwae, model.log_px(x), rtol=1e-10)
  gap = kernels.bound_gap(jax.random.PRNGKey(0), x, encode, model.decode,
                         num_samples=10, likelihood="gaussian")
  np.testing.assert_allclose(gap.gap, 0.0, atol=1e-9)


def test_iwae_rises_with_k_toward_log_px_and_never_exceeds_it():
  model, x = make_model(orthogonal=False)
  post_mean, post_cov = model.posterior(x)
  encode = fixed_encoder(post_mean + 0.3, np.diag(post_cov) * 2.0)  # a poor diagonal q
  log_px = model.log_px(x)
  keys = jax.random.split(jax.random.PRNGKey(1), 1000)
  estimates = []
  for k in (1, 10, 100, 1000):
    values = jax.vmap(lambda key: kernels.iwae_bound(
        key, x, encode, model.decode, num_samples=k, likelihood="gaussian"))(keys)
    mean, se = mc_mean(values)
    assert mean <= log_px + 3 * se, (k, mean, se, log_px)
    estimates.append(mean)
  assert all(a < b for a, b in zip(estimates, estimates[1:])), estimates
  assert log_px - estimates[-1] < 0.1 * (log_px - estimates[0]), estimates


def test_bound_gap_estimates_kl_to_the_exact_posterior():
  model, x = make_model(orthogonal=False)
  post_mean, post_cov = model.posterior(x)
  q_mean, q_var = post_mean + 0.1, np.diag(post_cov) * 1.2
  encode = fixed_encoder(q_mean, q_var)
  true_gap = model.kl_to_posterior(x, q_mean, q_var)
  keys = jax.random.split(jax.random.PRNGKey(2), 20)
  result = jax.vmap(lambda key: kernels.bound_gap(
      key, x, encode, model.decode, num_samples=5000, likelihood="gaussian",
      chunk_size=1000))(keys)
  assert np.all(result.gap >= 0)
  np.testing.assert_allclose(result.log_px - result.elbo, result.gap, rtol=1e-12)
  gap, se = mc_mean(result.gap)
  # From below, by log p(x) - IWAE_K, which at K = 5000 is a small fraction of the gap.
  assert true_gap - 0.05 * true_gap - 4 * se < gap < true_gap + 4 * se, (gap, se, true_gap)
  elbo, se = mc_mean(result.elbo)
  assert abs(elbo - model.elbo(x, q_mean, q_var)) < 4 * se


# ------------------------------------------------------------------ chunking, transforms, gradients


def test_chunked_iwae_equals_unchunked():
  model, x = make_model(orthogonal=False)
  encode = fixed_encoder([0.1, 0.2, -0.1], [0.5, 0.5, 0.5])
  key = jax.random.PRNGKey(7)
  full = kernels.bound_gap(key, x, encode, model.decode, num_samples=100, likelihood="gaussian")
  for chunk in (1, 7, 32, 100, 500):
    chunked = kernels.bound_gap(key, x, encode, model.decode, num_samples=100,
                               likelihood="gaussian", chunk_size=chunk)
    for a, b in zip(full, chunked):
      np.testing.assert_allclose(a, b, rtol=1e-12)


def tiny_bernoulli_model(params):
  """A one-layer encoder/decoder on 4-pixel binary images, as plain functions."""
  w_enc, w_dec = params

  def encode(x):
    h = w_enc @ x.reshape(-1)
    return h[:2], h[2:] * 0.1

  def decode(z):
    return (w_dec @ z).reshape(2, 2)

  return encode, decode


def tiny_params(seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(4, 4)) * 0.5, rng.normal(size=(4, 2))


X_TINY = np.array([[1.0, 0.0], [1.0, 1.0]])


def test_jit_equals_eager_and_vmap_equals_loop():
  encode, decode = tiny_bernoulli_model(tiny_params())
  key = jax.random.PRNGKey(0)
  for fn, kwargs in ((kernels.elbo, dict(num_samples=3)),
                     (kernels.iwae_bound, dict(num_samples=9, chunk_size=4)),
                     (kernels.bound_gap, dict(num_samples=9))):
    eager = fn(key, X_TINY, encode, decode, **kwargs)
    jitted = jax.jit(lambda k, x: fn(k, x, encode, decode, **kwargs))(key, X_TINY)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), eager, jitted)
  xs = np.stack([X_TINY, 1 - X_TINY, X_TINY.T])
  batch = kernels.elbo_batch(key, xs, encode, decode, num_samples=2)
  keys = jax.random.split(key, 3)
  for i in range(3):
    one = kernels.elbo(keys[i], xs[i], encode, decode, num_samples=2)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-12), batch, one)
  for batched, single, args in (
      (jax.vmap(kernels.gaussian_kl), kernels.gaussian_kl, (xs[:, 0], xs[:, 1])),
      (jax.vmap(kernels.bernoulli_log_likelihood), kernels.bernoulli_log_likelihood,
       (xs, xs - 0.5)),
  ):
    np.testing.assert_allclose(batched(*args), [single(*(a[i] for a in args)) for i in range(3)])
  assert kernels.iwae_bound_batch(key, xs, encode, decode, num_samples=4).shape == (3,)
  assert kernels.bound_gap_batch(key, xs, encode, decode, num_samples=4).gap.shape == (3,)


def test_bernoulli_derivatives_match_autodiff_of_the_softplus_form():
  """The custom JVP (one exp(-|l|) shared by the value and the derivative) against plain
  autodiff of sum(x * l - softplus(l)): first and second derivatives in the logits and
  in x, including l = 0 exactly, where one-sided branches keep them exact."""
  logits = np.concatenate([np.linspace(-20.0, 20.0, 41), [0.0, 1e-3, -1e-3]])
  x = np.random.default_rng(0).random(logits.shape)
  reference = lambda x, l: jnp.sum(x * l - jax.nn.softplus(l))  # noqa: E731
  for argnums in (0, 1):
    np.testing.assert_allclose(
        jax.grad(kernels.bernoulli_log_likelihood, argnums)(x, logits),
        jax.grad(reference, argnums)(x, logits), rtol=1e-12, atol=1e-15)
  hessian = jax.hessian(kernels.bernoulli_log_likelihood, argnums=(0, 1))(x, logits)
  expected = jax.hessian(reference, argnums=(0, 1))(x, logits)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-15),
               hessian, expected)
  tail = np.exp(-np.abs(logits))  # d^2/dl^2 = -sigmoid(l) sigmoid(-l), without cancellation
  np.testing.assert_allclose(np.diag(hessian[1][1]), -tail / (1 + tail) ** 2, rtol=1e-12)
  check_grads(kernels.bernoulli_log_likelihood, (x[-5:], logits[-5:]), order=3)


def test_gradients_match_finite_differences():
  rng = np.random.default_rng(0)
  mean, logvar = rng.normal(size=3), rng.normal(size=3)
  check_grads(kernels.gaussian_kl, (mean, logvar), order=2)
  check_grads(kernels.gaussian_kl_pair, (mean, logvar, -mean, logvar + 0.5), order=2)
  check_grads(kernels.gaussian_log_likelihood, (mean + 1, mean, logvar), order=2)
  check_grads(lambda l: kernels.bernoulli_log_likelihood(np.array([0.0, 0.4, 1.0]), l),
              (mean * 3,), order=2)
  key = jax.random.PRNGKey(0)

  def objective(fn, **kwargs):
    def f(w_enc, w_dec):
      encode, decode = tiny_bernoulli_model((w_enc, w_dec))
      out = fn(key, X_TINY, encode, decode, **kwargs)
      return out if fn is kernels.iwae_bound else out.elbo
    return jax.jit(f)

  params = tiny_params()
  check_grads(objective(kernels.elbo, num_samples=4), params, order=1, modes=["rev"])
  check_grads(objective(kernels.elbo, num_samples=4, analytic_kl=False), params, order=1,
              modes=["rev"])
  check_grads(objective(kernels.iwae_bound, num_samples=7, chunk_size=3), params, order=1,
              modes=["fwd", "rev"])
