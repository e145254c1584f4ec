"""Variational posteriors q(z|x) of one example, as pure functions (no Flax).

Each family is a NamedTuple of arrays (so a pytree: it passes through `jax.jit`,
`jax.vmap` and `jax.grad`) with three methods, the contract the kernels of `vae.kernels`
take from an encoder that returns one:

  sample(key) -> (z (D,), log q(z|x)): a reparameterised draw and its log-density;
  log_prob(z) -> log q(z|x) of a given z (D,);
  stop_gradient() -> the same family at parameters whose gradient is stopped, for the
    STL and DReG estimators, which score a sample under q without its score function.

A family with a closed-form KL to N(0, I) also has `kl_standard_normal()`, and every
family has `diagonal()`, a diagonal Gaussian near it (where AIS and the fit of q* start),
and `location()`, a point of it (its mean; for the IAF the flow of its base's mean).
All densities are in nats. Families:

  DiagonalGaussian(mean, logvar)          today's q, N(mean, diag(exp(logvar)));
  FullCovarianceGaussian(mean, scale_tril) N(mean, L L^T), L lower triangular with a
                                          positive diagonal (a Cholesky factor, e.g.
                                          `scale_tril(logvar, lower)`);
  InverseAutoregressiveFlow(base, steps, context)
                                          a diagonal Gaussian pushed through IAF steps
                                          (Kingma et al. 2016), each a MADE network;
  Hierarchical(first, upper, upper_stopped, sizes, top_down)
                                          L stochastic layers over z = concat(z_1, ...,
                                          z_L): bottom-up q(z_1|x) q(z_2|z_1) ...
                                          (Burda et al. 2016) or top-down q(z_L|x)
                                          q(z_{L-1}|x, z_L) ... (Tomczak & Welling 2018).

References:
  Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
  Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling, "Improved Variational
  Inference with Inverse Autoregressive Flow", NeurIPS 2016.
  Germain, Gregor, Murray & Larochelle, "MADE: Masked Autoencoder for Distribution
  Estimation", ICML 2015.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vae.kernels import gaussian

Array = jax.Array


def as_posterior(encoded: Any) -> Any:
  """An encoder's output as a posterior: a (mean, logvar) pair is a DiagonalGaussian."""
  if hasattr(encoded, "sample"):
    return encoded
  return DiagonalGaussian(*encoded)


def example_axes(posterior: Any) -> Any:
  """The `jax.vmap` axes (a pytree prefix) of a batch of `posterior`s of one family: 0
  for the leaves that vary with the example, None for those every example shares (an
  IAF's steps), which a batch then holds once and its densities read unbatched."""
  return posterior.example_axes() if hasattr(posterior, "example_axes") else 0


# ------------------------------------------------------------------ Gaussians


class DiagonalGaussian(NamedTuple):
  """N(mean, diag(exp(logvar))); mean, logvar: (D,)."""

  mean: Array
  logvar: Array

  def diagonal(self) -> DiagonalGaussian:
    return self

  def location(self) -> Array:
    return self.mean

  def sample(self, key: Array) -> tuple[Array, Array]:
    eps = jax.random.normal(key, self.mean.shape, self.mean.dtype)
    z = self.mean + jnp.exp(0.5 * self.logvar) * eps
    return z, self.log_prob(z)

  def log_prob(self, z: Array) -> Array:
    return gaussian.diagonal_log_prob(z, self.mean, self.logvar)

  def log_prob_per_dim(self, z: Array) -> Array:
    """(D,): log N(z_d; mean_d, exp(logvar_d)), whose sum is `log_prob(z)`."""
    return gaussian.diagonal_log_prob_per_dim(z, self.mean, self.logvar)

  def stop_gradient(self) -> DiagonalGaussian:
    return DiagonalGaussian(*jax.lax.stop_gradient(tuple(self)))

  def kl_standard_normal(self) -> Array:
    """KL(q || N(0, I)) = 0.5 sum(mean^2 + expm1(logvar) - logvar), >= 0."""
    return gaussian.gaussian_kl(self.mean, self.logvar)

  def kl_standard_normal_per_dim(self) -> Array:
    """(D,): KL(q_d || N(0, 1)) of each dimension, whose sum is `kl_standard_normal()`."""
    return gaussian.gaussian_kl_per_dim(self.mean, self.logvar)


class FullCovarianceGaussian(NamedTuple):
  """N(mean, L L^T); mean (D,), scale_tril L (D, D) lower triangular, diagonal > 0."""

  mean: Array
  scale_tril: Array

  def _log_det_scale(self) -> Array:
    return jnp.sum(jnp.log(jnp.diagonal(self.scale_tril)))

  def sample(self, key: Array) -> tuple[Array, Array]:
    eps = jax.random.normal(key, self.mean.shape, self.mean.dtype)
    z = self.mean + self.scale_tril @ eps
    return z, gaussian.standard_normal_log_prob(eps) - self._log_det_scale()

  def log_prob(self, z: Array) -> Array:
    eps = jax.scipy.linalg.solve_triangular(self.scale_tril, z - self.mean, lower=True)
    return gaussian.standard_normal_log_prob(eps) - self._log_det_scale()

  def stop_gradient(self) -> FullCovarianceGaussian:
    return FullCovarianceGaussian(*jax.lax.stop_gradient(tuple(self)))

  def location(self) -> Array:
    return self.mean

  def diagonal(self) -> DiagonalGaussian:
    """The diagonal Gaussian with the same marginals."""
    return DiagonalGaussian(self.mean, jnp.log(jnp.sum(jnp.square(self.scale_tril), -1)))

  def kl_standard_normal(self) -> Array:
    """KL(q || N(0, I)) = 0.5 (tr(L L^T) + |mean|^2 - D) - log|det L|, >= 0."""
    dim = self.mean.shape[-1]
    return (0.5 * (jnp.sum(jnp.square(self.scale_tril)) + jnp.sum(jnp.square(self.mean))
                   - dim) - self._log_det_scale())


def scale_tril(logvar: Array, lower: Array) -> Array:
  """The Cholesky factor L (D, D) with diagonal exp(logvar / 2) (logvar (D,): the
  log-variances of the conditionals) and strictly lower part `lower` (D (D - 1) / 2,),
  row by row. With `lower` = 0, N(mean, L L^T) is N(mean, diag(exp(logvar)))."""
  dim = logvar.shape[-1]
  rows, cols = np.tril_indices(dim, -1)
  return jnp.diag(jnp.exp(0.5 * logvar)).at[rows, cols].set(lower)


# ------------------------------------------------------------------ inverse autoregressive flow


def made_masks(dim: int, hidden: int) -> tuple[np.ndarray, np.ndarray]:
  """MADE's masks for inputs 1..D in order: (D, H) input-to-hidden and (H, D)
  hidden-to-output, so output d depends only on inputs < d (Germain et al. 2015)."""
  degrees_in = np.arange(1, dim + 1)
  degrees_hidden = np.arange(hidden) % max(dim - 1, 1) + 1
  mask_in = (degrees_hidden[None, :] >= degrees_in[:, None]).astype(np.float32)
  mask_out = (degrees_in[None, :] > degrees_hidden[:, None]).astype(np.float32)
  return mask_in, mask_out


class MADEStep(NamedTuple):
  """One IAF step's MADE network: z (D,) and a context h (C,) -> shift m, log-scale s,
  each (D,), output d a function of z_<d and h only.

  Attributes: w_in (D, H), w_context (C, H), b_in (H,), w_shift (H, D), b_shift (D,),
  w_scale (H, D), b_scale (D,). With every weight zero the step is the identity.
  """

  w_in: Array
  w_context: Array
  b_in: Array
  w_shift: Array
  b_shift: Array
  w_scale: Array
  b_scale: Array

  def __call__(self, z: Array, context: Array) -> tuple[Array, Array]:
    mask_in, mask_out = made_masks(self.w_in.shape[0], self.w_in.shape[1])
    h = jnp.tanh(z @ (self.w_in * mask_in) + context @ self.w_context + self.b_in)
    shift = h @ (self.w_shift * mask_out) + self.b_shift
    log_scale = jnp.tanh(h @ (self.w_scale * mask_out) + self.b_scale)  # in (-1, 1)
    return shift, log_scale

  def invert(self, y: Array, context: Array) -> tuple[Array, Array]:
    """(z, sum_d s_d) with y = z exp(s) + m, (m, s) = self(z, context): dim d in turn,
    from MADE's outputs d given z_<d. The hidden pre-activation grows by z_d's row of the
    masked input weights (a rank-one update), and the context's share of it is computed
    once, so a dim costs O(H), not a full MADE pass."""
    mask_in, mask_out = made_masks(self.w_in.shape[0], self.w_in.shape[1])
    w_in, w_shift, w_scale = self.w_in * mask_in, self.w_shift * mask_out, self.w_scale * mask_out

    def invert_one(d, carry):
      pre_activation, z, log_det = carry
      h = jnp.tanh(pre_activation)
      shift = h @ w_shift[:, d] + self.b_shift[d]
      log_scale = jnp.tanh(h @ w_scale[:, d] + self.b_scale[d])
      z_d = (y[d] - shift) * jnp.exp(-log_scale)
      return pre_activation + z_d * w_in[d], z.at[d].set(z_d), log_det + log_scale

    start = (context @ self.w_context + self.b_in, jnp.zeros_like(y), jnp.zeros((), y.dtype))
    _, z, log_det = jax.lax.fori_loop(0, y.shape[0], invert_one, start)
    return z, log_det


class InverseAutoregressiveFlow(NamedTuple):
  """A DiagonalGaussian base pushed through IAF steps: z_t = z_{t-1} exp(s_t) + m_t with
  (m_t, s_t) = MADE_t(z_{t-1} reversed every other step, context), log q(z_T) =
  log q(z_0) - sum_t sum_d s_t. `steps` is a MADEStep whose leaves have a leading steps
  axis (T, ...); `context` (C,) is the encoder's per-example summary h."""

  base: DiagonalGaussian
  steps: MADEStep
  context: Array

  def _step(self, t: int) -> MADEStep:
    return MADEStep(*(leaf[t] for leaf in self.steps))

  def _order(self, t: int, z: Array) -> Array:
    """Steps alternate the order of the dims, so each dim sees the others."""
    return z[::-1] if t % 2 else z

  def push(self, z0: Array) -> tuple[Array, Array]:
    """(z_T, sum of the log-determinants) for a base sample z0."""
    z, log_det = z0, jnp.zeros((), z0.dtype)
    for t in range(self.steps.b_in.shape[0]):
      ordered = self._order(t, z)
      shift, log_scale = self._step(t)(ordered, self.context)
      z = self._order(t, ordered * jnp.exp(log_scale) + shift)
      log_det = log_det + jnp.sum(log_scale)
    return z, log_det

  def sample(self, key: Array) -> tuple[Array, Array]:
    z0, log_q0 = self.base.sample(key)
    z, log_det = self.push(z0)
    return z, log_q0 - log_det

  def log_prob(self, z: Array) -> Array:
    """Inverts the steps and scores the base sample. The flow is autoregressive, so each
    step inverts one dim at a time: dim d needs MADE's outputs d only, whose hidden
    pre-activation grows by z_d's row of the masked input weights (a rank-one update), so
    a step costs D passes of O(H) after one O(C H) pass over the context, not D full
    MADE passes."""
    z = jnp.asarray(z)
    log_det = jnp.zeros((), z.dtype)
    for t in reversed(range(self.steps.b_in.shape[0])):
      ordered = self._order(t, z)
      previous, step_log_det = self._step(t).invert(ordered, self.context)
      log_det = log_det + step_log_det
      z = self._order(t, previous)
    return self.base.log_prob(z) - log_det

  def stop_gradient(self) -> InverseAutoregressiveFlow:
    return InverseAutoregressiveFlow(*jax.lax.stop_gradient(tuple(self)))

  def example_axes(self) -> InverseAutoregressiveFlow:
    """The steps are the model's, the same for every example (`example_axes`)."""
    return InverseAutoregressiveFlow(0, None, 0)

  def diagonal(self) -> DiagonalGaussian:
    """The base Gaussian (a starting point for AIS and the fit of q*, not a moment match)."""
    return self.base

  def location(self) -> Array:
    """The flow of the base's mean (a point of q, not its mean)."""
    return self.push(self.base.mean)[0]


def init_made_steps(key: Array, num_steps: int, dim: int, hidden: int,
                    context_dim: int, scale: float = 0.01) -> MADEStep:
  """Small random MADE weights for `num_steps` steps, zero biases (near the identity)."""
  keys = jax.random.split(key, 4)
  normal = lambda k, shape: scale * jax.random.normal(k, (num_steps,) + shape)
  zeros = lambda shape: jnp.zeros((num_steps,) + shape)
  return MADEStep(normal(keys[0], (dim, hidden)), normal(keys[1], (context_dim, hidden)),
                  zeros((hidden,)), normal(keys[2], (hidden, dim)), zeros((dim,)),
                  normal(keys[3], (hidden, dim)), zeros((dim,)))


# ------------------------------------------------------------------ stochastic layers


class Hierarchical(NamedTuple):
  """q(z|x) of L stochastic layers over z = concat(z_1, ..., z_L), (D_1 + ... + D_L,),
  in one of two orders:

    bottom-up (Burda et al. 2016):     q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1});
    top-down (Tomczak & Welling 2018's HVAE; ladder VAEs, Sonderby et al. 2016):
                                       q(z_L|x) q(z_{L-1}|x, z_L) ... q(z_1|x, z_2).

  Attributes:
    first: the layer drawn first, a posterior of this module (any family): q(z_1|x)
      bottom-up, q(z_L|x) top-down.
    upper: L - 1 callables, in the order of drawing, each from the layer just drawn to
      the next layer's q (a (mean, logvar) pair or a posterior): bottom-up the l-th maps
      z_l (D_l,) -> q(z_{l+1}|z_l); top-down the j-th maps z_{L+1-j} -> q(z_{L-j}|x,
      z_{L+1-j}) (j from 1). They close over x and the encoder's parameters.
    upper_stopped: the same callables at parameters whose gradient is stopped (for
      `stop_gradient`: gradients still flow through the layers drawn before, the path,
      as STL needs).
    sizes: (D_1, ..., D_L), static, bottom layer first in either order.
    top_down: the order, static.

  A decoder of such a model reads z_1 = z[:D_1] of the whole z (bottom-up) or any of its
  layers (top-down: p(x|z_1, ..., z_L)). Unlike the other families this is not a pytree
  of arrays (it holds callables): build it inside the traced function, as an encoder does.
  """

  first: Any
  upper: tuple[Callable[[Array], Any], ...]
  upper_stopped: tuple[Callable[[Array], Any], ...]
  sizes: tuple[int, ...]
  top_down: bool = False

  def _layers(self, z: Array) -> list[Array]:
    """z split into z_1 .. z_L."""
    return jnp.split(z, np.cumsum(self.sizes)[:-1])

  def _in_layer_order(self, drawn: list[Any]) -> list[Any]:
    """Per-layer values listed in the order of drawing, listed z_1 first."""
    return drawn[::-1] if self.top_down else drawn

  def sample(self, key: Array) -> tuple[Array, Array]:
    """The first layer from fold_in(key, 0), then the j-th one drawn after it from
    fold_in(key, j) given the layer drawn just before."""
    z, log_q = self.first.sample(jax.random.fold_in(key, 0))
    samples = [z]
    for j, conditional in enumerate(self.upper, start=1):
      z, log_q_layer = as_posterior(conditional(z)).sample(jax.random.fold_in(key, j))
      samples.append(z)
      log_q = log_q + log_q_layer
    return jnp.concatenate(self._in_layer_order(samples)), log_q

  def layer_log_probs(self, z: Array) -> Array:
    """(L,): the log-density of each layer of z given the layers it conditions on,
    z_1's first (bottom-up log q(z_1|x), log q(z_2|z_1), ...; top-down
    log q(z_1|x, z_2), ..., log q(z_L|x))."""
    return jnp.stack([layer.log_prob(z_l) for layer, z_l
                      in zip(self.layer_posteriors(z), self._layers(z))])

  def log_prob(self, z: Array) -> Array:
    return jnp.sum(self.layer_log_probs(z))

  def log_prob_per_dim(self, z: Array) -> Array:
    """(D_1 + ... + D_L,): each dimension's term of `log_prob(z)`, for layers that all
    factorise over their dimensions (AttributeError otherwise)."""
    return jnp.concatenate([layer.log_prob_per_dim(z_l) for layer, z_l
                            in zip(self.layer_posteriors(z), self._layers(z))])

  def layer_posteriors(self, z: Array) -> list[Any]:
    """Each layer's q given the layers of z it conditions on, as posteriors, z_1's
    first: [q(z_1|x), q(z_2|z_1), ...] bottom-up, [q(z_1|x, z_2), ..., q(z_L|x)]
    top-down."""
    drawn = self._in_layer_order(self._layers(z))
    return self._in_layer_order(
        [self.first] + [as_posterior(conditional(before))
                        for before, conditional in zip(drawn, self.upper)])

  def stop_gradient(self) -> Hierarchical:
    return Hierarchical(self.first.stop_gradient(), self.upper_stopped, self.upper_stopped,
                        self.sizes, self.top_down)

  def location(self) -> Array:
    """Each layer's location given the locations of the layers drawn before it."""
    return self._locate()[0]

  def diagonal(self) -> DiagonalGaussian:
    """The diagonal Gaussian of each layer's `diagonal()` given the locations of the
    layers drawn before it, stacked (a starting point for AIS and the fit of q*)."""
    return self._locate()[1]

  def _locate(self) -> tuple[Array, DiagonalGaussian]:
    """(`location()`, `diagonal()`) from one pass down the order of drawing."""
    layer, points, diagonals = self.first, [], []
    for conditional in self.upper + (None,):
      points.append(layer.location())
      diagonals.append(layer.diagonal())
      if conditional is not None:
        layer = as_posterior(conditional(points[-1]))
    diagonals = self._in_layer_order(diagonals)
    return (jnp.concatenate(self._in_layer_order(points)),
            DiagonalGaussian(jnp.concatenate([d.mean for d in diagonals]),
                             jnp.concatenate([d.logvar for d in diagonals])))
