r"""The Fashion-MNIST table (issue 30): each row's published test log p(x) beside ours, from
the workdirs `scripts/fashion_mnist_rows.sh` trains, and the validation curves.

  python -m scripts.fashion_mnist_table --root=runs/fashion_mnist \
      [--page=docs/results/fashion_mnist.md]

Reads ROOT/<row>_seed<k>/ for the rows of `ROWS` (and any other config name found there):
metrics.jsonl (validation log p(x), IWAE with the config's K, every evaluation),
best.json (the best validation evaluation, which the test uses), eval_test.json (the test
split at the best checkpoint, K = 5000; a test of any other checkpoint is left out) and
config.json. Writes the markdown table into
--page, between its lines `<!-- table -->` and `<!-- /table -->`, and the plot of
validation log p(x) against epochs beside it (fashion_mnist_curves.png); a row still
training shows its progress, and the gap's decomposition follows where the test
evaluation made one. Training time is the sum of the logged intervals (steps over
steps/s), evaluations and checkpoints left out; a run started from another's params
(`config.train.init_from`) counts its source's hours too.

What the table shows of each run is also kept beside the page (fashion_mnist_runs.json,
committed with it), so a run whose workdir is gone (its machine replaced) keeps its row:
a workdir under --root replaces its archived record, and an archived run without one is
shown as it was last read, marked "workdir lost" unless it had finished.
"""

from __future__ import annotations

import collections
import json
import os
import re

import numpy as np
from absl import app, flags

from vae.reporting import metric_writers
from vae.runtime import cli
from vae.training import best_checkpoint, checkpoints, warm_start

ROWS = {  # config name -> (the paper's name, published mean, std; Norouzi et al. 2020)
    "fashion_vae": ("VAE w/ Gaussian prior", -228.70, 0.15),
    "fashion_vae_vamp": ("VAE w/ VampPrior", -227.35, 0.05),
    "fashion_hvae": ("HVAE w/ Gaussian prior (two levels)", -227.37, 0.10),
    "fashion_hvae_vamp": ("HVAE w/ VampPrior", -226.72, 0.08),
    "fashion_hvae_vamp_iwae": ("ours: HVAE w/ VampPrior, then IWAE-DReG", None, None),
    "fashion_hvae_vamp_iwae_cosine": ("ours: the row above, then at a cosine-decayed rate",
                                      None, None),
}
# Beyond the table (the rows without a published figure): issue 30's target, 0.5 nats
# above the table's best MLP row (Exemplar HVAE, -226.53).
TARGET = -226.03
TEST_K = 5000  # importance samples of the protocol's test
_RUN = re.compile(r"^(?P<row>.+)_seed(?P<seed>\d+)$")

_ROOT = flags.DEFINE_string("root", "runs/fashion_mnist", "Folder of the rows' workdirs.")
_PAGE = flags.DEFINE_string("page", "docs/results/fashion_mnist.md",
                            "The results page whose table is rewritten; the plot goes beside it.")
_MARKERS = ("<!-- table -->\n", "<!-- /table -->\n")
PLOT = "fashion_mnist_curves.png"
ARCHIVE = "fashion_mnist_runs.json"


def read_run(workdir: str, archive: dict | None = None) -> dict:
  """What the table shows of one workdir; `archive` ({run name: record}) stands in for a
  fine-tuned run's source whose workdir is gone."""
  config = checkpoints.load_config(workdir)
  steps_per_epoch = -(-(60000 - config.data.validation_size) // config.train.batch_size)
  records = metric_writers.read_metrics(workdir)
  train = [r for r in records if r["split"] == "train"]
  validation = [r for r in records if r["split"] == "validation"]
  best = best_checkpoint.read(workdir)
  last_step = max((r["step"] for r in records), default=0)
  patience = config.train.early_stopping_patience * config.train.eval_every
  test = test_of_best(workdir)
  seconds, previous = 0.0, 0
  for record in train:
    seconds += (record["step"] - previous) / record["steps_per_sec"]
    previous = record["step"]
  # A fine-tuned run: its source's hours count too, and its curve goes on from the
  # source's epoch it started from.
  source = _source_record(config.train.get("init_from", ""), archive)
  seconds += source["train_hours"] * 3600 if source else 0.0
  start_epoch = (source.get("start_epoch", 0.0) + _origin_epoch(workdir, source)
                 if source else 0.0)
  return dict(
      workdir=workdir, steps_per_epoch=steps_per_epoch, last_epoch=last_step / steps_per_epoch,
      best_epoch=best["step"] / steps_per_epoch if best else None,
      best_validation=best["value"] if best else None,
      stopped=bool(best and patience and last_step - best["step"] >= patience),
      spent=last_step >= config.train.num_steps, train_hours=seconds / 3600, test=test,
      validation_k=config.eval.num_importance_samples, start_epoch=start_epoch,
      curve=[(start_epoch + r["step"] / steps_per_epoch, r["log_px"]) for r in validation],
      lost=False)


def test_of_best(workdir: str) -> dict | None:
  """eval_test.json if it is the protocol's test (K = TEST_K, nothing pending) of the
  checkpoint best.json names now, else None: a test of an earlier best (the run trained on
  after it) or of another checkpoint or K is stale."""
  best = best_checkpoint.read(workdir)
  try:
    with open(os.path.join(workdir, "eval_test.json")) as f:
      test = json.load(f)
  except (OSError, ValueError):
    return None
  current = (best is not None and test.get("best") and test.get("step") == best["step"]
             and test.get("num_importance_samples") == TEST_K and "pending" not in test)
  return test if current else None


def _origin_epoch(workdir: str, source: dict) -> float:
  """The epoch of `source` (its `read_run` record) whose params the fine-tuned run in
  `workdir` started from: as its warm_start.json names it, else (a run started before
  that record existed) the source's best."""
  origin = warm_start.read_origin(workdir)
  if origin is not None:
    return origin["step"] / source["steps_per_epoch"]
  return source["best_epoch"] or 0.0


def _source_record(source: str, archive: dict | None) -> dict | None:
  """`read_run`'s record of a fine-tuned run's source workdir, or its archived one."""
  if source and os.path.isdir(source):
    return read_run(source, archive)
  return (archive or {}).get(os.path.basename(source.rstrip("/"))) if source else None


def _state(run: dict) -> str:
  if run["stopped"]:
    return "early-stopped"
  if run.get("spent"):
    return "steps all done"
  return "workdir lost" if run.get("lost") else "training"


def _cell(values: list[float]) -> str:
  if not values:
    return "—"
  if len(values) == 1:
    return f"{values[0]:.2f}"
  return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} ({len(values)} seeds)"


def table(runs: dict[str, list[dict]]) -> str:
  lines = ["| row (config) | published | ours: test log p(x), K = 5000 | test ELBO | "
           "validation log p(x) at the best | best epoch / last epoch | training hours | state |",
           "|---|---|---|---|---|---|---|---|"]
  for row, row_runs in runs.items():
    name, mean, std = ROWS.get(row, (row, None, None))
    tests = [r["test"] for r in row_runs if r["test"]]
    published = f"{mean:.2f} ± {std:.2f}" if mean is not None else f"— (target ≥ {TARGET:.2f})"
    states = [_state(r) for r in row_runs]
    lines.append(
        f"| {name} (`{row}`) | {published} | {_cell([t['log_px'] for t in tests])} | "
        f"{_cell([t['elbo'] for t in tests])} | "
        + ", ".join(f"{r['best_validation']:.2f}" if r["best_validation"] else "—"
                    for r in row_runs) + " | "
        + ", ".join(f"{r['best_epoch'] or 0:.0f} / {r['last_epoch']:.0f}" for r in row_runs)
        + " | " + ", ".join(f"{r['train_hours']:.1f}" for r in row_runs)
        + f" | {', '.join(states)} |")
  return "\n".join(lines) + "\n"


def gap_table(runs: dict[str, list[dict]]) -> str:
  """The test split's gap decomposition (approximation / amortisation, Cremer et al.) of
  the runs whose eval_test.json has one, q* fitted as one diagonal Gaussian and in the
  encoder's own family (a hierarchy's: the top layer and the upper networks per example;
  for one diagonal layer the two are the same fit); "" when no run has one."""
  lines = []
  for row, row_runs in runs.items():
    for run in row_runs:
      gap = (run["test"] or {}).get("gap_decomposition")
      if gap:
        own = "_family" if gap.get("approximation_gap_family") is not None else ""
        num_own = gap.get("num_examples_family", gap["num_examples"])
        on = "" if num_own == gap["num_examples"] else f" (first {num_own})"
        lines.append(f"| {ROWS.get(row, (row,))[0]} (`{os.path.basename(run['workdir'])}`) | "
                     f"{gap['num_examples']} | {gap['total_gap']:.2f} | "
                     f"{gap['approximation_gap']:.2f} | {gap['amortization_gap']:.2f} | "
                     f"{gap['approximation_gap' + own]:.2f}{on} | "
                     f"{gap['amortization_gap' + own]:.2f}{on} |")
  if not lines:
    return ""
  return ("\nThe bound gap of the best checkpoint on the first test images, split into "
          "approximation and amortisation, with q* the best diagonal Gaussian (over all "
          "layers) and the best of the encoder's own family, per image, nats:\n\n"
          "| row | images | gap | approximation, diagonal | amortisation, diagonal | "
          "approximation, own family | amortisation, own family |\n"
          "|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")


def plot(runs: dict[str, list[dict]], path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  figure, axes = plt.subplots(figsize=(8, 5))
  for row, row_runs in runs.items():
    drawn = [run for run in row_runs if run["curve"]]  # a lost workdir's curve is not kept
    for i, run in enumerate(drawn):
      epochs, values = zip(*run["curve"])
      k = "" if run["validation_k"] == 10 else f" (K = {run['validation_k']})"
      axes.plot(epochs, values, label=ROWS.get(row, (row,))[0] + k if i == 0 else None,
                color=f"C{list(runs).index(row)}", lw=1)
  axes.set(xlabel="epoch", ylabel="validation log p(x), nats (IWAE, K = 10)",
           title="Fashion-MNIST, Tomczak & Welling's protocol")
  all_values = [v for rs in runs.values() for r in rs for _, v in r["curve"]]
  if all_values:  # the last nats, where the rows part: the first epochs fall below
    axes.set_ylim(max(all_values) - 8, max(all_values) + 1)
  axes.grid(alpha=0.3)
  axes.legend(loc="lower right", fontsize="small")
  figure.tight_layout()
  figure.savefig(path, dpi=120)


def read_runs(root: str, archive_path: str) -> dict[str, dict]:
  """{run name: record} of every run under `root` and, for runs without a workdir there,
  the archive's records (marked lost); rewrites the archive with the result."""
  archive = {}
  if os.path.exists(archive_path):
    with open(archive_path) as f:
      archive = json.load(f)
  live = {}
  for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    workdir = os.path.join(root, name)
    if _RUN.match(name) and os.path.exists(os.path.join(workdir, checkpoints.CONFIG_FILE)):
      live[name] = read_run(workdir, archive)
  merged = {**{name: {**run, "lost": True} for name, run in archive.items()}, **live}
  with open(archive_path, "w") as f:
    json.dump(dict(sorted(merged.items())), f, indent=1)
  return merged


def write_table(root: str, page: str) -> str:
  """Reads every run under `root` (and the archive beside `page`), rewrites the table of
  `page`, the plot and the archive beside it; returns the table."""
  runs = collections.defaultdict(list)
  for name, run in sorted(read_runs(root, os.path.join(os.path.dirname(page), ARCHIVE)).items()):
    runs[_RUN.match(name)["row"]].append(run)
  ordered = {row: runs[row] for row in [*ROWS, *sorted(set(runs) - set(ROWS))] if row in runs}
  text = table(ordered) + gap_table(ordered)
  with open(page) as f:
    content = f.read()
  if not all(marker in content for marker in _MARKERS):
    raise ValueError(f"{page} lacks the lines {_MARKERS} around its table.")
  before, rest = content.split(_MARKERS[0], 1)
  after = rest.split(_MARKERS[1], 1)[1]
  with open(page, "w") as f:
    f.write(before + _MARKERS[0] + text + _MARKERS[1] + after)
  plot(ordered, os.path.join(os.path.dirname(page), PLOT))
  return text


def main(argv):
  del argv
  print(cli.run(write_table, _ROOT.value, _PAGE.value))  # a damaged record: one line


if __name__ == "__main__":
  app.run(main)
