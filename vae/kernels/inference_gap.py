"""Where the bound gap comes from: the approximation and the amortisation gap.

Cremer, Li & Duvenaud (2018) split the gap of the encoder's bound into two parts,

    log p(x) - ELBO[q_enc] = (log p(x) - ELBO[q*]) + (ELBO[q*] - ELBO[q_enc])
                           =  approximation gap   +  amortisation gap,

where q_enc(z|x) is the encoder's diagonal Gaussian and q*(z|x) the best diagonal
Gaussian for this x alone, found by optimising its mean and log-variance directly. The
approximation gap, KL(q* || p(z|x)), is what the family of diagonal Gaussians cannot
express (a correlated or multi-modal posterior); the amortisation gap,
KL(q_enc || p(z|x)) - KL(q* || p(z|x)) >= 0, is what the encoder loses by predicting q
from x with one network instead of fitting it per example. For an encoder of a richer
family (full covariance, a flow) the same split is also made with q* fitted in that
family (`Family`: its parameters for x, e.g. the encoder's outputs and the flow's
weights, and how they make q), whose approximation gap is what that family cannot
express.

`fit_posterior` finds q* for one example (`optimal_gaussian` in the diagonal family):
Adam (optax) on the reparameterised ELBO (`vae.bounds.elbo`, closed-form KL where there
is one, `num_samples` fresh samples per step) inside `lax.while_loop`, starting at the
encoder's output. Every `check_every` steps it scores
the ELBO on one fixed set of samples (common random numbers, so two checks differ by the
change of q, not by noise) and stops once `patience` checks in a row have not improved on
the best by more than `tolerance` nats, or after `max_steps`; it returns the best checked
q. `decompose_gap` then scores q_enc and q* on one more shared set of fresh samples (so the
selection of the best check does not bias ELBO[q*] upward) and returns both gaps against
the log p(x) estimate it is given (IWAE, AIS, or the exact value in the tests).

Checks and scores estimate the ELBO as the mean log weight, mean_k [log p(x, z_k) -
log q(z_k|x)] (`vae.bounds.elbo` with `analytic_kl=False`, the ELBO of
`vae.bounds.bound_gap`): its variance is Var_q[log p(z|x) - log q(z|x)], which vanishes
as q approaches the posterior, where these gaps are measured.

Every function works on ONE example, is pure JAX (no Flax) and is safe under `jax.jit`
and `jax.vmap`: a vmapped `while_loop` runs until the slowest example of the batch stops,
and keeps each finished example's state unchanged from its own stopping step.

Reference:
  Cremer, Li & Duvenaud, "Inference Suboptimality in Variational Autoencoders",
  ICML 2018.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import optax

from vae.kernels import batching, bounds, likelihoods

Array = jax.Array


class Family(NamedTuple):
  """A family of posteriors for one example, as the parameters to fit per example.

  Attributes:
    params: a pytree of arrays, where the fit starts (e.g. the encoder's outputs for x
      and, for a flow, its weights: the fit then gives the example its own copy).
    build: params -> the posterior (a (mean, logvar) pair or a `vae.kernels.posteriors` family).
  """

  params: Any
  build: Callable[[Any], Any]


class OptimalPosterior(NamedTuple):
  """The per-example q* = family.build(params) of the best check.

  Attributes:
    params: its parameters, a pytree like the family's.
    check_elbo: its ELBO on the fixed check samples (nats; biased upward by the choice
      of the best check, so report an ELBO on fresh samples instead).
    num_steps: Adam steps taken before the stopping rule fired (int32 scalar).
  """

  params: Any
  check_elbo: Array
  num_steps: Array


class OptimalGaussian(NamedTuple):
  """The per-example diagonal Gaussian q* = N(mean, diag(exp(logvar))).

  Attributes:
    mean, logvar: (D,) parameters of q*.
    check_elbo, num_steps: as in OptimalPosterior.
  """

  mean: Array
  logvar: Array
  check_elbo: Array
  num_steps: Array


def fit_posterior(
    key: Array,
    x: Array,
    decode: bounds.Decoder,
    family: Family,
    *,
    likelihood: Union[str, likelihoods.LogLikelihood] = "bernoulli",
    prior: bounds.Prior | None = None,
    num_samples: int = 100,
    learning_rate: float = 1e-2,
    max_steps: int = 2000,
    check_every: int = 50,
    patience: int = 2,
    tolerance: float = 0.01,
) -> OptimalPosterior:
  """Fits q*(z|x) = argmax over the family of ELBO(x; q) for one example.

  Args:
    key: PRNG key (training samples and check samples are split from it).
    x: one example, any shape.
    decode, likelihood, prior: the decoder, likelihood and prior, as in
      `vae.bounds.elbo` (the KL is closed-form where it has one, else Monte Carlo).
    family: the parameters to fit, from where they start, and how they make q.
    num_samples: reparameterised samples per Adam step, and in each check.
    learning_rate: Adam's step size on the family's parameters.
    max_steps: the most Adam steps taken (rounded up to a multiple of check_every).
    check_every: Adam steps between two checks of the ELBO.
    patience: stop after this many checks in a row without an improvement.
    tolerance: the smallest ELBO improvement (nats) that counts as one.

  Returns:
    OptimalPosterior of the best check.
  """
  if min(num_samples, max_steps, check_every, patience) < 1:
    raise ValueError("num_samples, max_steps, check_every and patience must be >= 1.")
  optimizer = optax.adam(learning_rate)
  train_key, check_key = jax.random.split(key)

  def elbo_of(sample_key, params, analytic_kl):
    return bounds.elbo(sample_key, x, lambda _: family.build(params), decode,
                       num_samples=num_samples, likelihood=likelihood,
                       analytic_kl=analytic_kl, prior=prior).elbo

  loss_and_grad = jax.value_and_grad(lambda params, k: -elbo_of(k, params, True))

  def adam_step(carry, step):
    params, opt_state = carry
    _, grads = loss_and_grad(params, jax.random.fold_in(train_key, step))
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  def cond(state):
    step, _, _, _, _, stalls = state
    return (step < max_steps) & (stalls < patience)

  def body(state):
    step, params, opt_state, best_params, best_elbo, stalls = state
    (params, opt_state), _ = jax.lax.scan(
        adam_step, (params, opt_state), step + jnp.arange(check_every))
    check = elbo_of(check_key, params, False)
    better = check > best_elbo
    best_params = jax.tree.map(lambda new, old: jnp.where(better, new, old), params,
                               best_params)
    stalls = jnp.where(check > best_elbo + tolerance, 0, stalls + 1)
    return (step + check_every, params, opt_state, best_params,
            jnp.maximum(check, best_elbo), stalls)

  params = jax.tree.map(jnp.asarray, family.params)
  init = (jnp.zeros((), jnp.int32), params, optimizer.init(params), params,
          elbo_of(check_key, params, False), jnp.zeros((), jnp.int32))
  step, _, _, best_params, best_elbo, _ = jax.lax.while_loop(cond, body, init)
  return OptimalPosterior(params=best_params, check_elbo=best_elbo, num_steps=step)


def optimal_gaussian(key: Array, x: Array, decode: bounds.Decoder, init_mean: Array,
                     init_logvar: Array, **options) -> OptimalGaussian:
  """`fit_posterior` over diagonal Gaussians from N(init_mean, diag(exp(init_logvar))),
  each (D,), e.g. the encoder's output for x; `options` as there."""
  best = fit_posterior(key, x, decode, Family((init_mean, init_logvar), lambda p: p),
                       **options)
  return OptimalGaussian(*best.params, check_elbo=best.check_elbo, num_steps=best.num_steps)


class GapDecomposition(NamedTuple):
  """The bound gap of one example split into its two parts, in nats.

  Attributes:
    log_px: the log p(x) estimate given to `decompose_gap`.
    elbo_encoder: ELBO[q_enc], the encoder's bound.
    elbo_optimal: ELBO[q*], the best diagonal Gaussian's bound (>= elbo_encoder up to
      Monte Carlo error).
    total_gap: log_px - elbo_encoder = approximation_gap + amortization_gap.
    approximation_gap: log_px - elbo_optimal, an estimate of KL(q* || p(z|x)).
    amortization_gap: elbo_optimal - elbo_encoder.
    num_steps: Adam steps the fit of q* took.
    mean, logvar: (D,) parameters of q*.
    elbo_family, approximation_gap_family, amortization_gap_family, num_steps_family:
      the same with q* fitted in the encoder's own family (`family` of `decompose_gap`;
      without one, the diagonal q*'s values).
  """

  log_px: Array
  elbo_encoder: Array
  elbo_optimal: Array
  total_gap: Array
  approximation_gap: Array
  amortization_gap: Array
  num_steps: Array
  mean: Array
  logvar: Array
  elbo_family: Array
  approximation_gap_family: Array
  amortization_gap_family: Array
  num_steps_family: Array


def decompose_gap(
    key: Array,
    x: Array,
    encode: bounds.Encoder,
    decode: bounds.Decoder,
    log_px: Array,
    *,
    likelihood: Union[str, likelihoods.LogLikelihood] = "bernoulli",
    prior: bounds.Prior | None = None,
    num_elbo_samples: int = 1000,
    family: Family | None = None,
    **optimizer_options,
) -> GapDecomposition:
  """Approximation and amortisation gap of one example (Cremer et al. 2018).

  Args:
    key: PRNG key.
    x: one example, any shape.
    encode, decode, likelihood, prior: the model, as in `vae.bounds.elbo`. The first
      q* is a diagonal Gaussian whatever the encoder's family, fitted from a diagonal
      Gaussian near q (`diagonal()` of `vae.kernels.posteriors`); ELBO[q_enc] is the encoder's
      own q's.
    log_px: scalar estimate of log p(x) (IWAE_K, AIS or exact); its error goes into the
      approximation gap (an underestimate of log p(x) shrinks it).
    num_elbo_samples: samples of the final ELBO of q_enc and of each q*, the same
      samples for all, so the amortisation gaps carry little Monte Carlo noise.
    family: the encoder's own family for x (e.g. a full-covariance Gaussian from the
      encoder's outputs), to fit a second q* in it; None: only the diagonal q*.
    **optimizer_options: passed to `fit_posterior` (num_samples, learning_rate,
      max_steps, check_every, patience, tolerance).

  Returns:
    GapDecomposition of scalars in nats (and q*'s parameters).
  """
  fit_key, score_key = jax.random.split(key)
  posterior = bounds.as_posterior(encode(x))
  mean, logvar = posterior.diagonal()
  best = optimal_gaussian(fit_key, x, decode, mean, logvar, likelihood=likelihood,
                          prior=prior, **optimizer_options)

  def elbo_of(q):
    return bounds.elbo(score_key, x, lambda _: q, decode, num_samples=num_elbo_samples,
                       likelihood=likelihood, analytic_kl=False, prior=prior).elbo

  elbo_encoder = elbo_of(posterior)
  elbo_optimal = elbo_of((best.mean, best.logvar))
  elbo_family, num_steps_family = elbo_optimal, best.num_steps
  if family is not None:
    fitted = fit_posterior(jax.random.fold_in(fit_key, 1), x, decode, family,
                           likelihood=likelihood, prior=prior, **optimizer_options)
    elbo_family = elbo_of(family.build(fitted.params))
    num_steps_family = fitted.num_steps
  return GapDecomposition(
      log_px=log_px,
      elbo_encoder=elbo_encoder,
      elbo_optimal=elbo_optimal,
      total_gap=log_px - elbo_encoder,
      approximation_gap=log_px - elbo_optimal,
      amortization_gap=elbo_optimal - elbo_encoder,
      num_steps=best.num_steps,
      mean=best.mean,
      logvar=best.logvar,
      elbo_family=elbo_family,
      approximation_gap_family=log_px - elbo_family,
      amortization_gap_family=elbo_family - elbo_encoder,
      num_steps_family=num_steps_family,
  )


def decompose_gap_batch(key: Array, x: Array, encode: bounds.Encoder,
                        decode: bounds.Decoder, log_px: Array, **kwargs) -> GapDecomposition:
  """`decompose_gap` over a batch x (B, ...) with log_px (B,): example i's key is
  fold_in(key, i) (`vae.kernels.batching`); every output gains a leading (B,) axis."""
  return batching.map_examples(
      lambda k, xi, lp: decompose_gap(k, xi, encode, decode, lp, **kwargs), key, x, log_px)
