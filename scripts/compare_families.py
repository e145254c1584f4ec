r"""Test log p(x), ELBO and gaps of each posterior family and prior on the embedded MNIST.

  python scripts/compare_families.py [--workdir=runs/families] [--num_steps=6000]

Trains configs/default.py (784-512-256-16 MLP, Bernoulli, 6,000 steps of batch 128: one
budget for every row) with each (model.posterior, model.prior) below, then evaluates the
500 test digits as experiments.evaluate does: IWAE log p(x) at K = 5000 and the gap
decomposition (a diagonal q* per example) on the first 100. Prints a Markdown table, in
nats per example. Rerunning skips what is done (runs resume, evaluations are read back).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

from configs import default  # noqa: E402
from vae import cli, evaluate, train  # noqa: E402

# (An IAF with a VampPrior trains ~4x slower, and its IWAE is slower still: the
# VampPrior's density needs q's at every pseudo-input, and an IAF's density inverts it.)
ROWS = [("diagonal", "standard_normal"), ("full_covariance", "standard_normal"),
        ("iaf", "standard_normal"), ("diagonal", "mixture"), ("diagonal", "vamp")]
_WORKDIR = flags.DEFINE_string("workdir", "runs/families", "Folder of the runs.")
_NUM_STEPS = flags.DEFINE_integer("num_steps", 6000, "Training steps of every run.")


def row(posterior: str, prior: str) -> dict:
  config = default.get_config()
  config.model.posterior, config.model.prior = posterior, prior
  config.train.num_steps = _NUM_STEPS.value
  config.train.eval_every = config.train.checkpoint_every = _NUM_STEPS.value
  workdir = os.path.join(_WORKDIR.value, f"{posterior}_{prior}")
  train.train_and_evaluate(config, workdir)
  path = os.path.join(workdir, "eval_test.json")
  if not os.path.exists(path):
    evaluate.evaluate_run(workdir, "test", overrides={
        "num_importance_samples": 5000, "decompose_gap": True, "num_examples": 100},
        progress=False)
  with open(path) as f:
    results = json.load(f)
  gaps = results["gap_decomposition"]
  return dict(posterior=posterior, prior=prior, log_px=results["log_px"],
              log_px_stderr=results["log_px_stderr"], elbo=results["elbo"],
              kl=results["kl"], bound_gap=results["bound_gap"],
              approximation_gap=gaps["approximation_gap"],
              amortization_gap=gaps["amortization_gap"], seconds=results["seconds"])


def main(argv):
  del argv
  cli.quiet_dependency_logs()
  logging.set_verbosity(logging.WARNING)
  rows = [row(posterior, prior) for posterior, prior in ROWS]
  print("| posterior | prior | log p(x), IWAE-5000 | ELBO | KL | bound gap | "
        "approximation gap | amortisation gap |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['posterior']} | {r['prior']} | {r['log_px']:.2f} ± {r['log_px_stderr']:.2f} "
          f"| {r['elbo']:.2f} | {r['kl']:.2f} | {r['bound_gap']:.2f} | "
          f"{r['approximation_gap']:.2f} | {r['amortization_gap']:.2f} |")


if __name__ == "__main__":
  app.run(main)
