"""A group of runs trained together: checks, data, state, checkpoints, metrics, images.

`RunGroup(configs, workdirs)` holds one run, or several that differ only in
`vae.training.update.VECTORIZED_FIELDS` (and model.latent_dim, padded to the largest:
`vae.training.padded_latents`) and train in one vmapped program. Its constructor does
every check before any training (each config, that the runs can train together, that
the batches divide over the devices, that each workdir can be created and is not in use
by another trainer (`vae.training.workdirs`), that no evaluation split is empty, that each
workdir can be resumed and that all resume from one step), reads this process's part of
the data, and initialises or restores every run's state from its newest intact
checkpoint (a damaged one is set aside with a warning). Then the loop (`vae.training.train`)
calls its steps and cadences. It is a context manager: leaving it by any exit (the end,
a NaN stop, Ctrl-C, an exception) closes every checkpointer, writer and the prefetch
thread, so an error prints its message and nothing after it.

Each run's host objects (`Run`: config, workdir, checkpointer, writers, batches) live in
`runs`, in the order of the leading runs axis of the group's device state `state` and
`acc`; `per_run(tree)` pairs each run with its slice of such a tree.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator

import jax
import ml_collections
import numpy as np
from absl import logging

from vae import data
from vae import evaluation as evaluate
from vae.common import errors, field_checks
from vae.config import checks as config_checks
from vae.models import build_model, with_used_latents
from vae.reporting import images, metric_writers
from vae.reporting.progress import ProgressLine
from vae.runtime import distributed
from vae.training import best_checkpoint, checkpoints, padded_latents, random_streams, update
from vae.training import warm_start
from vae.training import workdirs as workdirs_lib
from vae.training.prefetch import prefetch_to_device

# The evaluation's one-line log: the metrics every evaluation writes (without the layers'
# KLs and the standard errors), then the rate's I(x; z) and the active units.
_EVAL_LOG_METRICS = evaluate.PER_EXAMPLE_METRICS + ("mutual_information", "active_units")


def check_vectorizable(configs: list[ml_collections.ConfigDict]) -> bool:
  """Raises ValueError unless the configs differ only in VECTORIZED_FIELDS and, where
  their model pads its latents (`padded_latents.why_not_paddable`), model.latent_dim;
  returns whether they differ in model.latent_dim (train padded)."""
  first = checkpoints.config_to_dict(configs[0])
  padded = False
  for config in configs[1:]:
    differing = checkpoints.differing_fields(first, checkpoints.config_to_dict(config))
    padded = padded or padded_latents.FIELD in differing
    others = [f for f in differing
              if f not in update.VECTORIZED_FIELDS + (padded_latents.FIELD,)]
    if others:
      raise ValueError(
          f"Runs differing in {others} change array shapes or the program, so they cannot "
          f"be trained together; only {list(update.VECTORIZED_FIELDS)} and "
          f"{padded_latents.FIELD} may differ. Run them one after another (sweep "
          "--mode=sequential).")
  reason = padded and padded_latents.why_not_paddable(configs[0])
  if reason:
    raise ValueError(f"Runs differing in {padded_latents.FIELD} cannot be trained together: "
                     f"{reason}. Run them one after another (sweep --mode=sequential).")
  return padded


class Run:
  """One run of a group: its config, its own model (`model`, the group's but for its
  latent size), workdir, keys, batches, checkpointer and writers.

  Everything it opens is closed by `resources` (the group's exit stack).
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, model: Any,
               train_images: np.ndarray, shards: range, resources: contextlib.ExitStack):
    self.config, self.workdir, self.model = config, workdir, model
    self._resources = resources
    self.best = None  # a best_checkpoint.BestCheckpoint with keep_best, once restored
    self.checkpointer = resources.enter_context(contextlib.closing(
        checkpoints.Checkpointer(workdir, config.train.keep_checkpoints)))
    if self.checkpointer.latest_step() is not None:
      checkpoints.check_resumable(config, workdir)
    # {"step", "reason"} once its loss went non-finite (the update from that step). A
    # checkpoint after that step holds the run frozen (a group saved it on), which stays
    # frozen when resumed (say, by a requeued task); one up to it is a new attempt
    # (`init_or_restore` decides, by the checkpoint it restores).
    self.failure = workdirs_lib.read_failure(workdir)
    if config.train.keep_best:
      best_checkpoint.read(workdir)  # damaged: one line now, before the restore
    self.init_key, self.train_key, self.eval_key, image_key = (
        random_streams.stream(config.seed, s) for s in (random_streams.INIT, random_streams.TRAIN, random_streams.EVAL, random_streams.IMAGES))
    self.batches = data.TrainBatches(train_images, config.train.batch_size, config.seed,
                                     config.data.binarize == "dynamic",
                                     config.data.num_shards, shards)
    self.writer = resources.enter_context(contextlib.closing(
        metric_writers.MetricWriter(
            workdir, enabled=distributed.is_primary(),
            wandb_project=config.logging.wandb_project if config.logging.wandb else None,
            config=checkpoints.config_to_dict(config))))
    self.images = images.ImageWriter(model, workdir, self.writer, image_key,
                                     config.eval.num_images)

  def init_or_restore(self, data_mean: np.ndarray | None) -> tuple[int, Any, Any]:
    """(step, state, accumulator) of its own model on the host: from the newest intact
    checkpoint, or fresh at step 0 (`data_mean`: the training images' mean, for the
    decoder's bias); a failure recorded after that step is forgotten (a new attempt); then
    the best checkpoint's keeper, with keep_best."""
    step, state, acc = self._init_or_restore(self.model, data_mean)
    if self.failure is not None and step <= self.failure["step"]:
      self.failure = None  # a new attempt, from before the failure
      if distributed.is_primary():
        workdirs_lib.clear_failure(self.workdir)
    if self.config.train.keep_best:
      self.best = self._resources.enter_context(contextlib.closing(
          best_checkpoint.BestCheckpoint(self.workdir, self.config.train.keep_best, step)))
    return step, state, acc

  def _init_or_restore(self, model: Any, data_mean: np.ndarray | None
                       ) -> tuple[int, Any, Any]:
    """A damaged checkpoint is set aside with one warning line; a fresh run starts from
    config.train.init_from's params when it names a run (`vae.training.warm_start`)."""
    state = update.init_state(model, self.config, self.init_key, data_mean)
    like = jax.device_get({"state": update.checkpoint_tree(state),
                           "metrics": update.empty_accumulator(update.train_metric_names(model))})
    for step in reversed(self.checkpointer.all_steps()):
      try:
        restored = self.checkpointer.restore(step, like)  # every process reads it all
      except checkpoints.DamagedCheckpointError as error:
        logging.warning("%s Moved it to %s; resuming from the checkpoint before it.", error,
                        self.checkpointer.set_aside(step))
        continue
      logging.info("%s: resumed from the checkpoint of step %d.", self.workdir, step)
      self._warn_if_schedule_changed(step)
      self.writer.truncate_after(step)
      return step, update.from_checkpoint_tree(restored["state"]), restored["metrics"]
    self.writer.truncate_after(-1)
    state = update.from_checkpoint_tree(like["state"])
    if self.config.train.init_from:
      state, origin = warm_start.warm_started(state, self.config.train.init_from)
      warm_start.save_origin(self.workdir, origin)
      logging.info("%s: starts from the params of %s.", self.workdir,
                   warm_start.describe(origin))
    else:
      warm_start.forget_origin(self.workdir)  # an earlier attempt's, which saved nothing
    return 0, state, like["metrics"]

  def _warn_if_schedule_changed(self, step: int) -> None:
    """One warning line when a resume changes the learning rate of the planned steps:
    the cosine schedule decays to 0 at train.num_steps, so changing it moves the rate."""
    if (self.config.optimizer.schedule != "cosine"
        or not os.path.exists(os.path.join(self.workdir, checkpoints.CONFIG_FILE))):
      return
    saved = checkpoints.load_config(self.workdir)
    if saved.train.num_steps == self.config.train.num_steps:
      return
    before, after = (float(update.unit_schedule(c)(step)) * c.optimizer.learning_rate
                     for c in (saved, self.config))
    logging.warning(
        "%s: config.train.num_steps changed from %d to %d, and the cosine schedule decays "
        "to 0 at num_steps: the learning rate at step %d jumps from %.3g to %.3g, so the "
        "result differs from a run planned with %d steps (README: extending a run).",
        self.workdir, saved.train.num_steps, self.config.train.num_steps, step, before,
        after, self.config.train.num_steps)


class RunGroup(contextlib.AbstractContextManager):
  """Runs trained together in one program; see the module docstring.

  Attributes:
    config: the first run's config (the others differ only in VECTORIZED_FIELDS and
      possibly model.latent_dim).
    model: the program's model (with the group's largest latent size).
    runs: the runs' host objects, in the order of the runs axis.
    start_step: the step every run starts (or resumes) from.
    state, acc: the stacked `update.TrainState` and metric accumulators, replicated
      over the mesh.
  """

  def __init__(self, configs: list[ml_collections.ConfigDict], workdirs: list[str]):
    self._resources = contextlib.ExitStack()
    try:
      self._check(configs, workdirs)
      self._read_data()
      self.runs = [Run(c, w, self._own_model(c), self._train_images, self._shards,
                       self._resources) for c, w in zip(configs, workdirs)]
      self._place_state()
    except BaseException:
      self.close()
      raise
    self.last_checkpoint = self.start_step if self.start_step > 0 else None
    self._train_block = None  # made by `blocks`
    self.evaluator = evaluate.Evaluator(self.model, self.config.eval, self.mesh)
    self._unstack = jax.jit(lambda tree, i: jax.tree.map(lambda leaf: leaf[i], tree),
                            static_argnums=1, out_shardings=distributed.replicated(self.mesh))
    logging.info("Model: %s, %s parameters; data: %s %s, %d train images (%d read here); "
                 "%d run(s).", self.config.model.architecture, self._num_params(),
                 self._info.name, self._info.image_shape, self._num_train,
                 len(self._train_images), len(self.runs))

  # ---------------------------------------------------------------- setup

  def _check(self, configs: list[ml_collections.ConfigDict], workdirs: list[str]) -> None:
    """Every check that reads no data; then each workdir is created and locked."""
    infos = [config_checks.check_config(config) for config in configs]
    self._padded = check_vectorizable(configs)
    self._model_config = padded_latents.padded_config(configs).model
    for message in config_checks.warnings(configs[0]):
      logging.warning("%s", message)
    self.config, self._info = configs[0], infos[0]
    self.mesh = distributed.data_mesh()
    for field in ("train.batch_size", "eval.batch_size"):
      distributed.check_divisible(f"config.{field}",
                                  field_checks.get_field(self.config, field), self.mesh)
    for config, workdir in zip(configs, workdirs):
      if config.train.init_from and checkpoints.latest_step(workdir) is None:
        warm_start.source_checkpoint(config.train.init_from)  # a fresh run needs its source
      workdirs_lib.make_workdir(workdir)
      if distributed.is_primary():  # the other processes of the job share it
        self._resources.enter_context(contextlib.closing(workdirs_lib.WorkdirLock(workdir)))

  def _read_data(self) -> None:
    """This process's part of the data, and the model it fits."""
    data_config = self.config.data
    self._shards = distributed.process_shards(data_config.num_shards)
    self._num_train = data.split_size(data_config, "train")
    self._train_images = data.load_split(data_config, "train", data.TrainBatches.shard_rows(
        self._num_train, data_config.num_shards, self._shards))
    self.eval_images = {split: data.LazySplit(data_config, split)
                        for split in self.config.eval.splits}
    for split, split_images in self.eval_images.items():
      if not len(split_images):
        raise ValueError(
            f"config.eval.splits includes {split!r}, but that split of {self._info.name} is "
            f"empty (config.data.validation_size={data_config.validation_size}). Set "
            "validation_size > 0 or leave the split out of config.eval.splits.")
    self.shown_images = np.asarray(
        next(iter(self.eval_images.values()))[:self.config.eval.num_images])
    self.model = build_model(self._model_config, self._info.image_shape)
    # Every process the whole split's mean, so that all start from the same params.
    self._data_mean = (data.load_split(data_config, "train").mean(axis=0)
                       if self.config.model.decoder_bias_init == "data_mean" else None)

  def _own_model(self, config: ml_collections.ConfigDict) -> Any:
    """The model of a run of `config`: the group's, or its own with padded latents."""
    return build_model(config.model, self._info.image_shape) if self._padded else self.model

  def _place_state(self) -> None:
    """Initialises or restores every run, pads them to the group's model, stacks them and
    replicates them on the mesh."""
    steps, states, accs = zip(*(run.init_or_restore(self._data_mean) for run in self.runs))
    _refuse_if_all_frozen(self.runs)
    if self._padded:
      program_state = jax.eval_shape(lambda: update.init_state(
          self.model, self.config, self.runs[0].init_key, self._data_mean))
      self._run_states = [jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(
          np.shape(leaf), leaf.dtype), state) for state in states]
      states = [padded_latents.pad_to(state, program_state) for state in states]
    if len(set(steps)) > 1:
      raise ValueError(
          f"The runs' latest checkpoints are at different steps {sorted(set(steps))} "
          f"({', '.join(self.workdirs)}); resume them one by one.")
    self.start_step = steps[0]
    if distributed.is_primary():
      for run in self.runs:
        checkpoints.save_config(run.config, run.workdir)
    replicated = distributed.replicated(self.mesh)
    self.state = jax.device_put(update.stack_runs(list(states)), replicated)
    self.acc = jax.device_put(update.stack_runs(list(accs)), replicated)
    self._hp = self._hyperparams()
    self._train_keys = jax.device_put(np.stack([run.train_key for run in self.runs]),
                                      replicated)

  def _num_params(self) -> str:
    """A run's number of params ("min to max" when padded runs differ in latent size)."""
    size = lambda params: sum(leaf.size for leaf in jax.tree.leaves(params))  # noqa: E731
    counts = (sorted({size(state.params) for state in self._run_states}) if self._padded
              else [size(self.state.params) // len(self.runs)])
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"

  @property
  def workdirs(self) -> list[str]:
    return [run.workdir for run in self.runs]

  def per_run(self, tree: Any) -> Iterator[tuple[Run, Any]]:
    """(run, its slice of `tree`) for each run, `tree` having a leading runs axis."""
    for i, run in enumerate(self.runs):
      yield run, self._unstack(tree, i)

  def per_run_state(self, pick: Callable[[Any], Any] = lambda state: state
                    ) -> Iterator[tuple[Run, Any]]:
    """(run, `pick` of its train state in its own model's shapes) for each run; `pick`
    is a function of a state's structure, e.g. `update.evaluated_params`."""
    for i, (run, picked) in enumerate(self.per_run(pick(self.state))):
      yield run, self._cropped(i, picked, pick)

  def _cropped(self, i: int, tree: Any, pick: Callable[[Any], Any]) -> Any:
    """`tree`, run i's slice of `pick` of the group's state, in its own model's shapes."""
    return padded_latents.crop_to(tree, pick(self._run_states[i])) if self._padded else tree

  # ---------------------------------------------------------------- training

  def blocks(self) -> Iterator[tuple[int, jax.Array]]:
    """(step after the block, the block's global batches on the mesh) from start_step
    to the end, prepared on a background thread (closed with the group)."""
    shared_data = self._shared_data
    self._train_block = self._make_train_block()
    block_size, num_steps = self.config.train.steps_per_dispatch, self.config.train.num_steps
    examples_axis = update.batch_axis(shared_data)
    sharding = distributed.sharded_along(self.mesh, examples_axis)

    def host_blocks():  # this process's rows of every global block of batches
      for step in range(self.start_step, num_steps, block_size):
        if shared_data:
          yield self.runs[0].batches.block(step, block_size)
        else:
          yield np.stack([run.batches.block(step, block_size) for run in self.runs])

    blocks = prefetch_to_device(
        host_blocks(), lambda block: distributed.put_process_rows(block, sharding,
                                                                  examples_axis))
    self._resources.callback(blocks.close)
    steps = range(self.start_step + block_size, num_steps + 1, block_size)
    return zip(steps, blocks)

  @property
  def _shared_data(self) -> bool:
    """Whether every run sees the same batches (one seed)."""
    return len({run.config.seed for run in self.runs}) == 1

  def _make_train_block(self):
    """The jitted block of steps (`update.make_train_block`), freezing in every block
    once a run has failed."""
    return update.make_train_block(
        self.model, self.config, self._shared_data, self.mesh, self._padded,
        some_frozen=any(run.failure is not None for run in self.runs))

  def train(self, batches: jax.Array) -> None:
    """One block of steps_per_dispatch updates of every run."""
    self.state, self.acc = self._train_block(self.state, self.acc, self._hp,
                                             self._train_keys, batches)

  def _host_accumulators(self) -> list[dict[str, np.ndarray]]:
    acc = jax.device_get(_local(self.acc))
    return [jax.tree.map(lambda leaf: leaf[i], acc) for i in range(len(self.runs))]

  def check_finite(self, host_accumulators: list[dict[str, np.ndarray]] | None = None
                   ) -> None:
    """Acts on runs whose loss was NaN or infinite since the last log (`host_accumulators`,
    fetched here if not given): one run alone raises NonFiniteLossError; in a vectorised
    group each such run is frozen at its last finite step (`update.make_train_block`),
    reported and recorded in its workdir's `FAILED_FILE`, and the others go on, unless
    none is left."""
    newly_failed = []
    for run, acc in zip(self.runs, host_accumulators or self._host_accumulators()):
      bad = int(acc["first_nonfinite_step"])
      if bad == update.NO_BAD_STEP or run.failure is not None:
        continue
      run.failure = {"step": bad, "reason": self._nonfinite_message(run, bad)}
      if distributed.is_primary():
        workdirs_lib.write_failure(run.workdir, run.failure)
      newly_failed.append(run)
    if not newly_failed:
      return
    if all(run.failure is not None for run in self.runs):
      raise errors.NonFiniteLossError(" ".join(run.failure["reason"] for run in newly_failed))
    for run in newly_failed:
      logging.warning("%s Frozen at its last finite step; the other runs go on.",
                      run.failure["reason"])
    self._hp = self._hyperparams()
    if self._train_block is not None:  # from now on every block freezes
      self._train_block = self._make_train_block()

  def _hyperparams(self) -> Any:
    """Each run's `update.hyperparams`, stacked on the mesh; a failed run's frozen."""
    return jax.device_put(
        update.stack_runs([update.hyperparams(run.config) | {"frozen": np.bool_(
            run.failure is not None)} for run in self.runs]),
        distributed.replicated(self.mesh))

  def _nonfinite_message(self, run: Run, bad: int) -> str:
    where = (f"step {self.last_checkpoint} in {run.checkpointer.directory} (still "
             "loadable)" if self.last_checkpoint is not None
             else "none (no checkpoint was written yet)")
    return (f"{run.workdir}: the loss became non-finite at step {bad}. Last good checkpoint: "
            f"{where}. Lower config.optimizer.learning_rate (now "
            f"{run.config.optimizer.learning_rate}) or set config.optimizer.grad_clip_norm, "
            "then rerun in a new --workdir (or this one, to resume from that checkpoint).")

  def log_train(self, step: int, seconds: float) -> dict[str, float]:
    """Writes each run's train means since the last log (`seconds` of training) and
    starts new sums; returns the first run's metrics."""
    host_accumulators = self._host_accumulators()
    self.check_finite(host_accumulators)
    rates = jax.device_get(_local(update.learning_rate(self.state)))
    logged = []
    for i, (run, acc) in enumerate(zip(self.runs, host_accumulators)):
      metrics = update.mean_metrics(acc, self.config.train.steps_per_dispatch)
      metrics["steps_per_sec"] = int(acc["count"]) / seconds
      metrics["learning_rate"] = float(rates[i])
      run.writer.write_metrics(step, "train", metrics)
      logged.append(metrics)
    fresh = update.empty_accumulator(update.train_metric_names(self.model))
    self.acc = jax.device_put(update.stack_runs([fresh] * len(self.runs)),
                              distributed.replicated(self.mesh))
    return logged[0]

  def save(self, step: int) -> None:
    """A checkpoint of every run (state and pending metric sums) at `step`."""
    self.check_finite()
    for (run, state), (_, acc) in zip(self.per_run_state(update.checkpoint_tree),
                                      self.per_run(self.acc)):
      run.checkpointer.save(step, {"state": state, "metrics": acc})
    self.last_checkpoint = step

  # ---------------------------------------------------------------- evaluation

  def evaluate(self, step: int, logged: list[dict] | None = None
               ) -> list[dict[str, dict[str, float]]]:
    """Each run's evaluation of every split of config.eval.splits (written to its
    metrics), and its reconstructions and samples, offered to its best checkpoint; returns
    {split: metrics} per run. `logged` (per run, or None): the splits of a run's
    evaluation of `step` that metrics.jsonl holds (a resume), not redone; the others are
    scored and written."""
    self.check_finite()
    all_results = []
    for i, (run, params) in enumerate(self.per_run(update.evaluated_params(self.state))):
      if run.failure is not None:  # frozen: its record is its failure, not an evaluation
        all_results.append({})
        continue
      done = logged[i] if logged else {}
      missing = [split for split in self.eval_images if split not in done]
      scored = self._score(run, params, missing) if missing else {}
      params = _local(self._cropped(i, params, update.evaluated_params))
      if scored:
        self._record(run, step, params, scored)
      merged = {**done, **scored}
      results = {split: merged[split] for split in self.eval_images}
      if run.best is not None and run.best.offer(step, params, results):
        logging.info("%s: best %s %s so far (%.2f nats), kept in %s.", run.workdir,
                     best_checkpoint.SPLIT, run.best.metric, run.best.record["value"],
                     os.path.join(run.workdir, best_checkpoint.FOLDER))
      all_results.append(results)
    return all_results

  def _record(self, run: Run, step: int, params: Any,
              results: dict[str, dict[str, Any]]) -> None:
    """Writes one run's evaluation to its metrics and the log, and its images."""
    which = update.params_label(self.config)
    for split in results:
      run.writer.write_metrics(step, split, {**results[split], "params": which})
      logging.info("eval %-10s step %d%s%s: %s", split, step,
                   " (EMA params)" if which == "ema" else "",
                   f" [{run.workdir}]" if len(self.runs) > 1 else "",
                   metric_writers.format_metrics(results[split], _EVAL_LOG_METRICS))
    warning = evaluate.collapse_warning(results[split], run.model.latent_dim)
    if warning:
      logging.warning("%s%s", warning, f" [{run.workdir}]" if len(self.runs) > 1 else "")
    run.images.write(step, params, self.shown_images, results[split])
    run.writer.flush()

  def _score(self, run: Run, params: Any, splits: list[str]) -> dict[str, dict[str, Any]]:
    """{split: metrics} of `run`'s `params` (in the program's shapes) on `splits`, by the
    group's one evaluator: a padded run's as its own model scores it (`with_used_latents`)."""
    if self._padded:
      params = with_used_latents(params, run.model.latent_dim)
    results = {}
    for split in splits:
      split_images = self.eval_images[split]
      # A progress line only for an evaluation slower than 30 s (e.g. K = 5000 at the end).
      meter = ProgressLine(f"eval {split}, K={self.config.eval.num_importance_samples}:",
                           len(split_images), only_if_slow=True
                           ) if distributed.is_primary() else None
      results[split] = self.evaluator.evaluate(params, run.eval_key, split_images, meter)
      if self._padded and "kl_per_dim" in results[split]:
        results[split]["kl_per_dim"] = results[split]["kl_per_dim"][:run.model.latent_dim]
    return results

  def out_of_patience(self, step: int) -> bool:
    """Whether every run has gone config.train.early_stopping_patience evaluations
    without beating its best by `step` (never with patience 0)."""
    patience = self.config.train.early_stopping_patience
    if not patience:
      return False
    window = patience * self.config.train.eval_every
    return all(run.failure is not None or (
        run.best is not None and run.best.record is not None
        and step - run.best.record["step"] >= window) for run in self.runs)

  def log_best(self, step: int) -> None:
    """One line per run that keeps its best evaluation: the best step and the last."""
    for run in self.runs:
      if run.best is not None and run.best.record is not None:
        record = run.best.record
        last = logged_results(run.workdir, step, (best_checkpoint.SPLIT,))
        logging.info("%s: best evaluation at step %d (%s %s %.2f nats; params in %s); "
                     "last at step %d (%.2f).", run.workdir, record["step"], record["split"],
                     record["metric"], record["value"],
                     os.path.join(run.workdir, best_checkpoint.FOLDER), step,
                     last[best_checkpoint.SPLIT][record["metric"]] if last else float("nan"))

  def write_traversals(self, step: int) -> None:
    for run, params in self.per_run_state(update.evaluated_params):
      if run.failure is None:
        run.images.write_traversal(step, _local(params), self.shown_images)

  def logged_or_evaluated(self, step: int) -> list[dict[str, dict[str, float]]]:
    """Each run's evaluation of `step` (the checkpoint it resumed from): as logged, and
    anew on the splits metrics.jsonl lacks, as after a stop between that checkpoint and
    its evaluation (or during its writes); offered to the best checkpoint either way (a
    stop may have come between the metrics and the best's save)."""
    return self.evaluate(step, [logged_splits(run.workdir, step, self.config.eval.splits)
                                for run in self.runs])

  def close(self) -> None:
    self._resources.close()

  def __exit__(self, *exc_info) -> None:
    self.close()


def _refuse_if_all_frozen(group_runs: list[Run]) -> None:
  """Runs frozen by an earlier attempt (`Run.failure`) leave nothing to train when alone.

  Raises:
    vae.common.errors.NonFiniteLossError: every run is frozen.
  """
  if all(run.failure is not None for run in group_runs):
    raise errors.NonFiniteLossError(" ".join(
        f"{run.workdir}: frozen since its loss became non-finite at step "
        f"{run.failure['step']} (its checkpoints after that step hold the frozen state). Rerun "
        "its sweep with --retry_failed (which discards them), or train in a new --workdir."
        for run in group_runs))


def _local(tree: Any) -> Any:
  """This process's copy of a replicated (possibly multi-process) pytree of arrays."""
  return jax.tree.map(lambda leaf: leaf.addressable_data(0), tree)


def logged_splits(workdir: str, step: int, splits) -> dict[str, dict[str, float]]:
  """{split: metrics} of the evaluation of `step` on those of `splits` metrics.jsonl
  holds."""
  records = {r["split"]: r for r in metric_writers.read_metrics(workdir) if r["step"] == step}
  return {split: {k: v for k, v in records[split].items()
                  if k not in ("step", "split", "params")}
          for split in splits if split in records}


def logged_results(workdir: str, step: int, splits) -> dict[str, dict[str, float]] | None:
  """The evaluation of `step` as metrics.jsonl holds it, or None if a split is missing."""
  logged = logged_splits(workdir, step, splits)
  return logged if len(logged) == len(splits) else None
