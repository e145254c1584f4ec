"""Collapse diagnostics and free bits (`vae.kernels.collapse`): exact oracles and identities."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linear_gaussian import make_model

from vae import kernels
from vae.kernels import collapse, posteriors, priors


def diagonal(rng, dim):
  return posteriors.DiagonalGaussian(jnp.asarray(rng.normal(size=dim), jnp.float32),
                                     jnp.asarray(rng.normal(size=dim) * 0.5, jnp.float32))


def two_layer(seed=0, sizes=(3, 2)):
  """A two-layer model of diagonal Gaussian layers: encode, prior."""
  rng = np.random.default_rng(seed)
  up, down = (jnp.asarray(rng.normal(size=shape) * 0.5, jnp.float32)
              for shape in ((sizes[1], sizes[0]), (sizes[0], sizes[1])))
  conditional = lambda z1: (up @ z1, jnp.full(sizes[1], -0.5))
  encode = lambda x: posteriors.Hierarchical(
      posteriors.DiagonalGaussian(x[:sizes[0]], x[sizes[0]:]), (conditional,),
      (conditional,), sizes)
  prior = priors.Hierarchical(None, (lambda z2: (down @ z2, jnp.full(sizes[0], -0.3)),), sizes)
  return encode, prior


def test_kl_per_dim_sums_to_the_kl_closed_form_and_monte_carlo():
  rng = np.random.default_rng(0)
  q = diagonal(rng, 5)
  decode = lambda z: jnp.zeros(4)
  key = jax.random.PRNGKey(1)
  per_dim = collapse.kl_per_dim(key, None, lambda x: q)
  assert per_dim.shape == (5,) and bool(jnp.all(per_dim >= 0))
  elbo = kernels.elbo(key, jnp.zeros(4), lambda x: q, decode)
  np.testing.assert_allclose(jnp.sum(per_dim), elbo.kl, rtol=1e-6)
  # A hierarchy: Monte Carlo, on the very samples of the ELBO's KL.
  encode, prior = two_layer()
  x = jnp.asarray(rng.normal(size=6), jnp.float32)
  per_dim = collapse.kl_per_dim(key, x, encode, prior=prior, num_samples=7)
  terms = kernels.elbo(key, x, encode, lambda z: jnp.zeros(6), prior=prior, num_samples=7)
  assert per_dim.shape == (5,)
  np.testing.assert_allclose(jnp.sum(per_dim), terms.kl, rtol=1e-5, atol=1e-6)
  layers = kernels.layer_kls(key, x, encode, prior=prior, num_samples=7)
  np.testing.assert_allclose([jnp.sum(per_dim[:3]), jnp.sum(per_dim[3:])], layers, rtol=1e-5)


def test_kl_per_dim_refuses_a_q_that_does_not_factorise():
  q = posteriors.FullCovarianceGaussian(jnp.zeros(2), jnp.eye(2))
  assert not collapse.factorizes(q)
  with pytest.raises(TypeError, match="factorise"):
    collapse.kl_per_dim(jax.random.PRNGKey(0), None, lambda x: q)
  mixture = priors.GaussianMixture(jnp.zeros(2), jnp.zeros((2, 2)), jnp.zeros((2, 2)))
  assert not collapse.factorizes(diagonal(np.random.default_rng(0), 2), mixture)
  encode, prior = two_layer()
  q = encode(jnp.zeros(6))
  assert collapse.factorizes(q, prior)
  assert not collapse.factorizes(q, prior._replace(top=mixture))  # a learned top layer


def information(encode, inputs, key, prior=None, sizes=None, batches=1, chunk_size=100):
  """(I_i, M_i, own) of draws from each input's q, the aggregate streamed in `batches`."""
  num = len(inputs)
  own = jax.vmap(lambda k, x: collapse.own_terms(k, x, encode, prior=prior))(
      jax.random.split(key, num), inputs)
  sizes = sizes or (own.z.shape[1],)
  total = None
  for part in np.array_split(np.arange(num), batches):
    padded = np.concatenate([part, [0, 0]])  # two padding rows, masked out
    valid = jnp.asarray(np.arange(len(padded)) < len(part))
    layers, axes = collapse.batch_layer_posteriors(encode, inputs[padded], own.z[padded])
    lse = collapse.aggregate_logsumexp(layers, axes, valid, own.z, sizes, chunk_size)
    total = lse if total is None else jnp.logaddexp(total, lse)
  mi, marginal = collapse.information_terms(own, total - math.log(num))
  return np.asarray(mi), np.asarray(marginal), own


@pytest.fixture
def float64():
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)


def linear_gaussian_data(num, var_scale=1.0, seed=1):
  """Posterior means (N, 3) of N draws of x from the model, and the encoder x -> q(z|x) of
  the exact posterior (its variances times var_scale); the exact I(x; z)."""
  model, _ = make_model(orthogonal=True)  # W orthogonal: p(z|x) is diagonal
  rng = np.random.default_rng(seed)
  x = (rng.normal(size=(num, 3)) @ model.w.T + model.b
       + rng.normal(size=(num, 6)) * math.sqrt(model.noise_var))
  means = np.linalg.solve(model.m, model.w.T @ (x - model.b).T).T
  logvar = jnp.asarray(np.log(np.diag(model.noise_var * np.linalg.inv(model.m)) * var_scale))
  encode = lambda mean: posteriors.DiagonalGaussian(mean, logvar)
  exact = 0.5 * np.linalg.slogdet(np.eye(3) + model.w.T @ model.w / model.noise_var)[1]
  return jnp.asarray(means), encode, exact


def test_mutual_information_of_the_linear_gaussian_model_is_exact(float64):
  means, encode, exact = linear_gaussian_data(2000)
  mi, marginal, _ = information(encode, means, jax.random.PRNGKey(0), batches=3)
  error = mi.std(ddof=1) / math.sqrt(len(mi))
  # I(x; z) = 0.5 log det(I + W^T W / s2) = 2.37 nats; q(z) of the exact posterior is
  # p(z), so the marginal KL is 0 but for the aggregate of N = 2000 points being peakier
  # than p(z): measured +0.016 nats, under 1% of the KL (I is low by as much).
  assert abs(mi.mean() - exact) < 4 * error, (mi.mean(), exact, error)
  assert abs(marginal.mean()) < 0.01 * exact + 4 * marginal.std(ddof=1) / math.sqrt(len(mi))


def test_information_and_marginal_kl_add_up_to_the_kl_and_stay_in_bounds(float64):
  means, encode, exact = linear_gaussian_data(1000, var_scale=3.0)  # too wide a q
  mi, marginal, own = information(encode, means, jax.random.PRNGKey(2))
  np.testing.assert_allclose(mi + marginal, own.log_q - own.log_p, atol=1e-9)
  kl = np.mean(jax.vmap(lambda m: encode(m).kl_standard_normal())(means))
  error = mi.std(ddof=1) / math.sqrt(len(mi))
  assert -3 * error <= mi.mean() <= min(kl, math.log(len(mi)), exact) + 3 * error
  assert mi.mean() < exact - 0.2  # a wider q carries less information


def test_streaming_in_batches_and_chunks_changes_nothing():
  means, encode, _ = linear_gaussian_data(60)
  means = means.astype(jnp.float32)
  key = jax.random.PRNGKey(3)
  whole = information(encode, means, key, batches=1, chunk_size=60)
  parts = information(encode, means, key, batches=4, chunk_size=7)
  for a, b in zip(whole[:2], parts[:2]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_hierarchy_gets_the_decomposition_of_each_layer():
  encode, prior = two_layer(seed=4)
  inputs = jnp.asarray(np.random.default_rng(5).normal(size=(40, 6)), jnp.float32)
  mi, marginal, own = information(encode, inputs, jax.random.PRNGKey(6), prior=prior,
                                  sizes=(3, 2), batches=3, chunk_size=9)
  assert mi.shape == marginal.shape == (40, 2)
  layer_kls = own.log_q - own.log_p  # per layer, log q(z_l|z_{l-1}) - log p(z_l|z_{l+1})
  np.testing.assert_allclose(mi + marginal, layer_kls, rtol=1e-5, atol=1e-5)
  assert np.all(mi <= math.log(40) + 1e-5)  # log q(z_i|.) - log q(z_i) <= log N


def test_free_bits_changes_the_gradient_only_below_the_threshold():
  rng = np.random.default_rng(7)
  q = posteriors.DiagonalGaussian(jnp.asarray([0.05, 2.0, -0.01, 1.5]),
                                  jnp.asarray([0.0, -1.0, 0.02, 0.3]))
  threshold = 0.1
  per_dim = q.kl_standard_normal_per_dim()
  below = np.asarray(per_dim < threshold)
  assert below.tolist() == [True, False, True, False]
  free_bits = lambda p: collapse.free_bits_kl(
      posteriors.DiagonalGaussian(*p).kl_standard_normal_per_dim(), threshold)
  plain = lambda p: posteriors.DiagonalGaussian(*p).kl_standard_normal()
  value = free_bits(tuple(q))
  np.testing.assert_allclose(value, jnp.sum(jnp.where(below, threshold, per_dim)), rtol=1e-6)
  got, want = jax.grad(free_bits)(tuple(q)), jax.grad(plain)(tuple(q))
  for g, w in zip(got, want):
    np.testing.assert_allclose(g[~below], w[~below], rtol=1e-6)
    np.testing.assert_array_equal(g[below], 0.0)
  assert collapse.free_bits_kl(per_dim, 0.0) == pytest.approx(float(plain(tuple(q))), rel=1e-6)
  del rng


def test_free_bits_objective_in_the_trainer_keeps_the_logged_elbo_true():
  from vae.configs import tiny  # pylint: disable=import-outside-toplevel
  from vae.models import build_model  # pylint: disable=import-outside-toplevel
  from vae.training import update  # pylint: disable=import-outside-toplevel
  config = tiny.get_config()
  config.loss.free_bits = 0.5
  model = build_model(config.model, (8, 8, 1))
  params = model.init(jax.random.PRNGKey(0))
  x = (jax.random.uniform(jax.random.PRNGKey(1), (16, 8, 8, 1)) > 0.5).astype(jnp.float32)
  loss, metrics = jax.jit(update.make_loss_fn(model, config.loss))(
      params, jax.random.PRNGKey(2), x, 2.0)
  kl_dims = jax.vmap(lambda xi: collapse.kl_per_dim(
      None, xi, lambda v: model.encode(params, v)))(x).mean(axis=0)
  assert float(kl_dims.max()) < 0.5  # at initialisation every dimension is below
  np.testing.assert_allclose(metrics["objective"], metrics["reconstruction"] - 2.0 * 4 * 0.5,
                             rtol=1e-5)
  np.testing.assert_allclose(metrics["elbo"], metrics["reconstruction"] - metrics["kl"],
                             rtol=1e-5)
  assert loss == -metrics["objective"]
  assert float(metrics["elbo"]) > float(metrics["objective"])


def test_one_warning_line_when_most_dimensions_are_inactive():
  from vae import evaluation as evaluate  # pylint: disable=import-outside-toplevel
  warning = evaluate.collapse_warning({"active_units": 1}, 4)
  assert "1 of 4" in warning and "\n" not in warning
  for remedy in ("kl_warmup_steps", "free_bits", "beta"):
    assert remedy in warning
  assert evaluate.collapse_warning({"active_units": 2}, 4) is None


def test_a_batch_of_flows_holds_their_steps_once_and_scores_as_each_alone():
  rng = np.random.default_rng(5)
  steps = posteriors.init_made_steps(jax.random.PRNGKey(0), 2, 3, 8, 4, scale=0.5)
  inputs = jnp.asarray(rng.normal(size=(5, 10)), jnp.float32)  # mean, logvar, context
  encode = lambda x: posteriors.InverseAutoregressiveFlow(
      posteriors.DiagonalGaussian(x[:3], 0.3 * x[3:6]), steps, x[6:])
  z = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
  layers, axes = collapse.batch_layer_posteriors(encode, inputs, z)
  assert layers[0].steps.w_in.shape == steps.w_in.shape  # not broadcast to (5, ...)
  assert layers[0].context.shape == (5, 4)
  valid = jnp.asarray([True, True, True, True, False])
  lse = collapse.aggregate_logsumexp(layers, axes, valid, z, (3,), chunk_size=2)
  alone = np.array([[encode(x).log_prob(z_j) for x in inputs[:4]] for z_j in z])
  np.testing.assert_allclose(lse[:, 0], jax.nn.logsumexp(alone, axis=1), rtol=1e-5)
