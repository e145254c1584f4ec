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

from linear_gaussian import (TopDownLinearGaussian, TwoLayerLinearGaussian, full_covariance, gaussian_log_density,
                             make_model, mc_mean)

from vae import kernels
from vae.kernels import posteriors, priors


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


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
  terms = kernels.elbo(key, x, encode, model.decode, likelihood="gaussian", num_samples=5,
                      analytic_kl=False)
  gap = kernels.bound_gap(key, x, encode, model.decode, num_samples=7, chunk_size=3,
                         likelihood="gaussian")
  for value in (terms.elbo, gap.log_px, gap.elbo):
    np.testing.assert_allclose(value, model.log_px(x), atol=1e-8)
  assert abs(float(gap.gap)) < 1e-8
  closed = kernels.elbo(key, x, encode, model.decode, likelihood="gaussian", num_samples=4000)
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


def test_a_made_step_inverts_its_own_affine_map_one_dim_at_a_time():
  flow = make_flow(scale=0.7)
  step = posteriors.MADEStep(*(leaf[0] for leaf in flow.steps))
  z = jnp.linspace(-1.2, 0.9, flow.base.mean.shape[0])
  shift, log_scale = step(z, flow.context)
  recovered, log_det = step.invert(z * jnp.exp(log_scale) + shift, flow.context)
  np.testing.assert_allclose(recovered, z, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(log_det, jnp.sum(log_scale), rtol=1e-10)


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
  kls = jax.vmap(lambda k: kernels.elbo(k, x, lambda _: q, model.decode, likelihood="gaussian",
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


def test_a_mixture_of_numpy_params_samples_under_vmap_with_its_weights():
  """Params restored from a checkpoint are NumPy arrays; vmapped sampling indexes them with
  a traced component. Two far-apart components: draws land by the weights (0.8, 0.2)."""
  mixture = priors.GaussianMixture(np.log(np.array([0.8, 0.2], np.float32)),
                                   np.array([[-10.0], [10.0]], np.float32),
                                   np.zeros((2, 1), np.float32))
  draws = jax.vmap(mixture.sample)(jax.random.split(jax.random.PRNGKey(0), 4000))
  share = float(jnp.mean(draws > 0))
  assert abs(share - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 4000), share


# ------------------------------------------------------------------ two stochastic layers

# Both orders of a two-layer posterior: Burda et al.'s bottom-up chain q(z1|x) q(z2|z1),
# and the top-down q(z2|x) q(z1|x, z2) of Tomczak & Welling's HVAE, whose decoder reads both.
TWO_LAYER_ORACLES = pytest.mark.parametrize(
    "oracle", [TwoLayerLinearGaussian, TopDownLinearGaussian], ids=["bottom_up", "top_down"])


@TWO_LAYER_ORACLES
def test_two_layers_with_the_exact_posterior_weigh_every_sample_at_log_px(oracle):
  model = oracle()
  keys = jax.random.split(jax.random.PRNGKey(6), 50)
  gaps = jax.vmap(lambda k: kernels.bound_gap(
      k, **model.kernels_args(), num_samples=7, likelihood="gaussian",
      prior=model.prior()))(keys)
  np.testing.assert_allclose(gaps.elbo, model.log_px(), atol=1e-8)
  np.testing.assert_allclose(gaps.log_px, model.log_px(), atol=1e-8)
  terms = jax.vmap(lambda k: kernels.elbo(k, **model.kernels_args(), num_samples=4,
                                         likelihood="gaussian", prior=model.prior()))(keys)
  np.testing.assert_allclose(terms.elbo, model.log_px(), atol=1e-8)
  kls = jax.vmap(lambda k: kernels.layer_kls(k, model.x, lambda _: model.posterior(),
                                            num_samples=4, prior=model.prior()))(keys)
  assert kls.shape == (50, 2)
  np.testing.assert_allclose(kls.sum(axis=1), terms.kl, rtol=1e-10)  # the layers add up


@TWO_LAYER_ORACLES
def test_two_layers_elbo_below_iwae_below_log_px_and_iwae_rises_with_k(oracle):
  model = oracle()
  args = model.kernels_args(scale=2.5)  # a q too wide: a real gap
  keys = jax.random.split(jax.random.PRNGKey(7), 200)
  elbo = jax.vmap(lambda k: kernels.elbo(k, **args, likelihood="gaussian",
                                        prior=model.prior()).elbo)(keys)
  iwae = {k: jax.vmap(lambda key: kernels.iwae_bound(
      key, **args, num_samples=k, chunk_size=16, likelihood="gaussian",
      prior=model.prior()))(keys) for k in (1, 10, 100)}
  np.testing.assert_allclose(iwae[1].mean(), elbo.mean(), atol=4 * elbo.std() / math.sqrt(200))
  means = [float(iwae[k].mean()) for k in (1, 10, 100)]
  se = float(iwae[100].std()) / math.sqrt(200)  # IWAE_K <= log p(x) in expectation
  assert means[0] < means[1] < means[2] <= model.log_px() + 4 * se
  assert model.log_px() - means[2] < 0.1 * (model.log_px() - means[0])


def test_two_layer_prior_samples_have_the_linear_gaussian_marginal():
  model = TwoLayerLinearGaussian()
  z = jax.vmap(model.prior().sample)(jax.random.split(jax.random.PRNGKey(9), 20000))
  z1 = np.asarray(z[:, :3])
  np.testing.assert_allclose(z1.mean(0), model.a, atol=0.05)
  np.testing.assert_allclose(np.cov(z1.T), model.c1, atol=0.1)


def test_two_layer_posterior_density_matches_its_samples_and_its_diagonal():
  model = TwoLayerLinearGaussian()
  q = model.posterior(scale=1.7)
  z, log_q = q.sample(jax.random.PRNGKey(10))
  np.testing.assert_allclose(q.log_prob(z), log_q, rtol=1e-10)
  np.testing.assert_allclose(q.layer_log_probs(z).sum(), log_q, rtol=1e-10)
  diagonal = q.diagonal()
  first = model.q_z1(1.7)
  np.testing.assert_allclose(diagonal.mean[:3], first.mean)
  np.testing.assert_allclose(diagonal.mean[3:], model.q_z2(1.7)(first.mean).mean)
  np.testing.assert_allclose(q.location(), diagonal.mean)


def test_top_down_posterior_is_the_exact_joint_posterior_layer_by_layer():
  """q(z2|x) q(z1|x, z2) at the exact conditionals is p(z1, z2|x): its density is the
  joint Gaussian's, its layers' densities are listed z1 first, its draws have the joint's
  moments, and its location is z2's mean, then z1's given it."""
  with jax.enable_x64(True):
    model = TopDownLinearGaussian()
    mean, cov = model.exact_posterior()
    q = model.posterior()
    z, log_q = q.sample(jax.random.PRNGKey(11))
    np.testing.assert_allclose(log_q, gaussian_log_density(np.asarray(z), mean, cov),
                               rtol=1e-10)
    np.testing.assert_allclose(q.layer_log_probs(z), [
        model.q_below()(z[3:]).log_prob(z[:3]), model.q_top().log_prob(z[3:])], rtol=1e-10)
    draws = jax.vmap(lambda k: q.sample(k)[0])(jax.random.split(jax.random.PRNGKey(12), 20000))
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(np.asarray(draws).T), cov, atol=0.03)
    np.testing.assert_allclose(q.location(), mean, atol=1e-10)
    np.testing.assert_allclose(q.diagonal().mean, mean, atol=1e-10)


# ------------------------------------------------------------------ transforms and gradients


def densities():
  flow = make_flow(scale=0.5)
  mixture = priors.GaussianMixture(jnp.array([0.2, -0.1]), jnp.ones((2, 4)) * 0.3,
                                   jnp.zeros((2, 4)))
  rng = np.random.default_rng(8)
  a = rng.normal(size=(4, 4))
  two_layers = TwoLayerLinearGaussian(z1_dim=2, z2_dim=2)
  top_down = TopDownLinearGaussian(z1_dim=2, z2_dim=2)
  return {"full_covariance": full_covariance(np.zeros(4), a @ a.T + np.eye(4)).log_prob,
          "two_layer_posterior": two_layers.posterior(scale=1.3).log_prob,
          "top_down_posterior": top_down.posterior(scale=1.3).log_prob,
          "two_layer_prior": two_layers.prior().log_prob,
          "iaf": flow.log_prob, "mixture": mixture.log_prob,
          "vamp": priors.vamp_prior(jax.vmap(lambda m: posteriors.DiagonalGaussian(
              m, jnp.zeros(4)))(jnp.eye(4)[:3])).log_prob}


@pytest.mark.parametrize("name", ["full_covariance", "iaf", "mixture", "vamp",
                                  "two_layer_posterior", "top_down_posterior",
                                  "two_layer_prior"])
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


@pytest.mark.parametrize("oracle,objective,estimator", [
    (TopDownLinearGaussian, "iwae", "dreg"), (TopDownLinearGaussian, "iwae", "stl"),
    (TopDownLinearGaussian, "miwae", "dreg"), (TwoLayerLinearGaussian, "ciwae", "dreg")],
    ids=["top_down-iwae-dreg", "top_down-iwae-stl", "top_down-miwae-dreg",
         "bottom_up-ciwae-dreg"])
def test_two_layers_path_gradients_vanish_at_the_exact_posterior(oracle, objective,
                                                                   estimator):
  """At q = p(z|x) every log weight is log p(x), whatever z: each bound of the IWAE family
  equals log p(x) and the path-only (STL) and DReG encoder gradients are exactly 0 (the
  reparameterised one is not: its score term is noise)."""
  with jax.enable_x64(True):
    model = oracle()
    exact = model.posterior()

    def bound(shift, estimator):
      first = exact.first._replace(mean=exact.first.mean + shift)
      encode = lambda _: exact._replace(first=first)
      return kernels.bound_objective(
          jax.random.PRNGKey(13), model.x, encode, model.decode, objective=objective,
          num_samples=5, num_outer_samples=2, gradient_estimator=estimator,
          likelihood="gaussian", prior=model.prior())

    shift = jnp.zeros_like(exact.first.mean)
    np.testing.assert_allclose(bound(shift, estimator), model.log_px(), atol=1e-9)
    np.testing.assert_allclose(jax.grad(bound)(shift, estimator), 0.0, atol=1e-9)
    assert np.abs(jax.grad(bound)(shift, "reparameterized")).max() > 1e-3
