"""Checks a whole run config before any data is read or any program is traced.

Each failed check raises one `ValueError` that names the field, the value, what it must
be and how to fix it, so a bad `--config.x=y` flag stops at once with a plain message.
"""

from __future__ import annotations

import math

import ml_collections

from vae import data, models

OBJECTIVES = ("elbo", "iwae")
SCHEDULES = ("constant", "cosine")


def _fail(field: str, value, must: str, fix: str = "") -> None:
  message = f"config.{field}={value!r} is invalid: it must be {must}."
  raise ValueError(message + (f" {fix}" if fix else ""))


def _int_at_least(config, field: str, minimum: int = 1) -> None:
  value = get_field(config, field)
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    _fail(field, value, f"an integer >= {minimum}")


def get_field(config: ml_collections.ConfigDict, field: str):
  """config['a']['b'] for field 'a.b'."""
  node = config
  for part in field.split("."):
    node = node[part]
  return node


def _one_of(config, field: str, valid) -> None:
  value = get_field(config, field)
  if value not in valid:
    _fail(field, value, f"one of {sorted(valid)}")


def check_model(config: ml_collections.ConfigDict, info: data.DatasetInfo) -> None:
  """Architecture, likelihood and sizes, and whether they fit the data described by info."""
  _one_of(config, "model.architecture", models.ARCHITECTURES)
  _one_of(config, "model.likelihood", models.LIKELIHOOD_HEADS)
  _one_of(config, "model.activation", models.ACTIVATIONS)
  _int_at_least(config, "model.latent_dim")
  for field in ("model.hidden_sizes", "model.conv_features"):
    sizes = get_field(config, field)
    if not all(isinstance(s, int) and s >= 1 for s in sizes):
      _fail(field, sizes, "a sequence of integers >= 1")
  if config.model.architecture == "conv" and not config.model.conv_features:
    _fail("model.conv_features", config.model.conv_features, "non-empty for 'conv'")
  _int_at_least(config, "model.conv_hidden_size")
  likelihood = config.model.likelihood
  if likelihood == "bernoulli" and info.kind == "color":
    _fail("model.likelihood", likelihood,
          f"a likelihood for {info.name}'s continuous colour values",
          "Use 'gaussian', or set config.data.binarize='dynamic' to model binary pixels.")
  if likelihood == "gaussian" and info.kind == "binary":
    _fail("model.likelihood", likelihood,
          f"a likelihood for binary pixels ({info.name} with binarize="
          f"{config.data.binarize!r}); a Gaussian density on 0/1 values is unbounded",
          "Use 'bernoulli', or set config.data.binarize='none'.")
  models.check_architecture_fits(config.model, info.image_shape)


def check_loss_and_optimizer(config: ml_collections.ConfigDict) -> None:
  _one_of(config, "loss.objective", OBJECTIVES)
  beta = config.loss.beta
  if not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
    _fail("loss.beta", beta, "a finite number >= 0")
  if config.loss.objective == "iwae" and beta != 1:
    _fail("loss.beta", beta, "1 with the 'iwae' objective, which has no KL weight",
          "Use config.loss.objective='elbo' for a beta-VAE.")
  _int_at_least(config, "loss.kl_warmup_steps", minimum=0)
  _int_at_least(config, "loss.num_samples")
  lr = config.optimizer.learning_rate
  if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
    _fail("optimizer.learning_rate", lr, "a finite number > 0", "Try 1e-3.")
  _one_of(config, "optimizer.schedule", SCHEDULES)
  _int_at_least(config, "optimizer.warmup_steps", minimum=0)
  if config.optimizer.warmup_steps >= config.train.num_steps:
    _fail("optimizer.warmup_steps", config.optimizer.warmup_steps,
          f"smaller than config.train.num_steps ({config.train.num_steps})")
  clip = config.optimizer.grad_clip_norm
  if clip is not None and (not math.isfinite(clip) or clip <= 0):
    _fail("optimizer.grad_clip_norm", clip, "None (no clipping) or a finite number > 0")


def check_schedule(config: ml_collections.ConfigDict) -> None:
  """Step counts; events must fall on dispatch boundaries so the step compiles once."""
  _int_at_least(config, "seed", minimum=0)
  for field in ("train.num_steps", "train.batch_size", "train.steps_per_dispatch",
                "train.log_every", "train.eval_every", "train.checkpoint_every",
                "train.keep_checkpoints"):
    _int_at_least(config, field)
  block = config.train.steps_per_dispatch
  for field in ("train.num_steps", "train.log_every", "train.eval_every",
                "train.checkpoint_every"):
    value = get_field(config, field)
    if value % block:
      _fail(field, value, f"a multiple of config.train.steps_per_dispatch ({block})",
            f"Use {max(block, value // block * block)} or change steps_per_dispatch.")


def check_eval(config: ml_collections.ConfigDict) -> None:
  for field in ("eval.batch_size", "eval.num_importance_samples", "eval.chunk_size",
                "eval.num_elbo_samples", "eval.num_images"):
    _int_at_least(config, field)
  for split in config.eval.splits:
    if split not in data.SPLITS:
      _fail("eval.splits", tuple(config.eval.splits), f"a tuple of names from {data.SPLITS}")


def check_config(config: ml_collections.ConfigDict) -> data.DatasetInfo:
  """Runs every check; returns the data's description for building the model.

  Raises:
    ValueError: naming the first invalid field and the fix.
  """
  check_schedule(config)
  check_loss_and_optimizer(config)
  check_eval(config)
  data.validate_data_config(config.data)
  info = data.dataset_info(config.data)
  check_model(config, info)
  return info
