"""The update step, pure: train state, optimiser, loss, the jitted block of steps, and
the metric accumulator. No I/O: `vae.training.runs` feeds it and `vae.training.train` loops over it.

Several runs that differ only in VECTORIZED_FIELDS keep every array shape, so they
train together in one program, vmapped over a leading runs axis of every state array
(their per-run values enter through `hyperparams`); runs that also differ in
model.latent_dim do so padded to the largest (`vae.training.padded_latents`).
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vae.kernels import batching, bounds, collapse, padding
from vae.models import Model, with_used_latents
from vae.runtime import distributed

# Config fields that keep every array shape, so runs differing only in them can be trained
# together in one program, vmapped over a leading runs axis.
VECTORIZED_FIELDS = ("seed", "loss.beta", "loss.kl_warmup_steps", "optimizer.learning_rate")

# Summed over every step between two logs, except grad_norm: over the last step of each
# block of steps_per_dispatch steps (see make_train_block). A model of several stochastic
# layers adds the KL of each (`train_metric_names`).
TRAIN_METRICS = ("loss", "objective", "reconstruction", "kl", "elbo", "beta", "grad_norm")
_COUNTERS = ("count", "first_nonfinite_step")
NO_BAD_STEP = np.iinfo(np.int32).max
RUNS_AXIS = "runs"  # the vmapped axis of runs trained together (`make_train_block`)


# ------------------------------------------------------------------ state and optimiser


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: the number of updates applied.
  params: Any
  opt_state: Any
  # The exponential moving average of params (config.train.ema_decay > 0), else None
  # (then the state's pytree is that of runs saved before the average existed).
  ema_params: Any = None


def checkpoint_tree(state: TrainState) -> dict[str, Any]:
  """The state as checkpoints hold it: a dict of its fields, the average only where the
  run keeps one, so a run without it has the layout of versions before it (and resumes
  from their checkpoints)."""
  tree = {"step": state.step, "params": state.params, "opt_state": state.opt_state}
  if state.ema_params is not None:
    tree["ema_params"] = state.ema_params
  return tree


def from_checkpoint_tree(tree: dict[str, Any]) -> TrainState:
  """The inverse of `checkpoint_tree`."""
  return TrainState(tree["step"], tree["params"], tree["opt_state"], tree.get("ema_params"))


def evaluated_params(state: TrainState) -> Any:
  """The params a run evaluates, shows, keeps as its best and `load_params` returns: the
  average when it keeps one (config.train.ema_decay > 0, `params_label` "ema")."""
  return state.params if state.ema_params is None else state.ema_params


def params_label(config: ml_collections.ConfigDict) -> str:
  """Which params `evaluated_params` returns for a run of `config`, as its logs name
  them: "ema" when it keeps the params' average (config.train.ema_decay > 0), else "raw"."""
  return "ema" if config.train.get("ema_decay", 0.0) > 0 else "raw"


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
  """The average's decay at the update after `step` updates: min(decay, (1 + step) /
  (10 + step)), so early averages forget the initialisation quickly (TensorFlow's
  ExponentialMovingAverage with num_updates)."""
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def hyperparams(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """The traced per-run values of the loss's VECTORIZED_FIELDS (the seed enters through
  keys, the learning rate through the optimiser state), the latents a padded run uses
  (`latent_dim`), and `frozen`: the host sets it
  for a run of a vectorised group whose loss went non-finite (`make_train_block`)."""
  return {"beta": np.float32(config.loss.beta),
          "kl_warmup_steps": np.float32(config.loss.kl_warmup_steps),
          "latent_dim": np.int32(config.model.latent_dim),
          "frozen": np.bool_(False)}


def unit_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """step -> the learning rate's multiplier in [0, 1]: linear warm-up from 0, then
  constant, cosine decay to 0 at train.num_steps (a warm-up as long as the run or
  longer fills it), or "piecewise": decay_factor**j after the j-th of decay_boundaries
  (Burda et al.'s schedule)."""
  opt = config.optimizer
  if opt.schedule == "cosine" and 0 < opt.warmup_steps < config.train.num_steps:
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, opt.warmup_steps,
                                              config.train.num_steps)
  if opt.schedule == "cosine" and opt.warmup_steps == 0:  # (optax logs a 0-step warm-up)
    return optax.cosine_decay_schedule(1.0, config.train.num_steps)
  # (optax's warm-up of 0 steps would stay at its initial value, 0, for ever.)
  warmup = (optax.warmup_constant_schedule(0.0, 1.0, opt.warmup_steps)
            if opt.warmup_steps > 0 else optax.constant_schedule(1.0))
  if opt.schedule == "piecewise":
    decay = optax.piecewise_constant_schedule(
        1.0, {int(b): opt.decay_factor for b in opt.decay_boundaries})
    return lambda step: warmup(step) * decay(step)
  return warmup


def normalize_each_gradient(eps: float = 1e-7) -> optax.GradientTransformation:
  """Each parameter tensor's gradient divided by its own L2 norm (+ eps): with Adam after
  it, Tomczak & Welling's `AdamNormGrad` (config.optimizer.normalize_gradients)."""
  return optax.stateless(lambda updates, params: jax.tree.map(
      lambda g: g / (jnp.sqrt(jnp.sum(jnp.square(g))) + eps), updates))


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam at optimizer.learning_rate * unit_schedule(config)(step), optional clipping,
  optionally on gradients normalised tensor by tensor (`normalize_each_gradient`).

  Both factors are hyperparameters kept in the optimiser state (`optax.inject_hyperparams`):
  the peak, set at `init`, so that runs trained together (vmapped) each keep their own;
  the schedule's value, at every update, so `learning_rate` reads the rate applied.
  """
  clip_norm = config.optimizer.grad_clip_norm

  def adam(peak_learning_rate, schedule_scale):
    return optax.chain(*([optax.clip_by_global_norm(clip_norm)] if clip_norm else []),
                       *([normalize_each_gradient()]
                         if config.optimizer.get("normalize_gradients") else []),
                       optax.scale_by_adam(eps=config.optimizer.adam_eps),
                       optax.scale(schedule_scale),
                       optax.scale(-peak_learning_rate))

  return optax.inject_hyperparams(adam)(
      peak_learning_rate=config.optimizer.learning_rate,
      schedule_scale=unit_schedule(config))


def learning_rate(state: TrainState) -> jax.Array:
  """The learning rate of the last update applied to `state` (0 before the first)."""
  hyperparameters = state.opt_state.hyperparams
  return hyperparameters["peak_learning_rate"] * hyperparameters["schedule_scale"]


def init_state(model: Model, config: ml_collections.ConfigDict, key: jax.Array,
               data_mean: jax.Array | None = None) -> TrainState:
  """A fresh state at step 0: params from `key` (and the training images' per-pixel mean
  `data_mean` (H, W, C), for config.model.decoder_bias_init "data_mean"), the optimiser of
  the config."""
  params = model.init(key, data_mean)
  ema_params = params if config.train.ema_decay > 0 else None
  return TrainState(jnp.zeros((), jnp.int32), params, make_optimizer(config).init(params),
                    ema_params)


def beta_at(step: jax.Array, hp: dict[str, jax.Array]) -> jax.Array:
  """The KL weight at `step`: beta, ramped linearly from 0 over kl_warmup_steps (if > 0)."""
  warmup = hp["kl_warmup_steps"]
  ramp = jnp.where(warmup > 0, jnp.minimum(1.0, step / jnp.maximum(warmup, 1.0)), 1.0)
  return hp["beta"] * ramp


# ------------------------------------------------------------------ the loss


def train_metric_names(model: Model) -> tuple[str, ...]:
  """The logged train metrics of `model`: TRAIN_METRICS, then kl_z1, ..., kl_zL for a model
  of several stochastic layers."""
  return TRAIN_METRICS + model.layer_kl_names


def _layer_kls(model, key, x, encode, prior, num_samples):
  """{kl_z1: (B,), ...} from the samples of `bounds.elbo_batch(key, x, ...)`, no gradient."""
  kls = batching.map_examples(
      lambda k, xi: bounds.layer_kls(k, xi, encode, prior=prior, num_samples=num_samples),
      key, x)
  kls = jax.lax.stop_gradient(kls)
  return {key: kls[:, layer] for layer, key in enumerate(model.layer_kl_names)}


def _free_bits_kl(key, x, encode, prior, num_samples, threshold, used):
  """sum_d max(threshold, mean over the batch of KL_d) over the `used` dimensions (None:
  all): the free-bits KL of a batch, with the samples of `bounds.elbo_batch(key, x, ...)`
  where it is not in closed form."""
  kl_dims = batching.map_examples(
      lambda k, xi: collapse.kl_per_dim(k, xi, encode, prior=prior, num_samples=num_samples),
      key, x)
  return collapse.free_bits_kl(jnp.mean(kl_dims, axis=0), threshold, used)


def make_loss_fn(model: Model, loss_config: ml_collections.ConfigDict):
  """Returns fn(params, key, x (B, H, W, C), beta, num_latents=None) -> (loss, metrics), in
  nats per example; `num_latents` (may be traced): a padded model's run uses only its
  first num_latents latent dimensions (`vae.models.with_used_latents`).

  loss = -mean(objective). For "elbo" the objective is reconstruction - beta * kl (with
  free_bits > 0: beta * `collapse.free_bits_kl` of the batch's mean KL per dimension); for
  the IWAE family ("iwae", "miwae", "piwae", "ciwae": `bounds.bound_objective`, with the
  gradient of `gradient_estimator`) it is that bound with K = num_samples, and the ELBO
  terms are logged from one extra sample without gradient. `elbo` in the metrics is always the beta = 1 bound. With
  several stochastic layers the metrics add each layer's KL (`train_metric_names`), from the
  samples of the logged ELBO terms.
  """

  def loss_fn(params, key, x, beta, num_latents=None):
    used = None
    if num_latents is not None:
      params = with_used_latents(params, num_latents)
      used = padding.used_dimensions(num_latents, model.latent_dim)
    encode, decode = model.bind(params)
    prior = model.prior(params)  # once per batch (the VampPrior encodes its inputs)
    estimator = loss_config.gradient_estimator
    if loss_config.objective == "elbo":
      terms = bounds.elbo_batch(key, x, encode, decode, beta=beta,
                                num_samples=loss_config.num_samples,
                                likelihood=model.likelihood,
                                analytic_kl=loss_config.analytic_kl, prior=prior,
                                gradient_estimator=estimator)
      objective = terms.objective
      if loss_config.free_bits:
        objective = terms.reconstruction - beta * _free_bits_kl(
            key, x, encode, prior, loss_config.num_samples, loss_config.free_bits, used)
    else:
      if loss_config.objective == "iwae" and estimator == "reparameterized":
        objective = bounds.iwae_bound_batch(key, x, encode, decode,
                                            num_samples=loss_config.num_samples,
                                            likelihood=model.likelihood, prior=prior)
      else:
        objective = bounds.bound_objective_batch(
            key, x, encode, decode, objective=loss_config.objective,
            num_samples=loss_config.num_samples,
            num_outer_samples=loss_config.num_outer_samples,
            ciwae_beta=loss_config.ciwae_beta, gradient_estimator=estimator,
            likelihood=model.likelihood, prior=prior)
      terms = jax.lax.stop_gradient(bounds.elbo_batch(
          key, x, encode, decode, likelihood=model.likelihood, prior=prior))
    per_example = dict(objective=objective, reconstruction=terms.reconstruction,
                       kl=terms.kl, elbo=terms.elbo)
    if model.is_hierarchy:
      elbo_samples = loss_config.num_samples if loss_config.objective == "elbo" else 1
      per_example.update(_layer_kls(model, key, x, encode, prior, elbo_samples))
    metrics = {k: jnp.mean(v) for k, v in per_example.items()}
    return -metrics["objective"], metrics

  return loss_fn


# ------------------------------------------------------------------ the accumulator


def empty_accumulator(names: tuple[str, ...] = TRAIN_METRICS) -> dict[str, np.ndarray]:
  """Sums of the train metrics `names` (`train_metric_names(model)`) between two logs, and
  the first non-finite step, for one run (on the host: a log starts new sums without
  running anything on the device)."""
  acc = {name: np.zeros((), np.float32) for name in names}
  acc["count"] = np.zeros((), np.int32)
  acc["first_nonfinite_step"] = np.asarray(NO_BAD_STEP, np.int32)
  return acc


def _accumulate(acc, metrics, step, loss):
  return {k: acc[k] + metrics[k] for k in acc if k not in _COUNTERS} | {
      "count": acc["count"] + 1,
      "first_nonfinite_step": jnp.where(jnp.isfinite(loss), acc["first_nonfinite_step"],
                                        jnp.minimum(acc["first_nonfinite_step"], step)),
  }


def mean_metrics(acc: dict[str, np.ndarray], steps_per_dispatch: int) -> dict[str, float]:
  """The means over the logged steps of one run's host accumulator, in nats per example
  (grad_norm: over the blocks' last steps, where it is taken)."""
  count = int(acc["count"])
  metrics = {k: float(acc[k]) / count for k in acc if k not in _COUNTERS}
  metrics["grad_norm"] *= steps_per_dispatch  # One sample per block of steps.
  return metrics


# ------------------------------------------------------------------ the block of steps


def _make_step(loss_fn, optimizer, hp, train_key, ema_decay: float,
               freeze_failed: bool = False, padded: bool = False):
  """step(carry=(state, acc), (x, is_last)) -> (carry, None): one update of one run
  (and of its params' average when the state keeps one). With `freeze_failed` the
  update is dropped (params, optimiser state and average kept, the step counted) from
  the run's first non-finite loss on, and while `hp["frozen"]`. With `padded` the run
  uses the first hp["latent_dim"] latents of the model's."""
  if padded:
    loss_fn = functools.partial(loss_fn, num_latents=hp["latent_dim"])

  def step(carry, inputs):
    state, acc = carry
    x, is_last = inputs
    key = jax.random.fold_in(train_key, state.step)
    beta = beta_at(state.step, hp)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, key, x, beta)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # The gradient norm only at the block's last step: every step it costs ~10% of a
    # small model's step on CPU (one more pass over every gradient).
    grad_norm = jax.lax.cond(is_last, optax.tree.norm, lambda _: jnp.float32(0), grads)
    metrics.update(loss=loss, beta=beta, grad_norm=grad_norm)
    acc = _accumulate(acc, metrics, state.step, loss)
    ema_params = state.ema_params
    if ema_params is not None:
      ema_params = optax.incremental_update(params, ema_params,
                                            1.0 - ema_decay_at(state.step, ema_decay))
    new = TrainState(state.step + 1, params, opt_state, ema_params)
    if freeze_failed:
      healthy = (acc["first_nonfinite_step"] == NO_BAD_STEP) & ~hp["frozen"]
      new = jax.tree.map(lambda fresh, kept: jnp.where(healthy, fresh, kept), new,
                         state.replace(step=state.step + 1))
    return (new, acc), None

  return step


def make_train_block(model: Model, config: ml_collections.ConfigDict, shared_data: bool,
                     mesh: jax.sharding.Mesh, padded: bool = False, some_frozen: bool = False):
  """Returns jitted fn(state, acc, hp, train_key, batches) -> (state, acc) for P runs.

  Every argument has a leading axis of P runs (vmapped), except `batches` when
  `shared_data` (all runs see the same batches): (T, B, H, W, C), else (P, T, B, H, W, C).
  Applies T updates per call in one `lax.scan` (no loop when T = 1), so Python
  dispatches once per T steps; metrics stay on the device until the loop asks for them
  (sums over the steps; the gradient norm is taken at the last step of each call only).
  State and accumulator are donated. The batch axis is sharded over the mesh's "data"
  axis (data parallelism), everything else is replicated. With P > 1 a run whose loss
  goes non-finite stops updating (`_make_step`'s freeze) while the others go on, each
  with the numbers it gets alone (pass `some_frozen` once the host has frozen a run:
  then every block freezes; before, only one in which a run went non-finite); one run
  alone is stopped by the host instead (`vae.training.runs.RunGroup.check_finite`), at
  no cost to its step. With `padded`, `model` has the group's largest latent size and
  each run uses hp["latent_dim"] of it (`vae.training.padded_latents`).
  """
  loss_fn = make_loss_fn(model, config.loss)

  def one_block(state, acc, hp, train_key, batches, freeze_failed=False):
    step = _make_step(loss_fn, make_optimizer(config), hp, train_key,
                      config.train.ema_decay, freeze_failed, padded)
    num_steps = batches.shape[0]
    if num_steps == 1:
      # No loop: XLA:CPU compiles the convolutions of a loop body (even a loop of one
      # step) to generic kernels about 3x slower than its own, so conv configs
      # dispatch one step per call.
      return step((state, acc), (batches[0], True))[0]
    return jax.lax.scan(step, (state, acc),
                        (batches, jnp.arange(num_steps) == num_steps - 1))[0]

  def one_block_of_many(state, acc, hp, train_key, batches):
    """With `some_frozen`, the block with the freeze. Otherwise without it (its selection
    at every step costs ~17% of a step on CPU: one more pass over the state), and done
    again with it from the same start only if a run went non-finite in it: the same
    numbers either way, for ~1/T of that cost (keeping the block's start)."""
    if some_frozen:
      return one_block(state, acc, hp, train_key, batches, freeze_failed=True)
    fast = one_block(state, acc, hp, train_key, batches)
    failed = fast[1]["first_nonfinite_step"] != NO_BAD_STEP
    return jax.lax.cond(
        jax.lax.psum(failed.astype(jnp.int32), RUNS_AXIS) > 0,
        lambda: one_block(state, acc, hp, train_key, batches, freeze_failed=True),
        lambda: fast)

  blocks_of_many = jax.vmap(one_block_of_many,
                            in_axes=(0, 0, 0, 0, None if shared_data else 0),
                            axis_name=RUNS_AXIS)

  def block_of_every_run(state, acc, hp, train_key, batches):
    if train_key.shape[0] > 1:
      return blocks_of_many(state, acc, hp, train_key, batches)
    # One run: the same program without the runs axis, whose batched matmuls (a batch of
    # one) run ~15% slower on CPU than plain ones.
    first = lambda tree: jax.tree.map(lambda leaf: leaf[0], tree)
    out = one_block(first(state), first(acc), first(hp), train_key[0],
                    batches if shared_data else batches[0])
    return jax.tree.map(lambda leaf: leaf[None], out)

  replicated = distributed.replicated(mesh)
  by_example = distributed.sharded_along(mesh, batch_axis(shared_data))
  return jax.jit(
      block_of_every_run,
      in_shardings=(replicated,) * 4 + (by_example,),
      out_shardings=(replicated, replicated),
      donate_argnums=(0, 1),
  )


def batch_axis(shared_data: bool) -> int:
  """The examples axis of (T, B, ...) or, one block per run, (P, T, B, ...) blocks."""
  return 1 if shared_data else 2


def stack_runs(trees: list[Any]) -> Any:
  """Per-run pytrees stacked on the host along a new leading runs axis (numpy)."""
  return jax.tree.map(lambda *leaves: np.stack(leaves), *jax.device_get(trees))
