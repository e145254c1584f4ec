"""Configs saved by runs that predate a field: the one place that says what such a run did.

A field added to the config after a run was saved is missing from its `config.json`; the
run behaved as the value below says (the old behaviour, which may differ from today's
default). Every reader of a saved config (`vae.training.checkpoints.load_config`, the
resume check) fills the missing fields from here, so an old run resumes, evaluates and
rebuilds its model as it trained. Values are JSON types (lists, not tuples), as saved.
"""

from __future__ import annotations

from typing import Any

FIELDS_BEFORE: dict[str, dict[str, Any]] = {
    "data": dict(validation_shuffle_seed=None),
    "model": dict(posterior="diagonal", prior="standard_normal", upper_latent_dims=[],
                  upper_hidden_sizes=[100, 100], init="lecun_normal",
                  decoder_bias_init="zeros", pseudo_inputs="sigmoid", hierarchy="bottom_up",
                  logvar_bounds=[]),
    "loss": dict(num_outer_samples=1, ciwae_beta=0.5, gradient_estimator="reparameterized"),
    "optimizer": dict(decay_boundaries=[], decay_factor=0.1, adam_eps=1e-8,
                      normalize_gradients=False),
    "train": dict(ema_decay=0.0, keep_best="", early_stopping_patience=0, init_from=""),
    "logging": dict(wandb=False, wandb_project="vae-jax"),
    "eval": dict(gap=dict(family_examples=0)),
}


def migrate(saved: dict[str, Any]) -> dict[str, Any]:
  """The config dict a run saved, with every field it predates at its old value.

  Args:
    saved: a run's config as plain JSON types (its `config.json`).

  Returns:
    A new dict; the saved values win over the old ones at every depth, sections it lacks
    are added.
  """
  return with_missing(FIELDS_BEFORE, saved)


def with_missing(before: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
  """`saved` with the fields of `before` it lacks, nested dicts merged the same way."""
  merged = dict(saved)
  for key, old in before.items():
    if isinstance(old, dict) and isinstance(saved.get(key, {}), dict):
      merged[key] = with_missing(old, saved.get(key, {}))
    elif key not in saved:
      merged[key] = old
  return merged
