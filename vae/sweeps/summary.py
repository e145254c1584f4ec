"""A finished sweep as a table (summary.csv, summary.md) and plots (PNG).

Rows hold each point's overrides and its final evaluation on the test split (or the last
split it evaluates), in nats per example: reconstruction, KL (the rate), ELBO, log p̂(x),
bound gap, active units, I(x; z) and the marginal KL, with the wall time the sweep spent on
the point (points trained together in one vectorised program share its time equally).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Any, Callable

import ml_collections
import numpy as np
from matplotlib import colors, figure

from vae.reporting import metric_writers
from vae.training import workdirs

METRIC_COLUMNS = ("reconstruction", "kl", "elbo", "log_px", "bound_gap", "active_units",
                  "mutual_information", "marginal_kl")
_LAYER_PREFIXES = ("active_units_", "mutual_information_z", "marginal_kl_z")


def final_metrics(workdir: str, splits) -> dict[str, float] | None:
  """The last evaluation of the test split (else the last split listed), or None."""
  if not os.path.exists(os.path.join(workdir, metric_writers.METRICS_FILE)):
    return None
  split = "test" if "test" in splits else splits[-1]
  records = [r for r in metric_writers.read_metrics(workdir) if r["split"] == split]
  return records[-1] if records else None


def summary_rows(named: list[tuple[str, ml_collections.ConfigDict]], points: list[dict],
                 workdir: str, times: dict[str, float]) -> list[dict[str, Any]]:
  """One row per point: 'point', its overrides, METRIC_COLUMNS (and those of each layer),
  'num_examples', 'step', 'wall_time_s', and 'kl_per_dim' (a list; absent where the runs do
  not log it); a failed point's row adds 'failed_step' and 'failure' (its reason)."""
  rows = []
  for (name, config), point in zip(named, points):
    metrics = final_metrics(os.path.join(workdir, name), tuple(config.eval.splits)) or {}
    row = {"point": name, **point}
    row.update({k: metrics.get(k, float("nan")) for k in METRIC_COLUMNS})
    row.update({k: v for k, v in metrics.items() if k.startswith(_LAYER_PREFIXES)
                and not k.endswith("_stderr")})
    if "kl_per_dim" in metrics:
      row["kl_per_dim"] = metrics["kl_per_dim"]
    row["num_examples"] = metrics.get("num_examples")
    row["step"] = metrics.get("step")
    row["wall_time_s"] = times.get(name, float("nan"))
    failure = workdirs.read_failure(os.path.join(workdir, name))
    if failure:
      row["failed_step"], row["failure"] = failure["step"], failure["reason"]
    rows.append(row)
  return rows


@dataclasses.dataclass(frozen=True)
class Table:
  """A sweep's own layout of its summary, a sweep file's optional `get_table()`.

  Each summary row (a dict: the point's overrides and its final metrics) goes to the cell
  at (row(r), column(r)), showing cell(r); rows and columns keep the order in which the
  points first name them. A cell no point fills, or whose point has no final metrics yet
  (not started or training), stays empty; a failed point's cell says "failed".
  """
  title: str
  row: Callable[[dict[str, Any]], str]
  column: Callable[[dict[str, Any]], str]
  cell: Callable[[dict[str, Any]], str]

  def markdown(self, rows: list[dict[str, Any]]) -> str:
    """The table as Markdown, its title first."""
    cells = {(self.row(r), self.column(r)): self.cell(r) if has_results(r)
             else "failed" if r.get("failure") else "" for r in rows}
    row_names = list(dict.fromkeys(name for name, _ in cells))
    columns = list(dict.fromkeys(column for _, column in cells))
    lines = [self.title, "", "| | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    lines += ["| " + name + " | " + " | ".join(cells.get((name, c), "") for c in columns)
              + " |" for name in row_names]
    return "\n".join(lines) + "\n"


def has_results(row: dict[str, Any]) -> bool:
  """Whether a summary row holds its point's final metrics (not one unstarted, still
  training or failed)."""
  return any(np.isfinite(row.get(k, np.nan)) for k in METRIC_COLUMNS)


def active_units_text(row: dict[str, Any]) -> str:
  """A summary row's active units, each layer's joined by "+" where it logs them per layer
  (z1 first: "17+3"), for a sweep's own table."""
  layers = sorted(k for k in row if k.startswith("active_units_"))
  return "+".join(f"{row[k]:.0f}" for k in layers or ["active_units"])


def write_summary(rows: list[dict[str, Any]], workdir: str, table: Table | None = None
                  ) -> None:
  """summary.csv, summary.md, the plots that the swept keys allow, and the sweep's own
  table (table.md) where it has one. Vectors (kl_per_dim) go to the heatmap only."""
  columns = list(dict.fromkeys(k for row in rows for k, v in row.items()
                               if not isinstance(v, list) and k != "failure"))
  with open(os.path.join(workdir, "summary.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  with open(os.path.join(workdir, "summary.md"), "w") as f:
    f.write("| " + " | ".join(columns) + " |\n")
    f.write("|" + "---|" * len(columns) + "\n")
    for row in rows:
      f.write("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |\n")
    failures = [row for row in rows if row.get("failure")]
    if failures:
      f.write("\nFailed points (rerun with --retry_failed to try them again):\n\n")
      f.writelines(f"- {row['point']}, step {row['failed_step']}: {row['failure']}\n"
                   for row in failures)
  if table is not None:
    with open(os.path.join(workdir, "table.md"), "w") as f:
      f.write(table.markdown(rows))
  plot_rate_distortion(rows, os.path.join(workdir, "rate_distortion.png"))
  if len({row.get("model.latent_dim") for row in rows} - {None}) > 1:
    plot_against_latent_dim(rows, workdir)
  swept = swept_key(rows)
  if swept and all("kl_per_dim" in row for row in rows):
    plot_kl_per_dim_heatmap(rows, swept, os.path.join(workdir, "kl_per_dim_heatmap.png"))
  if len({row.get("loss.beta") for row in rows} - {None}) > 1 and all(
      np.isfinite(row["mutual_information"]) for row in rows):
    plot_information_against_beta(rows, os.path.join(workdir, "information_vs_beta.png"))


def swept_key(rows: list[dict[str, Any]]) -> str | None:
  """The swept value the plots use: loss.beta or model.latent_dim where it varies, else
  the first override that does; None if none does."""
  varying = [k for k in dict.fromkeys(k for row in rows for k in row)
             if ("." in k or k == "seed") and len({repr(row.get(k)) for row in rows}) > 1]
  for key in ("loss.beta", "model.latent_dim"):
    if key in varying:
      return key
  return varying[0] if varying else None


def plot_kl_per_dim_heatmap(rows: list[dict[str, Any]], swept: str, path: str) -> None:
  """One row per point, ordered by the swept value: the KL of each latent dimension,
  sorted from the largest (nats, log colour scale), so switched-off dimensions show as
  the dark tail of each row."""
  order = sorted(rows, key=lambda r: (repr(type(r.get(swept))), r.get(swept), r["point"]))
  width = max(len(r["kl_per_dim"]) for r in order)
  grid = np.full((len(order), width), np.nan)
  for i, row in enumerate(order):
    values = np.sort(np.asarray(row["kl_per_dim"], float))[::-1]
    grid[i, :len(values)] = np.maximum(values, 1e-4)
  fig = figure.Figure(figsize=(min(12, 3 + 0.12 * width), 1.5 + 0.35 * len(order)))
  ax = fig.subplots()
  image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest",
                    norm=colors.LogNorm(vmin=1e-3, vmax=max(1.0, np.nanmax(grid))))
  ax.set_yticks(range(len(order)), [_label(r) for r in order], fontsize=7)
  ax.set_xlabel("latent dimension, sorted by its KL")
  ax.set_title(f"KL per dimension (test split) against {swept}")
  fig.colorbar(image, ax=ax, label="KL [nats]")
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def plot_information_against_beta(rows: list[dict[str, Any]], path: str) -> None:
  """The KL and its two parts, I(x; z) and KL(q(z) || p(z)), against beta (means over
  the points of each beta)."""
  betas = sorted({row["loss.beta"] for row in rows})

  def mean_of(key):
    return [np.nanmean([r[key] for r in rows if r["loss.beta"] == b]) for b in betas]

  fig = figure.Figure(figsize=(6, 4.5))
  ax = fig.subplots()
  ax.plot(betas, mean_of("kl"), "o-", label="KL(q(z|x) || p(z)) (the rate)")
  ax.plot(betas, mean_of("mutual_information"), "s-", label="I(x; z)")
  ax.plot(betas, mean_of("marginal_kl"), "^-", label="KL(q(z) || p(z)), marginal")
  num = max(row.get("num_examples") or 0 for row in rows)
  if num > 1:
    ax.axhline(np.log(num), color="grey", linestyle=":",
               label=f"log N = {np.log(num):.2f}, the ceiling of I's estimate")
  if min(betas) > 0:
    ax.set_xscale("log")
  ax.set_xlabel("beta")
  ax.set_ylabel("nats per example")
  ax.set_title("The rate and its parts (test split)")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def _cell(value) -> str:
  if isinstance(value, float):
    return f"{value:.2f}" if np.isfinite(value) else ""
  return "" if value is None else str(value)


def _label(row: dict[str, Any]) -> str:
  keys = [k for k in row if "." in k or k == "seed"]
  return ", ".join(f"{k.split('.')[-1]}={row[k]}" for k in keys)


def plot_rate_distortion(rows: list[dict[str, Any]], path: str) -> None:
  """Rate (KL) against distortion (-reconstruction), one annotated point per run."""
  fig = figure.Figure(figsize=(6, 4.5))
  ax = fig.subplots()
  order = sorted(rows, key=lambda r: r["kl"])
  ax.plot([r["kl"] for r in order], [-r["reconstruction"] for r in order], "o-", alpha=0.8)
  for row in rows:
    ax.annotate(_label(row), (row["kl"], -row["reconstruction"]), fontsize=7,
                textcoords="offset points", xytext=(4, 4))
  ax.set_xlabel("rate: KL(q(z|x) || p(z)) [nats]")
  ax.set_ylabel("distortion: -E_q log p(x|z) [nats]")
  ax.set_title("Rate-distortion (test split)")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def plot_against_latent_dim(rows: list[dict[str, Any]], workdir: str) -> None:
  """log p̂(x) and the bound gap, and active units, against the latent size."""
  dims = sorted({row["model.latent_dim"] for row in rows})

  def mean_of(key):
    return [np.nanmean([r[key] for r in rows if r["model.latent_dim"] == d]) for d in dims]

  fig = figure.Figure(figsize=(10, 4))
  left, right = fig.subplots(1, 2)
  left.plot(dims, mean_of("log_px"), "o-", label="log p̂(x) (IWAE)")
  left.plot(dims, mean_of("elbo"), "s--", label="ELBO")
  left.set_ylabel("nats per example")
  left.legend()
  right.plot(dims, mean_of("bound_gap"), "o-", color="C3")
  right.set_ylabel("bound gap log p̂(x) - ELBO [nats]")
  for ax in (left, right):
    ax.set_xscale("log")
    ax.set_xlabel("latent size D")
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "log_px_and_gap_vs_latent_dim.png"), dpi=120)

  fig = figure.Figure(figsize=(5, 4))
  ax = fig.subplots()
  ax.plot(dims, mean_of("active_units"), "o-", label="active units")
  ax.plot(dims, dims, ":", color="gray", label="D (all active)")
  ax.set_xscale("log")
  ax.set_xlabel("latent size D")
  ax.set_ylabel("active units (Cov_x E_q[z_d] > 0.01)")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "active_units_vs_latent_dim.png"), dpi=120)
