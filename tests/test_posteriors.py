"""Posterior families, priors and stochastic hierarchies of the kernels, against exact
oracles: linear-Gaussian models with one and two stochastic layers whose log p(x) and
posteriors are closed-form, change-of-variables densities from `jax.jacfwd`, and
mixtures written out by hand; plus jit/vmap equivalence and gradients. float64."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from linear_gaussian import make_model, mc_mean
from vae import losses, posteriors, priors


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def gaussian_log_density(z, mean, cov):
  diff = z - mean
  _, logdet = np.linalg.slogdet(cov)
  return -0.5 * (len(z) * math.log(2 * math.pi) + logdet + diff @ np.linalg.solve(cov, diff))


def full_covariance(mean, cov):
  return posteriors.FullCovarianceGaussian(jnp.asarray(mean), jnp.linalg.cholesky(cov))


# ------------------------------------------------------------------ full covariance


def test_full_covariance_density_sample_and_kl_are_exact():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(3, 3))
  mean, cov = rng.normal(size=3), a @ a.T + 0.5 * np.eye(3)
  q = full_covariance(mean, cov)
  z, log_q = q.sample(jax.random.PRNGKey(0))
  np.testing.assert_allclose(log_q, gaussian_log_density(np.asarray(z), mean, cov), rtol=1e-12)
  np.testing.assert_allclose(q.log_prob(z), log_q, rtol=1e-12)
  _, logdet = np.linalg.slogdet(cov)
  expected_kl = 0.5 * (np.trace(cov) + mean @ mean - 3 - logdet)
  np.testing.assert_allclose(q.kl_standard_normal(), expected_kl, rtol=1e-12)
  logvar, lower = jnp.asarray(rng.normal(size=3)), jnp.asarray(rng.normal(size=3))
  tril = np.asarray(posteriors.scale_tril(logvar, lower))
  np.testing.assert_allclose(np.diag(tril), np.exp(0.5 * np.asarray(logvar)), rtol=1e-12)
  np.testing.assert_array_equal(tril[np.tril_indices(3, -1)], lower)
  assert np.all(np.triu(tril, 1) == 0)
  diagonal = posteriors.FullCovarianceGaussian(jnp.asarray(mean), jnp.asarray(tril)).diagonal()
  np.testing.assert_allclose(np.exp(diagonal.logvar), np.diag(tril @ tril.T), rtol=1e-12)


def test_the_exact_posterior_makes_elbo_iwae_and_log_px_one():
  """The linear-Gaussian posterior is a full-covariance Gaussian: plugged in as q, every
  importance weight is p(x), so ELBO = IWAE_K = log p(x) and the gap is 0."""
  model, x = make_model(orthogonal=False)
  q = full_covariance(*model.posterior(x))
  encode = lambda _: q
  key = jax.random.PRNGKey(1)
  terms = losses.elbo(key, x, encode, model.decode, likelihood="gaussian", num_samples=5,
                      analytic_kl=False)
  gap = losses.bound_gap(key, x, encode, model.decode, num_samples=7, chunk_size=3,
                         likelihood="gaussian")
  for value in (terms.elbo, gap.log_px, gap.elbo):
    np.testing.assert_allclose(value, model.log_px(x), atol=1e-8)
  assert abs(float(gap.gap)) < 1e-8
  closed = losses.elbo(key, x, encode, model.decode, likelihood="gaussian", num_samples=4000)
  assert abs(float(closed.elbo) - model.log_px(x)) < 0.05  # analytic KL, MC reconstruction


# ------------------------------------------------------------------ inverse autoregressive flow


def make_flow(scale, dim=4, steps=2, hidden=8, context_dim=3, seed=0):
  key = jax.random.PRNGKey(seed)
  base = posteriors.DiagonalGaussian(jnp.linspace(-0.5, 0.5, dim), jnp.linspace(-1.0, 0.3, dim))
  made = posteriors.init_made_steps(key, steps, dim, hidden, context_dim, scale=scale)
  made = made._replace(b_shift=made.b_shift + scale, b_scale=made.b_scale - scale)
  return posteriors.InverseAutoregressiveFlow(base, made, jnp.ones(context_dim) * 0.3)


def test_iaf_density_is_the_change_of_variables_density():
  flow = make_flow(scale=0.7)
  z0, log_q0 = flow.base.sample(jax.random.PRNGKey(2))
  z, log_det = flow.push(z0)
  jacobian = jax.jacfwd(lambda u: flow.push(u)[0])(z0)
  _, expected_log_det = np.linalg.slogdet(np.asarray(jacobian))
  np.testing.assert_allclose(log_det, expected_log_det, rtol=1e-10)
  z_sampled, log_q = flow.sample(jax.random.PRNGKey(2))
  np.testing.assert_allclose(z_sampled, z, rtol=1e-12)
  np.testing.assert_allclose(log_q, log_q0 - expected_log_det, rtol=1e-10)
  np.testing.assert_allclose(flow.log_prob(z), log_q, rtol=1e-9)  # by inverting the flow


def test_iaf_with_zero_weights_is_its_base_gaussian():
  flow = make_flow(scale=0.0)
  z, log_q = flow.sample(jax.random.PRNGKey(3))
  base_z, base_log_q = flow.base.sample(jax.random.PRNGKey(3))
  np.testing.assert_allclose(z, base_z, rtol=1e-12)
  np.testing.assert_allclose(log_q, base_log_q, rtol=1e-12)
  np.testing.assert_allclose(flow.log_prob(z), flow.base.log_prob(z), rtol=1e-12)


def test_made_outputs_depend_only_on_earlier_inputs():
  step = posteriors.MADEStep(*(leaf[0] for leaf in make_flow(scale=0.7).steps))
  jacobians = jax.jacfwd(lambda z: step(z, jnp.zeros(3)))(jnp.ones(4) * 0.2)
  for jacobian in jacobians:  # shift and log-scale
    assert np.all(np.triu(np.asarray(jacobian)) == 0)  # d out_i / d z_j = 0 for j >= i


# ------------------------------------------------------------------ priors


def test_one_component_mixture_at_the_origin_is_the_standard_normal():
  mixture = priors.GaussianMixture(jnp.zeros(1), jnp.zeros((1, 3)), jnp.zeros((1, 3)))
  z = jnp.array([0.3, -1.2, 2.0])
  np.testing.assert_allclose(mixture.log_prob(z), priors.StandardNormal().log_prob(z),
                             rtol=1e-12)
  model, x = make_model(orthogonal=False)
  q = posteriors.DiagonalGaussian(jnp.array([0.3, -0.2, 0.5]), jnp.log(jnp.array([0.2, 0.4, 0.3])))
  keys = jax.random.split(jax.random.PRNGKey(4), 4000)
  kls = jax.vmap(lambda k: losses.elbo(k, x, lambda _: q, model.decode, likelihood="gaussian",
                                       prior=mixture).kl)(keys)  # Monte Carlo: no closed form
  mean, se = mc_mean(kls)
  assert abs(mean - float(q.kl_standard_normal())) < 4 * se


def test_mixture_and_vamp_prior_densities_are_the_mixtures_written_out():
  rng = np.random.default_rng(5)
  logits, means, logvars = rng.normal(size=3), rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
  z = rng.normal(size=2)
  weights = np.exp(logits) / np.exp(logits).sum()
  expected = math.log(sum(w * math.exp(gaussian_log_density(z, m, np.diag(np.exp(v))))
                          for w, m, v in zip(weights, means, logvars)))
  mixture = priors.GaussianMixture(*map(jnp.asarray, (logits, means, logvars)))
  np.testing.assert_allclose(mixture.log_prob(jnp.asarray(z)), expected, rtol=1e-12)
  encode = lambda u: posteriors.DiagonalGaussian(u[:2] * 0.5, u[2:] * 0.1)
  pseudo_inputs = jnp.asarray(rng.normal(size=(5, 4)))
  vamp = priors.vamp_prior(jax.vmap(encode)(pseudo_inputs))
  expected = math.log(np.mean([math.exp(float(encode(u).log_prob(jnp.asarray(z))))
                               for u in pseudo_inputs]))
  np.testing.assert_allclose(vamp.log_prob(jnp.asarray(z)), expected, rtol=1e-12)


# ------------------------------------------------------------------ two stochastic layers


class TwoLayerLinearGaussian:
  """z2 ~ N(0, I), z1 | z2 ~ N(A z2 + a, s1 I), x | z1 ~ N(W z1 + b, s2 I): log p(x) and
  the posteriors p(z1|x) and p(z2|z1) (= p(z2|z1, x)) are Gaussian, in closed form."""

  def __init__(self, seed=0, x_dim=5, z1_dim=3, z2_dim=2):
    rng = np.random.default_rng(seed)
    self.A, self.a = rng.normal(size=(z1_dim, z2_dim)), rng.normal(size=z1_dim) * 0.3
    self.W, self.b = rng.normal(size=(x_dim, z1_dim)), rng.normal(size=x_dim) * 0.3
    self.s1, self.s2 = 0.4, 0.3
    self.c1 = self.A @ self.A.T + self.s1 * np.eye(z1_dim)  # Cov(z1)
    self.x = self.W @ (self.A @ rng.normal(size=z2_dim) + self.a) + self.b + rng.normal(
        size=x_dim) * 0.5

  def log_px(self):
    cov = self.W @ self.c1 @ self.W.T + self.s2 * np.eye(len(self.x))
    return gaussian_log_density(self.x, self.W @ self.a + self.b, cov)

  def q_z1(self, scale=1.0):
    """p(z1|x), its covariance scaled by `scale` (1: exact)."""
    precision = np.linalg.inv(self.c1) + self.W.T @ self.W / self.s2
    cov = np.linalg.inv(precision)
    mean = cov @ (np.linalg.solve(self.c1, self.a) + self.W.T @ (self.x - self.b) / self.s2)
    return full_covariance(mean, cov * scale)

  def q_z2(self, scale=1.0):
    """z1 -> p(z2|z1), its covariance scaled by `scale`."""
    m = self.A.T @ self.A + self.s1 * np.eye(self.A.shape[1])
    cov = self.s1 * np.linalg.inv(m)
    return lambda z1: full_covariance(jnp.asarray(np.linalg.solve(m, self.A.T)) @ (
        z1 - self.a), cov * scale)

  def hierarchy(self, scale=1.0):
    return losses.Hierarchy(
        encoders=(lambda _: self.q_z1(scale), self.q_z2(scale)),
        conditionals=(lambda z2: (jnp.asarray(self.A) @ z2 + self.a,
                                  jnp.full(len(self.a), math.log(self.s1))),),
        decode=lambda z1: (jnp.asarray(self.W) @ z1 + self.b, jnp.log(self.s2)))


def test_two_layers_with_the_exact_posterior_weigh_every_sample_at_log_px():
  model = TwoLayerLinearGaussian()
  terms = jax.vmap(lambda k: losses.hierarchy_terms(k, model.x, model.hierarchy(),
                                                    "gaussian"))(
      jax.random.split(jax.random.PRNGKey(6), 50))
  np.testing.assert_allclose(terms.log_weight, model.log_px(), atol=1e-8)
  np.testing.assert_allclose(terms.reconstruction - terms.layer_kls.sum(axis=1),
                             terms.log_weight, rtol=1e-12)  # the layers' KLs add up
  assert terms.layer_kls.shape == (50, 2)


def test_two_layers_elbo_below_iwae_below_log_px_and_iwae_rises_with_k():
  model = TwoLayerLinearGaussian()
  hierarchy = model.hierarchy(scale=2.5)  # a q too wide: a real gap
  keys = jax.random.split(jax.random.PRNGKey(7), 200)
  elbo = jax.vmap(lambda k: losses.hierarchy_elbo(k, model.x, hierarchy,
                                                  likelihood="gaussian").log_weight)(keys)
  iwae = {k: jax.vmap(lambda key: losses.hierarchy_bound_gap(
      key, model.x, hierarchy, num_samples=k, chunk_size=16, likelihood="gaussian").log_px)(
          keys) for k in (1, 10, 100)}
  np.testing.assert_allclose(iwae[1].mean(), elbo.mean(), atol=4 * elbo.std() / math.sqrt(200))
  means = [float(iwae[k].mean()) for k in (1, 10, 100)]
  assert means[0] < means[1] < means[2] <= model.log_px() + 1e-3
  assert model.log_px() - means[2] < 0.1 * (model.log_px() - means[0])


# ------------------------------------------------------------------ transforms and gradients


def densities():
  flow = make_flow(scale=0.5)
  mixture = priors.GaussianMixture(jnp.array([0.2, -0.1]), jnp.ones((2, 4)) * 0.3,
                                   jnp.zeros((2, 4)))
  rng = np.random.default_rng(8)
  a = rng.normal(size=(4, 4))
  return {"full_covariance": full_covariance(np.zeros(4), a @ a.T + np.eye(4)).log_prob,
          "iaf": flow.log_prob, "mixture": mixture.log_prob,
          "vamp": priors.vamp_prior(jax.vmap(lambda m: posteriors.DiagonalGaussian(
              m, jnp.zeros(4)))(jnp.eye(4)[:3])).log_prob}


@pytest.mark.parametrize("name", ["full_covariance", "iaf", "mixture", "vamp"])
def test_jit_vmap_and_gradients_of_each_density(name):
  log_prob = densities()[name]
  zs = jnp.asarray(np.random.default_rng(9).normal(size=(3, 4)) * 0.5)
  eager = jnp.stack([log_prob(z) for z in zs])
  np.testing.assert_allclose(jax.jit(jax.vmap(log_prob))(zs), eager, rtol=1e-10)
  check_grads(log_prob, (zs[0],), order=2, modes=("rev",))


def test_stop_gradient_keeps_the_density_and_stops_its_parameters_gradient():
  q = posteriors.DiagonalGaussian(jnp.array([0.1, 0.2]), jnp.array([0.0, -0.5]))
  z = jnp.array([0.3, -0.4])
  grad = jax.grad(lambda params: posteriors.DiagonalGaussian(*params).stop_gradient()
                  .log_prob(z))(tuple(q))
  assert all(np.all(g == 0) for g in grad)
  np.testing.assert_allclose(q.stop_gradient().log_prob(z), q.log_prob(z), rtol=1e-12)
