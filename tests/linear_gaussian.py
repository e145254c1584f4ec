"""The exact oracle the estimator tests share: a linear-Gaussian VAE (probabilistic PCA).

z ~ N(0, I_D), x | z ~ N(W z + b, s2 I), for which, with M = W^T W + s2 I,

  log p(x) = log N(x; b, W W^T + s2 I),
  p(z|x)   = N(M^-1 W^T (x - b), s2 M^-1),   posterior precision Lambda = M / s2,

all in closed form, and so are the ELBO of any diagonal Gaussian q and its KL to the
posterior. The best diagonal Gaussian q* = argmax_q ELBO(q) has the posterior mean and
variances 1 / Lambda_ii, and its gap is KL(q* || p(z|x)) = 0.5 (sum_i log Lambda_ii -
log |Lambda|) (the approximation gap of Cremer et al. 2018), the same for every x.
Values are numpy float64; `decode` is a JAX callable for `vae.kernels`' Gaussian likelihood.

`TwoLayerLinearGaussian` is the same oracle with two stochastic layers.
"""

import math

import jax.numpy as jnp
import numpy as np

from vae.kernels import posteriors, priors


class LinearGaussian:
  """Probabilistic PCA with closed-form evidence and posterior (numpy float64)."""

  def __init__(self, w, b, noise_var):
    self.w, self.b, self.noise_var = np.asarray(w), np.asarray(b), float(noise_var)
    d = self.w.shape[1]
    self.m = self.w.T @ self.w + self.noise_var * np.eye(d)

  def log_px(self, x):
    cov = self.w @ self.w.T + self.noise_var * np.eye(len(x))
    diff = x - self.b
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (len(x) * math.log(2 * math.pi) + logdet + diff @ np.linalg.solve(cov, diff))

  def posterior(self, x):
    mean = np.linalg.solve(self.m, self.w.T @ (x - self.b))
    return mean, self.noise_var * np.linalg.inv(self.m)

  def posterior_precision(self):
    """Lambda = M / s2, (D, D); it does not depend on x."""
    return self.m / self.noise_var

  def best_diagonal(self, x):
    """(mean (D,), var (D,)) of the diagonal Gaussian with the highest ELBO."""
    return self.posterior(x)[0], 1.0 / np.diag(self.posterior_precision())

  def best_diagonal_gap(self):
    """log p(x) - ELBO(q*) = 0.5 (sum log Lambda_ii - log|Lambda|) >= 0, for every x."""
    precision = self.posterior_precision()
    _, logdet = np.linalg.slogdet(precision)
    return 0.5 * (np.sum(np.log(np.diag(precision))) - logdet)

  def elbo(self, x, q_mean, q_var):
    """Closed-form ELBO of a diagonal Gaussian q = N(q_mean, diag(q_var))."""
    resid = x - self.w @ q_mean - self.b
    expected_sq = resid @ resid + np.sum(q_var * np.sum(self.w**2, axis=0))
    recon = -0.5 * (len(x) * math.log(2 * math.pi * self.noise_var) + expected_sq / self.noise_var)
    kl = 0.5 * np.sum(q_mean**2 + q_var - 1 - np.log(q_var))
    return recon - kl

  def kl_to_posterior(self, x, q_mean, q_var):
    """KL(N(q_mean, diag(q_var)) || p(z|x)) for the full-covariance exact posterior."""
    p_mean, p_cov = self.posterior(x)
    p_prec = np.linalg.inv(p_cov)
    diff = p_mean - q_mean
    _, logdet_p = np.linalg.slogdet(p_cov)
    return 0.5 * (np.trace(p_prec * q_var) + diff @ p_prec @ diff - len(q_mean)
                  + logdet_p - np.sum(np.log(q_var)))

  def decode(self, z):
    return jnp.asarray(self.w) @ z + jnp.asarray(self.b), jnp.log(self.noise_var)


def make_model(orthogonal, seed=0, x_dim=6, z_dim=3):
  """A model and one observation x (x_dim,). Orthogonal W makes the posterior diagonal."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(x_dim, z_dim))
  if orthogonal:
    q, _ = np.linalg.qr(w)
    w = q * np.array([2.0, 1.0, 0.5])[:z_dim]
  model = LinearGaussian(w, rng.normal(size=x_dim), noise_var=0.3)
  x = model.w @ rng.normal(size=z_dim) + model.b + rng.normal(size=x_dim) * 0.5
  return model, x


def fixed_encoder(mean, var):
  """encode(x) -> (mean, log var), the same q for every x."""
  return lambda x: (jnp.asarray(mean), jnp.log(jnp.asarray(var)))


def mc_mean(values):
  """(mean, standard error) of Monte Carlo replicates."""
  values = np.asarray(values)
  return values.mean(), values.std(ddof=1) / math.sqrt(len(values))


def gaussian_log_density(z, mean, cov):
  diff = z - mean
  _, logdet = np.linalg.slogdet(cov)
  return -0.5 * (len(z) * math.log(2 * math.pi) + logdet + diff @ np.linalg.solve(cov, diff))


def full_covariance(mean, cov):
  return posteriors.FullCovarianceGaussian(jnp.asarray(mean), jnp.linalg.cholesky(cov))


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

  def posterior(self, scale=1.0):
    """q(z1, z2|x) = p(z1|x) p(z2|z1), each covariance scaled by `scale` (1: exact)."""
    q_z2 = self.q_z2(scale)
    return posteriors.Hierarchical(self.q_z1(scale), (q_z2,), (q_z2,), self.A.shape)

  def prior(self):
    return priors.Hierarchical(None, (lambda z2: (jnp.asarray(self.A) @ z2 + self.a,
                                                  jnp.full(len(self.a), math.log(self.s1))),),
                               self.A.shape)

  def decode(self, z):
    return jnp.asarray(self.W) @ z[:len(self.a)] + self.b, jnp.log(self.s2)

  def kernels_args(self, scale=1.0):
    return dict(x=self.x, encode=lambda _: self.posterior(scale), decode=self.decode)


class TopDownLinearGaussian:
  """The two-layer oracle of a top-down hierarchy (Tomczak & Welling's HVAE): z2 ~ N(0, I),
  z1 | z2 ~ N(A z2 + a, s1 I), x | z1, z2 ~ N(W z1 + V z2 + b, s2 I), so the decoder reads
  both layers; log p(x), p(z2|x) and p(z1|x, z2) are Gaussian, in closed form. The
  interface of `TwoLayerLinearGaussian`, with q(z2|x) q(z1|x, z2) drawn top-down."""

  def __init__(self, seed=0, x_dim=5, z1_dim=3, z2_dim=2):
    rng = np.random.default_rng(seed)
    self.A, self.a = rng.normal(size=(z1_dim, z2_dim)), rng.normal(size=z1_dim) * 0.3
    self.W, self.V = rng.normal(size=(x_dim, z1_dim)), rng.normal(size=(x_dim, z2_dim))
    self.b = rng.normal(size=x_dim) * 0.3
    self.s1, self.s2 = 0.4, 0.3
    self.sizes = (z1_dim, z2_dim)
    # u = (z1, z2) ~ N(mu_u, S_u) and x = M u + b + noise.
    self.mu_u = np.concatenate([self.a, np.zeros(z2_dim)])
    self.S_u = np.block([[self.A @ self.A.T + self.s1 * np.eye(z1_dim), self.A],
                         [self.A.T, np.eye(z2_dim)]])
    self.M = np.concatenate([self.W, self.V], axis=1)
    u = rng.multivariate_normal(self.mu_u, self.S_u)
    self.x = self.M @ u + self.b + rng.normal(size=x_dim) * 0.5

  def log_px(self):
    cov = self.M @ self.S_u @ self.M.T + self.s2 * np.eye(len(self.x))
    return gaussian_log_density(self.x, self.M @ self.mu_u + self.b, cov)

  def exact_posterior(self):
    """(mean, cov) of p(z1, z2 | x), z1 first."""
    precision = np.linalg.inv(self.S_u) + self.M.T @ self.M / self.s2
    cov = np.linalg.inv(precision)
    mean = cov @ (np.linalg.solve(self.S_u, self.mu_u) + self.M.T @ (self.x - self.b) / self.s2)
    return mean, cov

  def q_top(self, scale=1.0):
    """p(z2|x), its covariance scaled by `scale` (1: exact)."""
    mean, cov = self.exact_posterior()
    d1 = self.sizes[0]
    return full_covariance(mean[d1:], cov[d1:, d1:] * scale)

  def q_below(self, scale=1.0):
    """z2 -> p(z1|x, z2), its covariance scaled by `scale`."""
    mean, cov = self.exact_posterior()
    d1 = self.sizes[0]
    gain = cov[:d1, d1:] @ np.linalg.inv(cov[d1:, d1:])
    conditional = cov[:d1, :d1] - gain @ cov[d1:, :d1]
    return lambda z2: full_covariance(jnp.asarray(mean[:d1]) + jnp.asarray(gain) @ (
        z2 - mean[d1:]), conditional * scale)

  def posterior(self, scale=1.0):
    """q(z2|x) q(z1|x, z2), each covariance scaled by `scale` (1: exact), top-down."""
    below = self.q_below(scale)
    return posteriors.Hierarchical(self.q_top(scale), (below,), (below,), self.sizes,
                                   top_down=True)

  def prior(self):
    return priors.Hierarchical(None, (lambda z2: (jnp.asarray(self.A) @ z2 + self.a,
                                                  jnp.full(len(self.a), math.log(self.s1))),),
                               self.sizes)

  def decode(self, z):
    return jnp.asarray(self.M) @ z + self.b, jnp.log(self.s2)

  def kernels_args(self, scale=1.0):
    return dict(x=self.x, encode=lambda _: self.posterior(scale), decode=self.decode)
