"""Trains a VAE from a config: the update step, the loop, logging, checkpoints, images.

`train_and_evaluate(config, workdir)` is the whole run. It resumes by itself from the
latest checkpoint in `workdir`, and a resumed run ends with exactly the numbers of an
uninterrupted one: batches are a function of (seed, data.num_shards, step), the PRNG key
of step t is fold_in(key, t), and the evaluation keys are fixed. With several processes
each reads only its shards of the training set and its part of the evaluation splits
(`vae.distributed`).
"""

from __future__ import annotations

import functools
import math
import os
import signal
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from vae import checkpoints, config_checks, data, distributed, images, losses, metric_writers
from vae.evaluate import Evaluator
from vae.models import Model, build_model
from vae.prefetch import prefetch_to_device

# Summed over every step between two logs, except grad_norm: over the last step of each
# block of steps_per_dispatch steps (see make_train_block).
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


# Config fields that keep every array shape, so runs differing only in them can be trained
# together in one program, vmapped over a leading "points" axis.
VECTORIZED_FIELDS = ("seed", "loss.beta", "loss.kl_warmup_steps", "optimizer.learning_rate")


def hyperparams(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """The traced per-run values of VECTORIZED_FIELDS (the seed enters through keys)."""
  return {"beta": np.float32(config.loss.beta),
          "kl_warmup_steps": np.float32(config.loss.kl_warmup_steps),
          "learning_rate": np.float32(config.optimizer.learning_rate)}


def make_unit_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Learning-rate multiplier in [0, 1]: linear warm-up, then constant or cosine to 0."""
  opt = config.optimizer
  if opt.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, opt.warmup_steps,
                                              config.train.num_steps)
  return optax.warmup_constant_schedule(0.0, 1.0, opt.warmup_steps)


def make_optimizer(config: ml_collections.ConfigDict,
                   learning_rate: float | jax.Array) -> optax.GradientTransformation:
  """Adam with learning rate `learning_rate * unit_schedule(step)`, optional clipping.

  The peak learning rate is an argument, not read from the config, so it may be traced
  (one value per vectorised run); the state's structure does not depend on it.
  """
  clip_norm = config.optimizer.grad_clip_norm
  return optax.chain(
      *([optax.clip_by_global_norm(clip_norm)] if clip_norm else []),
      optax.scale_by_adam(),
      optax.scale_by_schedule(make_unit_schedule(config)),
      optax.scale(-learning_rate),
  )


def beta_at(step: jax.Array, hp: dict[str, jax.Array]) -> jax.Array:
  """The KL weight at `step`: beta, ramped linearly from 0 over kl_warmup_steps (if > 0)."""
  warmup = hp["kl_warmup_steps"]
  ramp = jnp.where(warmup > 0, jnp.minimum(1.0, step / jnp.maximum(warmup, 1.0)), 1.0)
  return hp["beta"] * ramp


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
  """Sums of train metrics between two logs, and the first non-finite step, for one run."""
  acc = {k: jnp.zeros((), jnp.float32) for k in TRAIN_KEYS}
  acc["count"] = jnp.zeros((), jnp.int32)
  acc["first_nonfinite_step"] = jnp.asarray(_NO_BAD_STEP, jnp.int32)
  return acc


def make_train_block(model: Model, config: ml_collections.ConfigDict, shared_data: bool,
                     mesh: jax.sharding.Mesh):
  """Returns jitted fn(state, acc, hp, train_key, batches) -> (state, acc) for P runs.

  Every argument has a leading axis of P runs (vmapped), except `batches` when
  `shared_data` (all runs see the same batches): (T, B, H, W, C), else (P, T, B, H, W, C).
  Runs T update steps per call in one `lax.scan` (no loop when T = 1), so Python
  dispatches once per T steps;
  metrics stay on the device until the loop asks for them (sums over the steps; the
  gradient norm is taken at the last step of each call only). State and accumulator are
  donated. The batch axis is sharded over the mesh's "data" axis (data parallelism),
  everything else is replicated.
  """
  loss_fn = make_loss_fn(model, config.loss)

  def run_block(state, acc, hp, train_key, batches):
    optimizer = make_optimizer(config, hp["learning_rate"])

    def step_fn(carry, inputs):
      state, acc = carry
      x, is_last = inputs
      key = jax.random.fold_in(train_key, state.step)
      beta = beta_at(state.step, hp)
      (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          state.params, key, x, beta)
      updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      # The gradient norm only at the block's last step: every step it costs ~10% of
      # a small model's step on CPU (one more pass over every gradient).
      grad_norm = jax.lax.cond(is_last, optax.tree.norm, lambda _: jnp.float32(0), grads)
      metrics.update(loss=loss, beta=beta, grad_norm=grad_norm)
      acc = {k: acc[k] + metrics[k] for k in TRAIN_KEYS} | {
          "count": acc["count"] + 1,
          "first_nonfinite_step": jnp.where(
              jnp.isfinite(loss), acc["first_nonfinite_step"],
              jnp.minimum(acc["first_nonfinite_step"], state.step)),
      }
      return (TrainState(state.step + 1, params, opt_state), acc), None

    num_steps = batches.shape[0]
    if num_steps == 1:
      # No loop: XLA:CPU compiles the convolutions of a loop body (even a loop of one
      # step) to generic kernels about 3x slower than its own, so conv configs
      # dispatch one step per call.
      (state, acc), _ = step_fn((state, acc), (batches[0], True))
      return state, acc
    (state, acc), _ = jax.lax.scan(step_fn, (state, acc),
                                   (batches, jnp.arange(num_steps) == num_steps - 1))
    return state, acc

  run_blocks = jax.vmap(run_block, in_axes=(0, 0, 0, 0, None if shared_data else 0))

  def run_runs(state, acc, hp, train_key, batches):
    if train_key.shape[0] > 1:
      return run_blocks(state, acc, hp, train_key, batches)
    # One run: the same program without the runs axis, whose batched matmuls (a batch of
    # one) run ~15% slower on CPU than plain ones.
    first = lambda tree: jax.tree.map(lambda leaf: leaf[0], tree)
    out = run_block(first(state), first(acc), first(hp), train_key[0],
                    batches if shared_data else batches[0])
    return jax.tree.map(lambda leaf: leaf[None], out)

  replicated = distributed.replicated(mesh)
  by_example = distributed.sharded_along(mesh, batch_axis(shared_data))
  return jax.jit(
      run_runs,
      in_shardings=(replicated,) * 4 + (by_example,),
      out_shardings=(replicated, replicated),
      donate_argnums=(0, 1),
  )


def batch_axis(shared_data: bool) -> int:
  """The examples axis of (T, B, ...) or, one block per run, (P, T, B, ...) blocks."""
  return 1 if shared_data else 2


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
    if not self._writer.enabled:
      return
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


def check_vectorizable(configs: list[ml_collections.ConfigDict]) -> None:
  """Raises ValueError unless the configs differ only in VECTORIZED_FIELDS."""
  first = checkpoints.config_to_dict(configs[0])
  for config in configs[1:]:
    differing = checkpoints.differing_fields(first, checkpoints.config_to_dict(config))
    others = [f for f in differing if f not in VECTORIZED_FIELDS]
    if others:
      raise ValueError(
          f"Runs differing in {others} change array shapes or the program, so they cannot "
          f"be trained together; only {list(VECTORIZED_FIELDS)} may differ. Run them "
          "one after another (sweep --vectorize=false).")


def _stack(trees):
  """Host-side stacking of per-run pytrees along a new leading axis."""
  return jax.tree.map(lambda *leaves: np.stack(leaves), *jax.device_get(trees))


def _local(tree):
  """This process's copy of a replicated (possibly multi-process) pytree of arrays."""
  return jax.tree.map(lambda leaf: leaf.addressable_data(0), tree)


class _Run:
  """What belongs to one run of a vectorised group: its config, workdir and writers."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, model: Model,
               train_images: np.ndarray, shards: range):
    self.config, self.workdir = config, workdir
    os.makedirs(workdir, exist_ok=True)
    self.checkpointer = checkpoints.Checkpointer(workdir, config.train.keep_checkpoints)
    self.latest_step = self.checkpointer.latest_step()
    if self.latest_step is not None:
      checkpoints.check_resumable(config, workdir)
    root_key = jax.random.PRNGKey(config.seed)
    self.init_key, self.train_key, self.eval_key, image_key = (
        jax.random.fold_in(root_key, i) for i in range(4))
    self.batches = data.TrainBatches(train_images, config.train.batch_size, config.seed,
                                     config.data.binarize == "dynamic",
                                     config.data.num_shards, shards)
    self.writer = metric_writers.MetricWriter(workdir, enabled=distributed.is_primary())
    self.images = ImageWriter(model, workdir, self.writer, image_key, config.eval.num_images)
    self.learning_rate = make_unit_schedule(config)

  def close(self) -> None:
    self.writer.close()
    self.checkpointer.close()


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
  return train_vectorized([config], [workdir])[0]


def train_vectorized(configs: list[ml_collections.ConfigDict], workdirs: list[str]
                     ) -> list[dict[str, dict[str, float]]]:
  """Trains runs that differ only in VECTORIZED_FIELDS together, in one jitted program.

  Each run writes exactly what `train_and_evaluate` writes, to its own workdir, and gets
  the same numbers it would get alone (up to float rounding of batched matmuls).
  """
  infos = [config_checks.check_config(config) for config in configs]
  check_vectorizable(configs)
  config, info = configs[0], infos[0]
  train_cfg = config.train
  mesh = distributed.data_mesh()
  for field in ("train.batch_size", "eval.batch_size"):
    distributed.check_divisible(f"config.{field}", config_checks.get_field(config, field),
                                mesh)
  shards = distributed.process_shards(config.data.num_shards)

  # ---- data and model (shared by every run of the group); each process reads its part
  num_train = data.split_size(config.data, "train")
  train_images = data.load_split(config.data, "train", data.TrainBatches.shard_rows(
      num_train, config.data.num_shards, shards))
  eval_images = {split: data.LazySplit(config.data, split) for split in config.eval.splits}
  for split, split_images in eval_images.items():
    if not len(split_images):
      raise ValueError(
          f"config.eval.splits includes {split!r}, but that split of {info.name} is empty "
          f"(config.data.validation_size={config.data.validation_size}). Set "
          "validation_size > 0 or leave the split out of config.eval.splits.")
  model = build_model(config.model, info.image_shape)
  runs = [_Run(c, w, model, train_images, shards) for c, w in zip(configs, workdirs)]
  logging.info("Model: %s, %d parameters; data: %s %s, %d train images (%d read here); "
               "%d run(s).", config.model.architecture,
               sum(p.size for p in jax.tree.leaves(model.init(runs[0].init_key))),
               info.name, info.image_shape, num_train, len(train_images), len(runs))

  # ---- state: fresh or restored, stacked over runs
  starts = {run.latest_step for run in runs}
  if len(starts) > 1:
    raise ValueError(f"The runs' latest checkpoints are at different steps {sorted(starts, key=str)}"
                     f" ({', '.join(workdirs)}); resume them one by one.")
  start_step = starts.pop() or 0
  states, accs = [], []
  for run in runs:
    params = model.init(run.init_key)
    state = TrainState(jnp.zeros((), jnp.int32), params,
                       make_optimizer(run.config, run.config.optimizer.learning_rate)
                       .init(params))
    acc = empty_accumulator()
    if run.latest_step is not None:
      like = jax.device_get({"state": state, "metrics": acc})  # every process reads it all
      restored = run.checkpointer.restore(start_step, like)
      state, acc = restored["state"], restored["metrics"]
      logging.info("%s: resumed from the checkpoint of step %d.", run.workdir, start_step)
    run.writer.truncate_after(start_step if run.latest_step is not None else -1)
    if distributed.is_primary():
      checkpoints.save_config(run.config, run.workdir)
    states.append(state)
    accs.append(acc)

  evaluator = Evaluator(model, config.eval, mesh)
  replicated = distributed.replicated(mesh)
  unstack = jax.jit(lambda tree, i: jax.tree.map(lambda leaf: leaf[i], tree),
                    static_argnums=1, out_shardings=replicated)
  last_checkpoint = start_step if start_step > 0 else None
  shown_images = np.asarray(next(iter(eval_images.values()))[:config.eval.num_images])

  def run_evaluation(step, stacked_params) -> list[dict[str, dict[str, float]]]:
    """Each run's evaluation, its batches sharded over the mesh; only process 0 writes."""
    all_results = []
    for i, run in enumerate(runs):
      params = unstack(stacked_params, i)
      results = {}
      for split, split_images in eval_images.items():
        results[split] = evaluator.evaluate(params, run.eval_key, split_images)
        run.writer.write_scalars(step, split, results[split])
        logging.info("eval %-10s step %d%s: %s", split, step,
                     f" [{run.workdir}]" if len(runs) > 1 else "",
                     metric_writers.format_metrics(results[split], (
                         "elbo", "log_px", "bound_gap", "reconstruction", "kl",
                         "active_units")))
      run.images.write(step, _local(params), shown_images)
      run.writer.flush()
      all_results.append(results)
    return all_results

  def check_finite(acc_host) -> None:
    for i, run in enumerate(runs):
      bad = int(acc_host["first_nonfinite_step"][i])
      if bad == _NO_BAD_STEP:
        continue
      where = (f"step {last_checkpoint} in {run.checkpointer.directory} (still loadable)"
               if last_checkpoint is not None else "none (no checkpoint was written yet)")
      raise NonFiniteLossError(
          f"{run.workdir}: the loss became non-finite at step {bad}. Last good checkpoint: "
          f"{where}. Lower config.optimizer.learning_rate (now "
          f"{run.config.optimizer.learning_rate}) or set config.optimizer.grad_clip_norm, "
          "then rerun in a new --workdir (or this one, to resume from that checkpoint).")

  def close_all():
    for run in runs:
      run.close()

  if start_step >= train_cfg.num_steps:
    logging.info("Already finished (step %d): %s.", start_step, ", ".join(workdirs))
    logged = [_logged_results(run.workdir, start_step, config.eval.splits) for run in runs]
    results = (logged if all(r is not None for r in logged)
               else run_evaluation(start_step, _stack([s.params for s in states])))
    close_all()
    return results

  # ---- loop: state replicated on every device of every process
  state = jax.device_put(_stack(states), replicated)
  acc = jax.device_put(_stack(accs), replicated)
  hp = jax.device_put(_stack([hyperparams(run.config) for run in runs]), replicated)
  train_keys = jax.device_put(jnp.stack([run.train_key for run in runs]), replicated)
  shared_data = len({run.config.seed for run in runs}) == 1
  train_block = make_train_block(model, config, shared_data, mesh)
  block_size = train_cfg.steps_per_dispatch
  examples_axis = batch_axis(shared_data)
  batch_sharding = distributed.sharded_along(mesh, examples_axis)

  def host_blocks():
    """This process's rows of every global block of batches."""
    for step in range(start_step, train_cfg.num_steps, block_size):
      if shared_data:
        yield runs[0].batches.block(step, block_size)
      else:
        yield np.stack([run.batches.block(step, block_size) for run in runs])

  def to_global(block):
    return distributed.put_process_rows(block, batch_sharding, examples_axis)

  results: list[dict[str, dict[str, float]]] = []
  step = start_step
  run_start = interval_start = time.perf_counter()
  paused = 0.0  # Seconds spent on evaluations and checkpoints since the last log.
  blocks = prefetch_to_device(host_blocks(), to_global)
  with _StopRequest() as stop:
    for block_batches in blocks:
      state, acc = train_block(state, acc, hp, train_keys, block_batches)
      step += block_size
      done = step == train_cfg.num_steps
      is_due = lambda every: step % every == 0 or done
      if not (is_due(train_cfg.log_every) or is_due(train_cfg.checkpoint_every)
              or is_due(train_cfg.eval_every) or stop.requested):
        continue
      acc_host = jax.device_get(_local(acc))
      check_finite(acc_host)
      if is_due(train_cfg.log_every):
        elapsed = time.perf_counter() - interval_start - paused
        for i, run in enumerate(runs):
          count = int(acc_host["count"][i])
          train_metrics = {k: float(acc_host[k][i]) / count for k in TRAIN_KEYS}
          train_metrics["grad_norm"] *= block_size  # One sample per block of steps.
          train_metrics["steps_per_sec"] = count / max(elapsed, 1e-9)
          train_metrics["learning_rate"] = (run.config.optimizer.learning_rate
                                            * float(run.learning_rate(step)))
          run.writer.write_scalars(step, "train", train_metrics)
        overall_rate = (step - start_step) / max(time.perf_counter() - run_start, 1e-9)
        logging.info(
            "step %d/%d (%d%%) | %.1f steps/s | ETA %s | %s", step, train_cfg.num_steps,
            100 * step // train_cfg.num_steps, train_metrics["steps_per_sec"],
            _format_eta((train_cfg.num_steps - step) / max(overall_rate, 1e-9)),
            metric_writers.format_metrics(train_metrics, ("elbo", "reconstruction", "kl")))
        acc = jax.device_put(_stack([empty_accumulator()] * len(runs)), replicated)
        interval_start, paused = time.perf_counter(), 0.0
      pause_start = time.perf_counter()
      if is_due(train_cfg.checkpoint_every) or stop.requested:
        for i, run in enumerate(runs):
          run.checkpointer.save(step, unstack({"state": state, "metrics": acc}, i))
        last_checkpoint = step
      if stop.requested:
        close_all()
        raise KeyboardInterrupt(f"Interrupted: saved a checkpoint of step {step} in "
                                f"{', '.join(workdirs)}; rerun the command to resume.")
      if is_due(train_cfg.eval_every):
        results = run_evaluation(step, state.params)
      paused += time.perf_counter() - pause_start

  for i, run in enumerate(runs):
    run.images.write_traversal(step, _local(unstack(state.params, i)), shown_images)
  close_all()
  return results
