"""Annealed importance sampling (AIS) with HMC transitions: a second estimate of log p(x).

IWAE (`vae.bounds.iwae_bound`) weighs samples of the encoder's q(z|x), so it is only as
good as q is; AIS (Neal 2001) does not lean on q, which makes it the cross-check Wu et
al. (2017) use for decoder-based models. For one example it estimates log Z with
Z = integral of f_T(z) = p(x, z) over z, i.e. log p(x), by moving chains from a
normalised base f_0 (the prior p(z), or the encoder's q(z|x)) to the posterior
along the geometric path

    log f_t(z) = log f_0(z) + beta_t (log p(x, z) - log f_0(z)),  0 = beta_0 < ... < beta_T = 1.

Each chain draws z_0 ~ f_0, then for t = 1..T adds the weight increment
(beta_t - beta_{t-1}) (log p(x, z_{t-1}) - log f_0(z_{t-1})) to its log weight and moves
z with one Hamiltonian Monte Carlo transition (leapfrog, Metropolis correction) that
leaves f_t invariant. Each weight exp(log w_c) is an unbiased estimate of p(x), so

    log p_hat(x) = log (1/C) sum_c exp(log w_c)

is, like IWAE_K, a stochastic lower bound (Jensen) that tightens as T and C grow.

Step size: HMC needs a step size that suits each f_t, which narrows from the prior to the
posterior. A pilot pass (its own random numbers, its weights discarded) adapts it after
every transition toward `target_acceptance`, log eps <- log eps + rate * (mean acceptance
probability - target); the estimate then comes from a second pass that uses the pilot's
step-size schedule as fixed constants. Adapting inside the estimating pass would make the
kernels depend on the chains' own past, which breaks the unbiasedness of exp(log w);
the pilot costs a second pass (2 T L C gradient evaluations per example in all).

Every function here works on ONE example, is pure JAX (no Flax) and is safe under
`jax.jit` and `jax.vmap` (the annealing steps run in `lax.scan`, chains in `jax.vmap`).
The model is two callables as in `vae.kernels` (`encode(x) -> (mean, logvar)` or a
posterior, `decode(z) -> likelihood parameters`), a likelihood name or callable and a
prior, or, for `ais_log_normalizer`, any `log_joint(z)` and base.

References:
  Neal, "Annealed importance sampling", Statistics and Computing 2001.
  Neal, "MCMC using Hamiltonian dynamics", Handbook of MCMC 2011.
  Wu, Burda, Salakhutdinov & Grosse, "On the quantitative analysis of decoder-based
    generative models", ICLR 2017.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from vae.kernels import batching, bounds, likelihoods, posteriors

Array = jax.Array
LogDensity = Callable[[Array], Array]

STARTS = ("prior", "encoder")
SCHEDULES = ("sigmoid", "linear")


# ------------------------------------------------------------------ annealing schedules


def linear_schedule(num_steps: int) -> np.ndarray:
  """beta_t = t / T for t = 0..T: (T + 1,) float64, from 0 to 1."""
  return np.linspace(0.0, 1.0, num_steps + 1)


def sigmoid_schedule(num_steps: int, sharpness: float = 4.0) -> np.ndarray:
  """The sigmoid schedule of Grosse et al. (2015) used by Wu et al. (2017).

  beta_t = (s_t - s_0) / (s_T - s_0) with s_t = sigmoid(sharpness * (2 t / T - 1)): small
  steps near beta = 0 and 1, where the intermediate distributions change fastest.

  Returns:
    (T + 1,) float64, increasing from exactly 0 to exactly 1.
  """
  s = 1.0 / (1.0 + np.exp(-sharpness * (2.0 * np.arange(num_steps + 1) / num_steps - 1.0)))
  return (s - s[0]) / (s[-1] - s[0])


def make_schedule(schedule: str, num_steps: int) -> np.ndarray:
  """`sigmoid_schedule` or `linear_schedule` by name."""
  if schedule not in SCHEDULES:
    raise ValueError(f"schedule={schedule!r} is not one of {SCHEDULES}.")
  if num_steps < 1:
    raise ValueError(f"num_steps={num_steps} must be >= 1.")
  return sigmoid_schedule(num_steps) if schedule == "sigmoid" else linear_schedule(num_steps)


# ------------------------------------------------------------------ HMC on f_beta


class _Point(NamedTuple):
  """A chain's position with both ends of the path evaluated there (no batch axis)."""

  z: Array  # (D,)
  log_base: Array  # log f_0(z), scalar
  log_joint: Array  # log p(x, z), scalar
  grad_base: Array  # (D,)
  grad_joint: Array  # (D,)


def _evaluate(z: Array, log_base: LogDensity, log_joint: LogDensity) -> _Point:
  base, grad_base = jax.value_and_grad(log_base)(z)
  joint, grad_joint = jax.value_and_grad(log_joint)(z)
  return _Point(z, base, joint, grad_base, grad_joint)


def _log_f(point: _Point, beta: Array) -> Array:
  """log f_beta(z) = (1 - beta) log f_0(z) + beta log p(x, z); -inf where not finite."""
  value = (1.0 - beta) * point.log_base + beta * point.log_joint
  return jnp.where(jnp.isfinite(value), value, -jnp.inf)


def _grad_log_f(point: _Point, beta: Array) -> Array:
  return (1.0 - beta) * point.grad_base + beta * point.grad_joint


def _hmc_transition(key: Array, point: _Point, beta: Array, step_size: Array,
                    num_leapfrog_steps: int, log_base: LogDensity, log_joint: LogDensity
                    ) -> tuple[_Point, Array]:
  """One HMC transition of one chain, invariant for f_beta.

  Unit mass matrix; `num_leapfrog_steps` leapfrog steps of size `step_size`, then a
  Metropolis test on the Hamiltonian H = -log f_beta(z) + |p|^2 / 2. Non-finite
  proposals are rejected.

  Returns:
    (the new point, the acceptance probability min(1, exp(-dH))).
  """
  momentum_key, accept_key = jax.random.split(key)
  momentum = jax.random.normal(momentum_key, point.z.shape, point.z.dtype)

  def leapfrog(carry, _):
    q, p = carry
    p = p + 0.5 * step_size * _grad_log_f(q, beta)
    q = _evaluate(q.z + step_size * p, log_base, log_joint)
    p = p + 0.5 * step_size * _grad_log_f(q, beta)
    return (q, p), None

  (proposal, new_momentum), _ = jax.lax.scan(
      leapfrog, (point, momentum), None, length=num_leapfrog_steps)
  log_ratio = (_log_f(proposal, beta) - 0.5 * jnp.sum(jnp.square(new_momentum))
               - _log_f(point, beta) + 0.5 * jnp.sum(jnp.square(momentum)))
  log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
  accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
  accept = jnp.log(jax.random.uniform(accept_key, (), point.z.dtype)) < log_ratio
  new_point = jax.tree.map(lambda a, b: jnp.where(accept, a, b), proposal, point)
  return new_point, accept_prob


# ------------------------------------------------------------------ AIS


class AISResult(NamedTuple):
  """AIS estimates of one example, in nats.

  Attributes:
    log_px: log (1/C) sum_c exp(log_weights_c), the estimate of log Z = log p(x).
    log_weights: (C,) log importance weight of each chain.
    acceptance_rate: mean HMC acceptance probability over transitions and chains of
      the estimating pass (the pilot aims it at `target_acceptance`).
    step_sizes: (T,) leapfrog step size of each transition (from the pilot).
  """

  log_px: Array
  log_weights: Array
  acceptance_rate: Array
  step_sizes: Array


def _initial_chains(key: Array, base, num_chains: int) -> Array:
  """(C, D) draws of the base: a diagonal Gaussian from one (C, D) normal array, any
  other base from one key per chain (`sample(key)` -> z, or (z, log-density))."""
  if isinstance(base, posteriors.DiagonalGaussian):
    eps = jax.random.normal(key, (num_chains,) + base.mean.shape, base.mean.dtype)
    return base.mean + jnp.exp(0.5 * base.logvar) * eps
  draw = lambda k: jax.tree.leaves(base.sample(k))[0]
  return jax.vmap(draw)(jax.random.split(key, num_chains))


def _anneal(key: Array, adapt: Array, step_sizes: Array, base, log_joint: LogDensity,
            betas: np.ndarray, num_chains: int, num_leapfrog_steps: int,
            initial_step_size: float, target_acceptance: float, adaptation_rate: float
            ) -> tuple[Array, Array, Array]:
  """One AIS pass: (log weights (C,), step sizes used (T,), mean acceptance (T,)).

  adapt (traced bool): adapt the step size online from `initial_step_size` (the pilot),
  else use `step_sizes` (T,) as given.
  """
  init_key, transition_key = jax.random.split(key)
  z0 = _initial_chains(init_key, base, num_chains)
  dtype = z0.dtype
  log_base = base.log_prob
  points = jax.vmap(lambda z: _evaluate(z, log_base, log_joint))(z0)
  betas = jnp.asarray(betas, dtype)
  transition = jax.vmap(_hmc_transition, in_axes=(0, 0, None, None, None, None, None))

  def body(carry, inputs):
    points, log_w, log_step = carry
    t, fixed_step = inputs
    log_w = log_w + (betas[t] - betas[t - 1]) * (points.log_joint - points.log_base)
    step = jnp.where(adapt, jnp.exp(log_step), fixed_step)
    keys = jax.random.split(jax.random.fold_in(transition_key, t), num_chains)
    points, accept_prob = transition(keys, points, betas[t], step, num_leapfrog_steps,
                                     log_base, log_joint)
    mean_accept = jnp.mean(accept_prob)
    log_step = log_step + adaptation_rate * (mean_accept - target_acceptance)
    return (points, log_w, log_step), (step, mean_accept)

  init = (points, jnp.zeros(num_chains, dtype), jnp.log(jnp.asarray(initial_step_size, dtype)))
  (_, log_w, _), (used_steps, accept) = jax.lax.scan(
      body, init, (jnp.arange(1, len(betas)), step_sizes))
  return log_w, used_steps, accept


def ais_log_normalizer(
    key: Array,
    log_joint: LogDensity,
    base,
    *,
    betas: np.ndarray,
    num_chains: int = 16,
    num_leapfrog_steps: int = 5,
    initial_step_size: float = 0.1,
    target_acceptance: float = 0.65,
    adaptation_rate: float = 0.1,
) -> AISResult:
  """AIS estimate of log Z, Z = integral of exp(log_joint(z)) dz, from a normalised base.

  Args:
    key: PRNG key (the pilot and the estimating pass use keys split from it).
    log_joint: z (D,) -> scalar unnormalised log density, e.g. log p(x, z) for one x.
    base: f_0, with `log_prob(z)` and `sample(key)` (-> z, or (z, log-density)): a
      `vae.kernels.posteriors.DiagonalGaussian`, or a prior of `vae.kernels.priors` (a
      learned mixture, a VampPrior, a hierarchy of layers).
    betas: (T + 1,) static schedule, increasing from 0 to 1 (e.g. `sigmoid_schedule(T)`).
    num_chains: C, independent chains whose weights are averaged.
    num_leapfrog_steps: L, leapfrog steps per HMC transition.
    initial_step_size: the pilot's first leapfrog step size.
    target_acceptance: acceptance probability the pilot steers the step size toward.
    adaptation_rate: the pilot's log step size moves by this times (acceptance - target)
      after each transition.

  Returns:
    AISResult; log_px is the estimate of log Z in nats.
  """
  betas = np.asarray(betas, np.float64)
  if betas.ndim != 1 or len(betas) < 2 or betas[0] != 0.0 or betas[-1] != 1.0 or np.any(
      np.diff(betas) <= 0):
    raise ValueError("betas must increase strictly from 0 to 1, with at least 2 values.")
  if num_chains < 1 or num_leapfrog_steps < 1:
    raise ValueError(f"num_chains={num_chains} and num_leapfrog_steps={num_leapfrog_steps} "
                     "must be >= 1.")

  def one_pass(step_sizes, inputs):
    pass_key, adapt = inputs
    log_w, used_steps, accept = _anneal(
        pass_key, adapt, step_sizes, base, log_joint, betas, num_chains,
        num_leapfrog_steps, initial_step_size, target_acceptance, adaptation_rate)
    return used_steps, (log_w, accept)

  # The pilot (adapt=True) and the estimating pass share one traced body, so the
  # annealing loop compiles once; the pilot's step sizes feed the second pass.
  dtype = jax.eval_shape(lambda k: _initial_chains(k, base, 1), key).dtype
  step_sizes, (log_w, accept) = jax.lax.scan(
      one_pass, jnp.zeros(len(betas) - 1, dtype),
      (jax.random.split(key), jnp.array([True, False])))
  log_w, accept = log_w[1], accept[1]
  log_px = jax.nn.logsumexp(log_w) - jnp.log(num_chains)
  return AISResult(log_px=log_px, log_weights=log_w, acceptance_rate=jnp.mean(accept),
                   step_sizes=step_sizes)


def ais(
    key: Array,
    x: Array,
    encode: bounds.Encoder,
    decode: bounds.Decoder,
    *,
    num_steps: int = 500,
    num_chains: int = 16,
    num_leapfrog_steps: int = 5,
    likelihood: Union[str, likelihoods.LogLikelihood] = "bernoulli",
    start: str = "prior",
    schedule: str = "sigmoid",
    initial_step_size: float = 0.1,
    target_acceptance: float = 0.65,
    adaptation_rate: float = 0.1,
    prior: bounds.Prior | None = None,
) -> AISResult:
  """AIS estimate of log p(x) for one example of a VAE.

  The target is log p(x, z) = log p(x|z) + log p(z), annealed from the prior
  (`start="prior"`, the path of Wu et al. 2017; any prior with `sample`, learned or of
  several layers) or from a diagonal Gaussian near the encoder's q(z|x)
  (`start="encoder"`: q itself for a diagonal q, its `diagonal()` otherwise; shorter when
  q is good, but then no longer independent of it).

  Args:
    key: PRNG key.
    x: one example, any shape.
    encode, decode, likelihood: the model, as in `vae.bounds.elbo`.
    num_steps: T, annealing steps (intermediate distributions).
    num_chains, num_leapfrog_steps, initial_step_size: as in `ais_log_normalizer`.
    target_acceptance, adaptation_rate: as in `ais_log_normalizer`.
    start: "prior" or "encoder", the base distribution f_0.
    schedule: "sigmoid" or "linear" spacing of the betas.
    prior: p(z), as in `vae.bounds.elbo` (None for N(0, I)).

  Returns:
    AISResult of one example; log_px in nats.
  """
  if start not in STARTS:
    raise ValueError(f"start={start!r} is not one of {STARTS}.")
  if start == "prior" and prior is not None and not hasattr(prior, "sample"):
    raise ValueError("AIS from the prior needs a prior with sample(key); start from the "
                     "encoder.")
  log_likelihood = likelihoods.get_log_likelihood(likelihood)
  log_prior = bounds.log_prior_fn(prior)
  base = bounds.as_posterior(encode(x)).diagonal()
  if start == "prior":
    base = prior if prior is not None else posteriors.DiagonalGaussian(
        jnp.zeros_like(base.mean), jnp.zeros_like(base.logvar))

  def log_joint(z):
    return log_likelihood(x, decode(z)) + log_prior(z)

  return ais_log_normalizer(
      key, log_joint, base, betas=make_schedule(schedule, num_steps),
      num_chains=num_chains, num_leapfrog_steps=num_leapfrog_steps,
      initial_step_size=initial_step_size, target_acceptance=target_acceptance,
      adaptation_rate=adaptation_rate)


def ais_batch(key: Array, x: Array, encode: bounds.Encoder, decode: bounds.Decoder,
              **kwargs) -> AISResult:
  """`ais` over a batch x of shape (B, ...): example i's key is fold_in(key, i)
  (`vae.kernels.batching`); every output gains a leading (B,) axis."""
  return batching.map_examples(lambda k, xi: ais(k, xi, encode, decode, **kwargs), key, x)
