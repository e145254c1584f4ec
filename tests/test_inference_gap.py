"""vae/inference_gap.py against the linear-Gaussian model, whose gaps are known exactly.

For the best diagonal Gaussian q* of that model (posterior mean, variances 1 / Lambda_ii,
Lambda the posterior precision), log p(x) - ELBO[q*] = 0.5 (sum log Lambda_ii - log
|Lambda|) for every x, and ELBO[q*] - ELBO[q] is closed-form for any diagonal q. Float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linear_gaussian import TopDownLinearGaussian, fixed_encoder, make_model, mc_mean

from vae.kernels import inference_gap, posteriors


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def decompose(model, xs, encode, seed=0, **kwargs):
  """decompose_gap_batch on examples xs (B, 6) with the exact log p(x), jitted."""
  log_px = np.array([model.log_px(x) for x in xs])
  fn = jax.jit(lambda key, xs, log_px: inference_gap.decompose_gap_batch(
      key, xs, encode, model.decode, log_px, likelihood="gaussian", **kwargs))
  return fn(jax.random.PRNGKey(seed), xs, log_px)


def observations(model, num, seed=1):
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(num, model.w.shape[1]))
  return z @ model.w.T + model.b + rng.normal(size=(num, len(model.b))) * 0.5


def test_approximation_gap_is_the_analytic_gap_of_the_best_diagonal_q():
  model, _ = make_model(orthogonal=False)  # correlated posterior: a gap of 0.62 nats
  xs = observations(model, 8)
  # An encoder that is off for every x: the same q whatever x is.
  encode = fixed_encoder(np.array([0.5, 0.0, -0.3]), np.array([0.1, 0.4, 0.3]))
  result = decompose(model, xs, encode, num_elbo_samples=20000)
  analytic = model.best_diagonal_gap()
  assert analytic > 0.5
  gap, se = mc_mean(result.approximation_gap)
  assert abs(gap - analytic) < 4 * se + 0.01, (gap, se, analytic)
  amortization_errors = []
  for i, x in enumerate(xs):
    best_mean, best_var = model.best_diagonal(x)
    # q* is within 0.02 nats of the best ELBO, exactly computed (the ELBO is flat near
    # its maximum, so the parameters are only roughly the best ones).
    assert model.elbo(x, best_mean, best_var) - model.elbo(
        x, result.mean[i], np.exp(result.logvar[i])) < 0.02
    np.testing.assert_allclose(result.mean[i], best_mean, atol=0.1)
    np.testing.assert_allclose(np.exp(result.logvar[i]), best_var, rtol=0.5)
    amortization = model.elbo(x, best_mean, best_var) - model.elbo(
        x, *(np.asarray(a) for a in (encode(x)[0], np.exp(encode(x)[1]))))
    amortization_errors.append(result.amortization_gap[i] - amortization)
  error, se = mc_mean(amortization_errors)  # Monte Carlo errors of ELBO[q_enc], mostly
  assert abs(error) < 4 * se + 0.02, (error, se, result.amortization_gap)
  assert np.all(result.amortization_gap > 1.0)
  np.testing.assert_allclose(result.total_gap,
                             result.approximation_gap + result.amortization_gap, rtol=1e-12)
  np.testing.assert_allclose(result.total_gap, result.log_px - result.elbo_encoder, rtol=1e-12)
  assert np.all(result.num_steps > 0) and np.all(result.num_steps % 50 == 0)


def test_amortization_gap_is_zero_when_the_encoder_is_optimal():
  model, x = make_model(orthogonal=False)
  encode = fixed_encoder(*model.best_diagonal(x))
  result = decompose(model, x[None], encode, num_elbo_samples=20000, patience=2,
                     check_every=50)
  assert abs(float(result.amortization_gap[0])) < 0.01, result.amortization_gap
  # Started at the optimum, no check improves on it: it stops after `patience` checks.
  assert int(result.num_steps[0]) == 100
  np.testing.assert_allclose(result.approximation_gap[0], model.best_diagonal_gap(), atol=0.05)


def test_both_gaps_vanish_when_the_posterior_is_diagonal_and_the_encoder_exact():
  model, x = make_model(orthogonal=True)  # diagonal posterior, in the family of q
  post_mean, post_cov = model.posterior(x)
  assert model.best_diagonal_gap() == pytest.approx(0.0, abs=1e-12)
  result = decompose(model, x[None], fixed_encoder(post_mean, np.diag(post_cov)),
                     num_elbo_samples=100)
  # With q the exact posterior, log p(x, z) - log q(z) = log p(x) for every sample.
  np.testing.assert_allclose(result.approximation_gap, 0.0, atol=1e-9)
  np.testing.assert_allclose(result.amortization_gap, 0.0, atol=1e-9)


def test_stops_at_max_steps():
  model, x = make_model(orthogonal=False)
  encode = fixed_encoder(np.zeros(3), np.ones(3))
  result = decompose(model, x[None], encode, max_steps=40, check_every=20, tolerance=0.0,
                     num_samples=10, num_elbo_samples=50)
  assert int(result.num_steps[0]) == 40
  with pytest.raises(ValueError, match="patience"):
    inference_gap.optimal_gaussian(jax.random.PRNGKey(0), x, model.decode, jnp.zeros(3),
                                   jnp.zeros(3), likelihood="gaussian", patience=0)


def test_q_star_in_the_full_covariance_family_closes_the_approximation_gap():
  """The full-covariance family contains the correlated posterior: its q*'s gap is ~0,
  while the diagonal q*'s is the closed-form gap, from the same poor encoder."""
  model, _ = make_model(orthogonal=False)
  xs = observations(model, 4)
  start = (jnp.array([0.5, 0.0, -0.3]), jnp.log(jnp.array([0.1, 0.4, 0.3])), jnp.zeros(3))
  build = lambda raw: posteriors.FullCovarianceGaussian(raw[0], posteriors.scale_tril(
      raw[1], raw[2]))
  encode = lambda x: build(start)
  log_px = np.array([model.log_px(x) for x in xs])
  result = jax.jit(jax.vmap(lambda k, x, lp: inference_gap.decompose_gap(
      k, x, encode, model.decode, lp, likelihood="gaussian", num_elbo_samples=20000,
      tolerance=1e-3, max_steps=4000,
      family=inference_gap.Family(start, build))))(
          jax.random.split(jax.random.PRNGKey(3), 4), xs, log_px)
  np.testing.assert_allclose(result.approximation_gap_family, 0.0, atol=0.01)
  gap, se = mc_mean(result.approximation_gap)
  assert abs(gap - model.best_diagonal_gap()) < 4 * se + 0.01, (gap, se)
  assert np.all(result.amortization_gap_family > result.amortization_gap)
  np.testing.assert_allclose(result.approximation_gap_family + result.amortization_gap_family,
                             result.total_gap, rtol=1e-12)


def test_without_a_family_its_fields_are_the_diagonal_q_stars():
  model, x = make_model(orthogonal=False)
  result = decompose(model, x[None], fixed_encoder(np.zeros(3), np.ones(3)),
                     num_elbo_samples=100, max_steps=100)
  np.testing.assert_array_equal(result.elbo_family, result.elbo_optimal)
  np.testing.assert_array_equal(result.num_steps_family, result.num_steps)


def test_q_star_in_a_top_down_family_closes_the_gap_of_the_two_layer_oracle():
  """The two-layer top-down oracle's posterior p(z2|x) p(z1|x, z2) is Gaussian with a
  linear conditional: q(z2) q(z1|z2) of full-covariance layers and a linear conditional
  mean, fitted from a poor start (shifted, too broad, half the gain), closes the gap
  (~0), while the mean-field diagonal q* leaves the closed-form gap 0.5 (sum log
  Lambda_ii - log |Lambda|) of the joint posterior precision Lambda, up to the Monte
  Carlo error of its ELBO. At most 16,384 samples: past that, jaxlib 0.10.2 on CPU
  miscompiles this oracle's small matrix products under jit (jax-ml/jax#39103)."""
  oracle = TopDownLinearGaussian()
  d1, d2 = oracle.sizes
  _, cov = oracle.exact_posterior()
  precision = np.linalg.inv(cov)
  mean_field_gap = 0.5 * (np.sum(np.log(np.diag(precision)))
                          - np.linalg.slogdet(precision)[1])

  def build(p):
    top_mean, top_logvar, top_lower, offset, gain, logvar, lower = p
    below = lambda z2: posteriors.FullCovarianceGaussian(
        offset + gain @ z2, posteriors.scale_tril(logvar, lower))
    return posteriors.Hierarchical(
        posteriors.FullCovarianceGaussian(top_mean, posteriors.scale_tril(top_logvar,
                                                                          top_lower)),
        (below,), (below,), oracle.sizes, top_down=True)

  def cholesky_parameters(covariance):
    factor = np.linalg.cholesky(covariance)
    return np.log(np.diag(factor)) * 2, factor[np.tril_indices(len(factor), -1)]

  mean, _ = oracle.exact_posterior()  # the start: shifted, half the gain, too broad
  gain = cov[:d1, d1:] @ np.linalg.inv(cov[d1:, d1:])
  start = tuple(jnp.asarray(a) for a in (
      mean[d1:] + 0.3, *cholesky_parameters(cov[d1:, d1:] * 1.5),
      mean[:d1] - gain @ mean[d1:], gain * 0.5,
      *cholesky_parameters((cov[:d1, :d1] - gain @ cov[d1:, :d1]) * 1.5)))
  result = jax.jit(lambda key: inference_gap.decompose_gap(
      key, jnp.asarray(oracle.x), lambda _: build(start), oracle.decode, oracle.log_px(),
      likelihood="gaussian", prior=oracle.prior(), num_elbo_samples=16000, tolerance=1e-3,
      patience=5, max_steps=4000, num_samples=1000,
      family=inference_gap.Family(start, build)))(
          jax.random.PRNGKey(5))
  assert abs(float(result.approximation_gap_family)) < 0.01
  assert float(result.approximation_gap) == pytest.approx(mean_field_gap, abs=0.05)
  assert mean_field_gap > 0.1  # the oracle's layers are correlated: the two fits differ
  assert float(result.amortization_gap_family) > float(result.amortization_gap) > 0
