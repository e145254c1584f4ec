"""The printed table of a run's evaluation (`evaluate_run`'s results), as
`experiments.evaluate` shows it: every mean with its standard error, in nats per example.
"""

from __future__ import annotations

from typing import Any


def format_report(results: dict[str, Any]) -> str:
  """The results of `evaluate_run` as a table, in nats per example (mean, std. error)."""
  k = results["num_importance_samples"]
  lines = [
      f"{results['workdir']}, step {results['step']}, split {results['split']}: "
      f"{results['num_examples']} examples, nats per example",
      f"  {'':<44}{'mean':>11}{'std. err.':>11}",
      _row("ELBO", results, "elbo"),
      _row("  reconstruction E_q log p(x|z)", results, "reconstruction"),
      _row("  KL(q(z|x) || p(z))", results, "kl"),
  ]
  layers = [key[len("kl_"):] for key in results if key.startswith("kl_z")
            and not key.endswith("_stderr")]
  lines += [_row(f"    of layer {name}", results, f"kl_{name}") for name in layers]
  if "mutual_information" in results:
    lines += [_row("  = I(x; z), aggregate posterior", results, "mutual_information"),
              _row("  + KL(q(z) || p(z)), marginal", results, "marginal_kl")]
    for name in layers:
      lines += [_row(f"    of layer {name}: I", results, f"mutual_information_{name}"),
                _row(f"    of layer {name}: marginal KL", results, f"marginal_kl_{name}")]
  lines += [
      _row(f"log p(x), IWAE with K = {k}", results, "log_px"),
      _row("bound gap log p(x) - ELBO ~ KL(q || p(z|x))", results, "bound_gap"),
      f"  {'active units':<44}{results['active_units']:>11d} of {results['latent_dim']}",
  ]
  lines += [f"  {f'  of layer {name}':<44}{results[f'active_units_{name}']:>11d}"
            for name in layers]
  section = results.get("ais")
  if section:
    lines += [
        f"AIS on the first {section['num_examples']} examples ({section['steps']} steps, "
        f"{section['chains']} chains, {section['leapfrog_steps']} leapfrog steps, from the "
        f"{section['start']}; acceptance {section['acceptance_rate']:.2f})",
        _row("log p(x), AIS", section, "log_px"),
        _row(f"log p(x), IWAE with K = {k}", section, "iwae_log_px"),
        _row("AIS - IWAE (paired)", section, "ais_minus_iwae"),
    ]
  section = results.get("gap_decomposition")
  if section:
    lines += [
        f"Gap decomposition on the first {section['num_examples']} examples (q* per "
        f"example: {section['mean_steps']:.0f} Adam steps on average; log p(x) by "
        f"{section['log_px_estimator'].upper()})",
        _row("log p(x)", section, "log_px"),
        _row("ELBO[q*], best diagonal Gaussian per example", section, "elbo_optimal"),
        _row("ELBO[q_encoder]", section, "elbo_encoder"),
        _row("total gap log p(x) - ELBO[q_encoder]", section, "total_gap"),
        _row("  approximation gap log p(x) - ELBO[q*]", section, "approximation_gap"),
        _row("  amortisation gap ELBO[q*] - ELBO[q_encoder]", section, "amortization_gap"),
    ]
    family = section.get("posterior_family")
    if family:
      num_family = section.get("num_examples_family", section["num_examples"])
      on = "" if num_family == section["num_examples"] else f" on the first {num_family}"
      lines += [
          f"  with q* in the encoder's own family{on} ({family}; "
          f"{section['mean_steps_family']:.0f} Adam steps on average)",
          _row(f"ELBO[q*], best {family} per example", section, "elbo_family"),
          _row("  approximation gap log p(x) - ELBO[q*]", section,
               "approximation_gap_family"),
          _row("  amortisation gap ELBO[q*] - ELBO[q_encoder]", section,
               "amortization_gap_family"),
      ]
      if on:  # the diagonal split on the same examples, to compare with
        lines += [_row(f"  approximation gap, diagonal q*,{on}", section,
                       "approximation_gap_on_family_examples"),
                  _row(f"  amortisation gap, diagonal q*,{on}", section,
                       "amortization_gap_on_family_examples")]
  lines.append(f"{results['seconds']:.0f} s, peak memory {results['peak_rss_mib']:.0f} MiB")
  return "\n".join(lines)


def _row(label: str, values: dict, key: str) -> str:
  """One line of the table: `label`, then values[key] and values[key_stderr]."""
  return f"  {label:<44}{values[key]:>11.3f}{values[key + '_stderr']:>11.3f}"
