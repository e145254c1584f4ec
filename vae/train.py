"""Trains a VAE from a config: the update step, the loop, logging, checkpoints, images.

`train_and_evaluate(config, workdir)` is the whole run. It resumes by itself from the
latest checkpoint in `workdir`, and a resumed run ends with exactly the numbers of an
uninterrupted one: batches are a function of (seed, step), the PRNG key of step t is
fold_in(key, t), and the evaluation keys are fixed.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import time
from typing import Any, Iterator

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from vae import checkpoints, config_checks, data, images, losses, metric_writers
from vae.evaluate import Evaluator
from vae.models import Model, build_model
from vae.prefetch import prefetch_to_device

TRAIN_KEYS = ("loss", "objective", "reconstruction", "kl", "elbo", "beta", "grad_norm")
_NO_BAD_STEP = np.iinfo(np.int32).max


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or infinite; the message names the step and the last checkpoint."""


# ------------------------------------------------------------------ state and optimiser


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: the number of updates applied.
  params: Any
  opt_state: Any


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up from 0, then a constant or cosine-decayed (to 0) learning rate."""
  opt = config.optimizer
  if opt.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, opt.learning_rate, opt.warmup_steps, config.train.num_steps)
  return optax.warmup_constant_schedule(0.0, opt.learning_rate, opt.warmup_steps)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam on the schedule, after optional clipping of the global gradient norm."""
  clip_norm = config.optimizer.grad_clip_norm
  clip = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
  return optax.chain(*clip, optax.adam(make_schedule(config)))


def beta_at(step: jax.Array, loss_config: ml_collections.ConfigDict) -> jax.Array:
  """The KL weight at `step`: beta, ramped linearly from 0 over kl_warmup_steps."""
  if loss_config.kl_warmup_steps == 0:
    return jnp.asarray(loss_config.beta, jnp.float32)
  ramp = jnp.minimum(1.0, step.astype(jnp.float32) / loss_config.kl_warmup_steps)
  return loss_config.beta * ramp


# ------------------------------------------------------------------ the update step


def make_loss_fn(model: Model, loss_config: ml_collections.ConfigDict):
  """Returns fn(params, key, x (B, H, W, C), beta) -> (loss, metrics), in nats per example.

  loss = -mean(objective). For "elbo" the objective is reconstruction - beta * kl; for
  "iwae" it is IWAE_K with K = num_samples, and the ELBO terms are logged from one extra
  sample without gradient. `elbo` in the metrics is always the beta = 1 bound.
  """

  def loss_fn(params, key, x, beta):
    encode = functools.partial(model.encode, params)
    decode = functools.partial(model.decode, params)
    if loss_config.objective == "iwae":
      objective = losses.iwae_bound_batch(key, x, encode, decode,
                                          num_samples=loss_config.num_samples,
                                          likelihood=model.likelihood)
      terms = jax.lax.stop_gradient(losses.elbo_batch(
          key, x, encode, decode, likelihood=model.likelihood))
    else:
      terms = losses.elbo_batch(key, x, encode, decode, beta=beta,
                                num_samples=loss_config.num_samples,
                                likelihood=model.likelihood,
                                analytic_kl=loss_config.analytic_kl)
      objective = terms.elbo
    metrics = dict(objective=jnp.mean(objective), reconstruction=jnp.mean(terms.reconstruction),
                   kl=jnp.mean(terms.kl), elbo=jnp.mean(terms.bound))
    return -metrics["objective"], metrics

  return loss_fn


def empty_accumulator() -> dict[str, jax.Array]:
  """Device-side sums of train metrics between two logs, and the first non-finite step."""
  acc = {k: jnp.zeros((), jnp.float32) for k in TRAIN_KEYS}
  acc["count"] = jnp.zeros((), jnp.int32)
  acc["first_nonfinite_step"] = jnp.asarray(_NO_BAD_STEP, jnp.int32)
  return acc


def make_train_block(model: Model, config: ml_collections.ConfigDict,
                     optimizer: optax.GradientTransformation, train_key: jax.Array):
  """Returns jitted fn(state, acc, batches (T, B, H, W, C)) -> (state, acc).

  Runs T update steps in one `lax.scan`, so Python dispatches once per T steps; metrics
  stay on the device until the loop asks for them. State and accumulator are donated.
  """
  loss_fn = make_loss_fn(model, config.loss)

  def step_fn(carry, x):
    state, acc = carry
    key = jax.random.fold_in(train_key, state.step)
    beta = beta_at(state.step, config.loss)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, key, x, beta)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics.update(loss=loss, beta=beta, grad_norm=optax.tree.norm(grads))
    acc = {k: acc[k] + metrics[k] for k in TRAIN_KEYS} | {
        "count": acc["count"] + 1,
        "first_nonfinite_step": jnp.where(
            jnp.isfinite(loss), acc["first_nonfinite_step"],
            jnp.minimum(acc["first_nonfinite_step"], state.step)),
    }
    return (TrainState(state.step + 1, params, opt_state), acc), None

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def train_block(state, acc, batches):
    (state, acc), _ = jax.lax.scan(step_fn, (state, acc), batches)
    return state, acc

  return train_block


# ------------------------------------------------------------------ images


class ImageWriter:
  """Reconstructions beside inputs, prior samples and latent traversals, as PNG and TB."""

  def __init__(self, model: Model, workdir: str, writer: metric_writers.MetricWriter,
               key: jax.Array, num_images: int):
    self._dir = os.path.join(workdir, "images")
    self._writer = writer
    self._z = jax.random.normal(key, (num_images, model.latent_dim))
    self._num_images = num_images
    self._encode_mean = jax.jit(lambda params, x: model.encode(params, x)[0])
    self._mean_image = jax.jit(model.mean_image)

  def _save(self, step: int, name: str, grid: np.ndarray) -> None:
    images.save_png(os.path.join(self._dir, f"{name}_step{step}.png"), grid)
    self._writer.write_image(step, name, grid)

  def write(self, step: int, params: Any, inputs: np.ndarray) -> None:
    """inputs: (N, H, W, C) evaluation images; the first num_images are shown."""
    inputs = inputs[:self._num_images]
    reconstructions = self._mean_image(params, self._encode_mean(params, inputs))
    columns = 2 * math.ceil(math.sqrt(len(inputs)))
    self._save(step, "reconstructions",
               images.image_grid(images.interleave(inputs, np.asarray(reconstructions)),
                                 columns))
    self._save(step, "samples", images.image_grid(np.asarray(self._mean_image(params, self._z))))

  def write_traversal(self, step: int, params: Any, inputs: np.ndarray,
                      num_dims: int = 10, num_values: int = 9) -> None:
    """Rows: the latent dims whose posterior means vary most; columns: z_d in [-3, 3]."""
    means = np.asarray(self._encode_mean(params, inputs))
    dims = np.argsort(-np.var(means, axis=0))[:num_dims]
    values = np.linspace(-3.0, 3.0, num_values)
    z = np.zeros((len(dims), num_values, means.shape[1]), np.float32)
    z[np.arange(len(dims)), :, dims] = values
    pictures = np.asarray(self._mean_image(params, z.reshape(-1, means.shape[1])))
    self._save(step, "traversal", images.image_grid(pictures, num_values))


# ------------------------------------------------------------------ the loop


class _StopRequest:
  """Turns the first Ctrl-C into a flag the loop checks between dispatches."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    self._previous = signal.signal(signal.SIGINT, self._handle)
    return self

  def _handle(self, signum, frame):
    self.requested = True
    logging.warning("Ctrl-C: saving a checkpoint after this dispatch (again to abort).")
    signal.signal(signal.SIGINT, self._previous)

  def __exit__(self, *exc):
    signal.signal(signal.SIGINT, self._previous)


def _train_blocks(batches: data.TrainBatches, start: int, stop: int, size: int
                  ) -> Iterator[np.ndarray]:
  for step in range(start, stop, size):
    yield batches.block(step, size)


def _logged_results(workdir: str, step: int, splits) -> dict[str, dict[str, float]] | None:
  """The evaluation of `step` as metrics.jsonl holds it, or None if a split is missing."""
  records = {r["split"]: r for r in metric_writers.read_metrics(workdir) if r["step"] == step}
  if not all(split in records for split in splits):
    return None
  return {split: {k: v for k, v in records[split].items() if k not in ("step", "split")}
          for split in splits}


def _format_eta(seconds: float) -> str:
  seconds = int(max(0, seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains, evaluates, logs and checkpoints one run; resumes from `workdir` if it can.

  Writes to workdir: config.json, metrics.jsonl, tensorboard/, checkpoints/, images/.

  Returns:
    {split: metrics} of the final evaluation, in nats per example.

  Raises:
    ValueError: a bad config value or an incompatible checkpoint (before any training).
    NonFiniteLossError: the loss became NaN or infinite.
  """
  info = config_checks.check_config(config)
  train_cfg = config.train
  os.makedirs(workdir, exist_ok=True)
  checkpointer = checkpoints.Checkpointer(workdir, train_cfg.keep_checkpoints)
  start_step = checkpointer.latest_step()
  if start_step is not None:
    checkpoints.check_resumable(config, workdir)

  # ---- data
  train_images = data.load_split(config.data, "train")
  eval_images = {split: data.load_split(config.data, split) for split in config.eval.splits}
  batches = data.TrainBatches(train_images, train_cfg.batch_size, config.seed,
                              config.data.binarize == "dynamic")

  # ---- model, optimiser, state
  model = build_model(config.model, info.image_shape)
  optimizer = make_optimizer(config)
  schedule = make_schedule(config)
  root_key = jax.random.PRNGKey(config.seed)
  init_key, train_key, eval_key, image_key = (jax.random.fold_in(root_key, i) for i in range(4))
  params = model.init(init_key)
  state = TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))
  num_params = sum(p.size for p in jax.tree.leaves(params))
  logging.info("Model: %s, %d parameters; data: %s %s, %d train images.",
               config.model.architecture, num_params, info.name, info.image_shape,
               len(train_images))

  writer = metric_writers.MetricWriter(workdir)
  acc = empty_accumulator()  # Train metrics since the last log; checkpointed with the state.
  if start_step is None:
    start_step = 0
    writer.truncate_after(-1)
  else:
    restored = checkpointer.restore(start_step, {"state": state, "metrics": empty_accumulator()})
    state, acc = restored["state"], restored["metrics"]
    writer.truncate_after(start_step)
    logging.info("Resumed from the checkpoint of step %d in %s.", start_step,
                 checkpointer.directory)
  checkpoints.save_config(config, workdir)

  evaluator = Evaluator(model, config.eval)
  image_writer = ImageWriter(model, workdir, writer, image_key, config.eval.num_images)
  train_block = make_train_block(model, config, optimizer, train_key)
  last_checkpoint = start_step if start_step > 0 else None

  def run_evaluation(step: int) -> dict[str, dict[str, float]]:
    results = {}
    for split, split_images in eval_images.items():
      results[split] = evaluator.evaluate(state.params, eval_key, split_images)
      writer.write_scalars(step, split, results[split])
      logging.info("eval %-10s step %d: %s", split, step, metric_writers.format_metrics(
          results[split], ("elbo", "log_px", "bound_gap", "reconstruction", "kl",
                           "active_units")))
    image_writer.write(step, state.params, next(iter(eval_images.values())))
    writer.flush()
    return results

  def check_finite(acc) -> None:
    bad = int(acc["first_nonfinite_step"])
    if bad != _NO_BAD_STEP:
      where = (f"step {last_checkpoint} in {checkpointer.directory} (still loadable)"
               if last_checkpoint is not None else "none (no checkpoint was written yet)")
      raise NonFiniteLossError(
          f"The loss became non-finite at step {bad}. Last good checkpoint: {where}. "
          f"Lower config.optimizer.learning_rate (now {config.optimizer.learning_rate}) "
          "or set config.optimizer.grad_clip_norm, then rerun in a new --workdir (or "
          "this one, to resume from that checkpoint).")

  if start_step >= train_cfg.num_steps:
    logging.info("%s already holds a finished run (step %d).", workdir, start_step)
    results = _logged_results(workdir, start_step, config.eval.splits)
    if results is None:
      results = run_evaluation(start_step)
    writer.close()
    checkpointer.close()
    return results

  # ---- loop
  results: dict[str, dict[str, float]] = {}
  step = start_step
  run_start = interval_start = time.perf_counter()
  paused = 0.0  # Seconds spent on evaluations and checkpoints since the last log.
  blocks = prefetch_to_device(_train_blocks(
      batches, start_step, train_cfg.num_steps, train_cfg.steps_per_dispatch))
  with _StopRequest() as stop:
    for block_batches in blocks:
      state, acc = train_block(state, acc, block_batches)
      step += train_cfg.steps_per_dispatch
      done = step == train_cfg.num_steps
      is_due = lambda every: step % every == 0 or done
      if not (is_due(train_cfg.log_every) or is_due(train_cfg.checkpoint_every)
              or is_due(train_cfg.eval_every) or stop.requested):
        continue
      acc_host = jax.device_get(acc)
      check_finite(acc_host)
      if is_due(train_cfg.log_every):
        elapsed = time.perf_counter() - interval_start - paused
        count = int(acc_host["count"])
        train_metrics = {k: float(acc_host[k]) / count for k in TRAIN_KEYS}
        train_metrics["steps_per_sec"] = count / max(elapsed, 1e-9)
        train_metrics["learning_rate"] = float(schedule(step))
        writer.write_scalars(step, "train", train_metrics)
        overall_rate = (step - start_step) / max(time.perf_counter() - run_start, 1e-9)
        logging.info(
            "step %d/%d (%d%%) | %.1f steps/s | ETA %s | %s", step, train_cfg.num_steps,
            100 * step // train_cfg.num_steps, train_metrics["steps_per_sec"],
            _format_eta((train_cfg.num_steps - step) / max(overall_rate, 1e-9)),
            metric_writers.format_metrics(train_metrics, ("elbo", "reconstruction", "kl")))
        acc = empty_accumulator()
        interval_start, paused = time.perf_counter(), 0.0
      pause_start = time.perf_counter()
      if is_due(train_cfg.checkpoint_every) or stop.requested:
        checkpointer.save(step, {"state": state, "metrics": acc})
        last_checkpoint = step
      if stop.requested:
        writer.close()
        checkpointer.close()
        raise KeyboardInterrupt(f"Interrupted: saved a checkpoint of step {step} in "
                                f"{checkpointer.directory}; rerun the command to resume.")
      if is_due(train_cfg.eval_every):
        results = run_evaluation(step)
      paused += time.perf_counter() - pause_start

  image_writer.write_traversal(step, state.params, next(iter(eval_images.values())))
  writer.close()
  checkpointer.close()
  return results
