"""Per-example arrays summarised over a split: means and standard errors, active units,
the rate's parts (I(x; z), the marginal KL, the KL per dimension) and the collapse warning.

Numpy only, on the host: the inputs are the arrays the sharded evaluator gathered.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vae.evaluation import example_metrics
from vae.models import Model


def summarize(model: Model, per_example: dict[str, np.ndarray], means: np.ndarray
              ) -> dict[str, float]:
  """Means of the per-example metrics ({name: (N,)}), the standard errors of
  `example_metrics.metric_names(model)`, the active units of `means` (N, D) and N."""
  n = len(means)
  summary = {k: float(np.mean(v)) for k, v in per_example.items()}
  for k in example_metrics.metric_names(model):
    summary[f"{k}_stderr"] = _stderr(per_example[k])
  summary["active_units"] = active_units(means)
  summary["num_examples"] = n
  return summary


def mean_and_stderr(name: str, values: np.ndarray) -> dict[str, float]:
  """{name: the mean of `values` (N,), name_stderr: its standard error}."""
  return {name: float(np.mean(values)), f"{name}_stderr": _stderr(values)}


def _stderr(values: np.ndarray) -> float:
  """Standard error of the mean over examples; 0 for fewer than two."""
  n = len(values)
  return float(np.std(values, ddof=1) / np.sqrt(n)) if n > 1 else 0.0


def latent_summary(model: Model, latents: dict[str, np.ndarray],
                   information: dict[str, np.ndarray]) -> dict[str, Any]:
  """`kl_per_dim` (a list of D floats, the mean over examples; absent where q or p does
  not factorise), and `mutual_information` and `marginal_kl` with standard errors, of
  the whole z and, with several stochastic layers, of each (`_z1`, ...), in nats."""
  summary: dict[str, Any] = {}
  if "kl_per_dim" in latents:
    summary["kl_per_dim"] = [float(v) for v in np.mean(latents["kl_per_dim"], axis=0)]
  for name, terms in information.items():
    # I(x; z) = I(x; z_1); the whole z's marginal KL is its KL minus I(x; z).
    whole = terms[:, 0] if name == "mutual_information" else (
        np.sum(terms, axis=1) + np.sum(information["mutual_information"][:, 1:], axis=1))
    summary.update(mean_and_stderr(name, whole))
    if model.is_hierarchy:
      for layer, layer_name in enumerate(model.layer_names):
        summary.update(mean_and_stderr(f"{name}_{layer_name}", terms[:, layer]))
  return summary


def active_units(posterior_means: np.ndarray, threshold: float = 0.01) -> int:
  """Latent dimensions whose E_q[z_d|x] varies over the data: Cov_x(E_q[z_d]) > threshold.

  Burda et al. (2016): a unit is active when its posterior mean varies across examples.
  Args: posterior_means: (N, D).
  """
  return int(np.sum(np.var(posterior_means, axis=0) > threshold))


def layer_active_units(model: Model, posterior_means: np.ndarray) -> dict[str, int]:
  """{active_units_z1: ..., active_units_zL: ...} of a model of several stochastic
  layers, {} for one; posterior_means (N, D) as `encode_mean` gives them."""
  layers = np.split(posterior_means, np.cumsum(model.latent_sizes)[:-1], axis=1)
  return {f"active_units_{name}": active_units(layer)
          for name, layer in zip(model.layer_names, layers)}


def collapse_warning(summary: dict[str, Any], latent_dim: int) -> str | None:
  """One line when more than half of the latent dimensions are inactive, naming the
  remedies the config offers; None otherwise."""
  active = summary["active_units"]
  if 2 * active >= latent_dim:
    return None
  return (f"Posterior collapse: only {active} of {latent_dim} latent dimensions are active "
          "(see kl_per_dim); try a KL warm-up (config.loss.kl_warmup_steps), free bits "
          "(config.loss.free_bits) or a smaller config.loss.beta.")
