"""Trains a VAE from a config: the loop, top to bottom.

`train_and_evaluate(config, workdir)` is the whole run. It resumes by itself from the
latest checkpoint in `workdir`, and a resumed run ends with exactly the numbers of an
uninterrupted one: batches are a function of (seed, data.num_shards, step), the PRNG key
of step t is fold_in(key, t), and the evaluation keys are fixed. With several processes
each reads only its shards of the training set and its part of the evaluation splits
(`vae.runtime.distributed`).

The parts: `vae.training.update` (the pure update step), `vae.training.runs.RunGroup` (checks, data,
state, checkpoints, metrics, images and evaluations of the runs, closed on every exit),
and the loop below, which only decides when each of them happens.
"""

from __future__ import annotations

import signal

import ml_collections
from absl import logging

from vae.reporting import metric_writers
from vae.reporting.progress import IntervalTimer, Progress
from vae.training.runs import RunGroup


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, dict[str, float]]:
  """Trains, evaluates, logs and checkpoints one run; resumes from `workdir` if it can.

  Writes to workdir: config.json, metrics.jsonl, tensorboard/, checkpoints/, images/.

  Returns:
    {split: metrics} of the final evaluation, in nats per example.

  Raises:
    ValueError: a bad config value or an incompatible checkpoint (before any training).
    vae.common.errors.NonFiniteLossError: the loss became NaN or infinite.
    KeyboardInterrupt: Ctrl-C or SIGTERM, after saving a checkpoint.
  """
  return train_vectorized([config], [workdir])[0]


def train_vectorized(configs: list[ml_collections.ConfigDict], workdirs: list[str]
                     ) -> list[dict[str, dict[str, float]]]:
  """Trains runs that differ only in `vae.training.update.VECTORIZED_FIELDS` together, in one
  jitted program.

  Each run writes exactly what `train_and_evaluate` writes, to its own workdir, and gets
  the same numbers it would get alone (up to float rounding of batched matmuls).
  """
  with RunGroup(configs, workdirs) as group:
    start, cfg = group.start_step, group.config.train
    # A stop between an evaluation step's checkpoint and its evaluation: evaluated first,
    # so that the early stop and the best checkpoint count it.
    results = group.logged_or_evaluated(start) if start and is_due(
        start, cfg.eval_every, cfg.num_steps) else []
    if start >= cfg.num_steps or group.out_of_patience(start):
      logging.info("Already finished (step %d%s): %s.", start,
                   ", stopped early" if group.out_of_patience(start) else "",
                   ", ".join(workdirs))
      return results or group.logged_or_evaluated(start)
    return _loop(group)


def is_due(step: int, every: int, num_steps: int) -> bool:
  """Whether a cadence of `every` steps falls at `step` (always at the last step)."""
  return step % every == 0 or step == num_steps


def _loop(group: RunGroup) -> list[dict[str, dict[str, float]]]:
  """Blocks of steps, then each cadence: log, checkpoint (also on Ctrl-C or SIGTERM),
  evaluate; after an evaluation, the early stop (a checkpoint of its step, so that a
  rerun finds the run finished)."""
  cfg = group.config.train
  progress = Progress("step", cfg.num_steps, "steps", start=group.start_step)
  timer = IntervalTimer()  # training time between two logs, pauses left out
  results, step = [], group.start_step
  with _StopRequest() as stop:
    for step, batches in group.blocks():
      group.train(batches)
      if is_due(step, cfg.log_every, cfg.num_steps):
        metrics = group.log_train(step, timer.lap())
        logging.info("%s | %s", progress.status(step), metric_writers.format_metrics(
            metrics, ("elbo", "reconstruction", "kl")))
      if is_due(step, cfg.checkpoint_every, cfg.num_steps) or stop.requested:
        with timer.paused():
          group.save(step)
      if stop.requested:
        raise KeyboardInterrupt(f"Interrupted: saved a checkpoint of step {step} in "
                                f"{', '.join(group.workdirs)}; rerun the command to resume.")
      if is_due(step, cfg.eval_every, cfg.num_steps):
        with timer.paused():
          results = group.evaluate(step)
          if group.out_of_patience(step):
            if not is_due(step, cfg.checkpoint_every, cfg.num_steps):
              group.save(step)
            logging.info("Early stop at step %d: %d evaluations without a better "
                         "validation %s.", step, cfg.early_stopping_patience, cfg.keep_best)
            break
  group.write_traversals(step)
  group.log_best(step)
  return results


class _StopRequest:
  """Turns the first Ctrl-C (SIGINT) or SIGTERM (how schedulers preempt a job) into a
  flag the loop checks between dispatches; a second one of the same acts at once."""

  _SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    self._previous = {signum: signal.signal(signum, self._handle) for signum in self._SIGNALS}
    return self

  def _handle(self, signum, frame):
    del frame
    self.requested = True
    logging.warning("%s: saving a checkpoint after this dispatch (again to stop at once).",
                    self._SIGNALS[signum])
    signal.signal(signum, self._previous[signum])

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
