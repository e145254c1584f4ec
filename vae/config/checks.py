"""Checks a whole run config before any data is read or any program is traced.

Each failed check raises one `ValueError` that names the field, the value, what it must
be and how to fix it (`vae.common.field_checks`), so a bad `--config.x=y` flag stops at once
with a plain message. The data's fields are checked by `vae.data` and the model's by
`vae.models` (each also checks its own when called directly); `check_config` runs
every check.
"""

from __future__ import annotations

import ml_collections

from vae import data, models
from vae.common.field_checks import fail, finite_at_least, get_field, int_at_least, one_of, sizes
from vae.kernels import ais, bounds
from vae.reporting import wandb_run
from vae.training import best_checkpoint

SCHEDULES = ("constant", "cosine", "piecewise")
ESTIMATORS = ("iwae", "ais")


def check_model(config: ml_collections.ConfigDict, info: data.DatasetInfo) -> None:
  """The model's fields (`vae.models.check_model_config`), and whether its likelihood fits
  the data described by info."""
  models.check_model_config(config.model, info.image_shape)
  likelihood = config.model.likelihood
  if likelihood == "bernoulli" and info.kind == "color":
    fail("model.likelihood", likelihood,
         f"a likelihood for {info.name}'s continuous colour values",
         "Use 'gaussian', or set config.data.binarize='dynamic' to model binary pixels.")
  if likelihood == "gaussian" and info.kind == "binary":
    fail("model.likelihood", likelihood,
         f"a likelihood for binary pixels ({info.name} with binarize="
         f"{config.data.binarize!r}); a Gaussian density on 0/1 values is unbounded",
         "Use 'bernoulli', or set config.data.binarize='none'.")


def check_loss_and_optimizer(config: ml_collections.ConfigDict) -> None:
  loss = config.loss
  one_of(config, "loss.objective", bounds.OBJECTIVES)
  finite_at_least(config, "loss.beta", 0.0)
  if loss.objective != "elbo" and loss.beta != 1:
    fail("loss.beta", loss.beta, f"1 with the {loss.objective!r} objective: the IWAE "
         "family has no KL weight", "Use config.loss.objective='elbo' for a beta-VAE"
         + (", or config.loss.ciwae_beta." if loss.objective == "ciwae" else "."))
  int_at_least(config, "loss.kl_warmup_steps", minimum=0)
  if loss.objective != "elbo" and loss.kl_warmup_steps:
    fail("loss.kl_warmup_steps", loss.kl_warmup_steps, f"0 with the {loss.objective!r} "
         "objective: the IWAE family has no KL weight to ramp up",
         "Set --config.loss.kl_warmup_steps=0.")
  finite_at_least(config, "loss.free_bits", 0.0)
  if loss.free_bits and loss.objective != "elbo":
    fail("loss.free_bits", loss.free_bits, f"0 with the {loss.objective!r} objective "
         "(free bits is a floor under the ELBO's KL per dimension)",
         "Use config.loss.objective='elbo'.")
  if loss.free_bits and (config.model.posterior, config.model.prior) != (
      "diagonal", "standard_normal"):
    fail("loss.free_bits", loss.free_bits, "0 with a posterior or prior that does not "
         "factorise over dimensions", "Use model.posterior='diagonal' and "
         "model.prior='standard_normal', or a KL warm-up.")
  if loss.free_bits and not loss.analytic_kl:
    fail("loss.analytic_kl", False, "True with free bits, which floors the closed-form KL "
         "of each dimension", "Set --config.loss.analytic_kl=True.")
  int_at_least(config, "loss.num_samples")
  int_at_least(config, "loss.num_outer_samples")
  finite_at_least(config, "loss.ciwae_beta", 0.0)
  if loss.ciwae_beta > 1:
    fail("loss.ciwae_beta", loss.ciwae_beta, "in [0, 1]")
  one_of(config, "loss.gradient_estimator", bounds.GRADIENT_ESTIMATORS)
  if loss.objective == "elbo" and loss.gradient_estimator == "dreg":
    fail("loss.gradient_estimator", "dreg", "'reparameterized' or 'stl' with the 'elbo' "
         "objective (DReG is for the IWAE family)", "Use 'stl', the ELBO's DReG.")
  if loss.objective == "elbo" and loss.gradient_estimator == "stl" and loss.analytic_kl:
    fail("loss.analytic_kl", True, "False with gradient_estimator='stl', which scores q's "
         "samples instead of a closed-form KL", "Set --config.loss.analytic_kl=False.")
  finite_at_least(config, "optimizer.learning_rate", 0.0, strict=True, fix="Try 1e-3.")
  one_of(config, "optimizer.schedule", SCHEDULES)
  int_at_least(config, "optimizer.warmup_steps", minimum=0)
  finite_at_least(config, "optimizer.adam_eps", 0.0, strict=True, fix="Try 1e-8.")
  one_of(config, "optimizer.normalize_gradients", (False, True))
  if config.optimizer.schedule == "piecewise":
    boundaries = tuple(config.optimizer.decay_boundaries)
    sizes(config, "optimizer.decay_boundaries")
    if list(boundaries) != sorted(set(boundaries)):
      fail("optimizer.decay_boundaries", boundaries, "strictly increasing steps")
    finite_at_least(config, "optimizer.decay_factor", 0.0, strict=True)
  if config.optimizer.grad_clip_norm is not None:
    finite_at_least(config, "optimizer.grad_clip_norm", 0.0, strict=True,
                    fix="Or None, for no clipping.")


def check_schedule(config: ml_collections.ConfigDict) -> None:
  """Step counts; events must fall on dispatch boundaries so the step compiles once."""
  int_at_least(config, "seed", minimum=0)
  for field in ("train.num_steps", "train.batch_size", "train.steps_per_dispatch",
                "train.log_every", "train.eval_every", "train.checkpoint_every",
                "train.keep_checkpoints"):
    int_at_least(config, field)
  finite_at_least(config, "train.ema_decay", 0.0)
  if config.train.ema_decay >= 1:
    fail("train.ema_decay", config.train.ema_decay, "in [0, 1) (0 = off)", "Try 0.999.")
  if config.train.keep_best:
    one_of(config, "train.keep_best", best_checkpoint.METRICS)
    if "validation" not in config.eval.splits:
      fail("train.keep_best", config.train.keep_best, "'' unless config.eval.splits "
           f"includes 'validation' (it selects on validation; splits are "
           f"{tuple(config.eval.splits)})", "Add 'validation' to config.eval.splits.")
  int_at_least(config, "train.early_stopping_patience", minimum=0)
  if config.train.early_stopping_patience and not config.train.keep_best:
    fail("train.early_stopping_patience", config.train.early_stopping_patience,
         "0 unless config.train.keep_best is set (it stops on the kept metric)",
         "Set config.train.keep_best=log_px (or elbo).")
  block = config.train.steps_per_dispatch
  for field in ("train.num_steps", "train.log_every", "train.eval_every",
                "train.checkpoint_every"):
    value = get_field(config, field)
    if value % block:
      fail(field, value, f"a multiple of config.train.steps_per_dispatch ({block})",
           f"Use {max(block, value // block * block)} or change steps_per_dispatch.")


def check_eval(config: ml_collections.ConfigDict) -> None:
  """The evaluation settings: those of training's evaluations and of experiments.evaluate."""
  for field in ("batch_size", "num_importance_samples", "chunk_size", "num_elbo_samples",
                "num_images", "num_examples", "subset_batch_size", "gap.num_samples",
                "gap.max_steps", "gap.check_every", "gap.patience", "gap.num_elbo_samples",
                "ais.steps", "ais.chains", "ais.leapfrog_steps"):
    int_at_least(config, f"eval.{field}")
  int_at_least(config, "eval.mi_num_examples", minimum=-1)
  int_at_least(config, "eval.gap.family_examples", minimum=0)
  for split in config.eval.splits:
    if split not in data.SPLITS:
      fail("eval.splits", tuple(config.eval.splits), f"a tuple of names from {data.SPLITS}")
  if not isinstance(config.eval.decompose_gap, bool):
    fail("eval.decompose_gap", config.eval.decompose_gap, "True or False")
  one_of(config, "eval.estimator", ESTIMATORS)
  finite_at_least(config, "eval.gap.learning_rate", 0.0, strict=True)
  finite_at_least(config, "eval.gap.tolerance", 0.0)
  one_of(config, "eval.ais.start", ais.STARTS)
  one_of(config, "eval.ais.schedule", ais.SCHEDULES)


def check_logging(config: ml_collections.ConfigDict) -> None:
  one_of(config, "logging.wandb", (False, True))
  if config.logging.wandb and not wandb_run.installed():
    fail("logging.wandb", True, "False unless the wandb package is installed",
         f"Install it: {wandb_run.INSTALL_HINT}.")
  if config.logging.wandb and not config.logging.wandb_project:
    fail("logging.wandb_project", config.logging.wandb_project, "a W&B project name")


def check_config(config: ml_collections.ConfigDict) -> data.DatasetInfo:
  """Runs every check, those that need no data first; returns the data's description for
  building the model.

  Raises:
    ValueError: naming the first invalid field and the fix.
  """
  check_schedule(config)
  check_loss_and_optimizer(config)
  check_eval(config)
  check_logging(config)
  info = data.dataset_info(config.data)  # the data's fields and shape: no data is read
  check_model(config, info)
  data.validate_data_config(config.data)  # last: the data is there and readable
  return info


def warnings(config: ml_collections.ConfigDict) -> list[str]:
  """Settings that are valid but likely not what was meant, one line each."""
  found = []
  warmup, num_steps = config.optimizer.warmup_steps, config.train.num_steps
  if warmup >= num_steps:
    found.append(f"config.optimizer.warmup_steps={warmup} >= config.train.num_steps="
                 f"{num_steps}: the whole run is warm-up, and the learning rate ends at "
                 f"{num_steps / warmup:.0%} of config.optimizer.learning_rate.")
  return found
