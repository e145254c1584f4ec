r"""Test log p(x), ELBO and gaps of each posterior family, prior and depth on the embedded MNIST.

  python -m scripts.compare_families [--workdir=runs/families] [--num_steps=6000]

Two tables, one budget for every row (--num_steps steps of batch 128 on the embedded
training digits), each run then evaluated on the 500 test digits as experiments.evaluate
does: IWAE log p(x) at K = 5000 and the gap decomposition on the first 100 (a diagonal
q* per example and, for a richer encoder, a q* in its own family too).

  * families: configs/default.py (784-512-256-16 MLP, Bernoulli) with each
    (model.posterior, model.prior) of FAMILIES;
  * layers: Burda et al.'s one- and two-layer models (configs/mnist_mlp.py,
    784-200-200-50, and configs/burda_2layer.py, 784-[200-200]-100-[100-100]-50; tanh),
    without and with a linear KL warm-up over the first 2,000 steps.

Prints Markdown tables, in nats per example. Rerunning skips what is done (runs resume,
evaluations are read back).
"""

import json
import os

from absl import app, flags, logging

from vae import evaluation as evaluate
from vae.configs import burda_2layer, default, mnist_mlp
from vae.runtime import cli
from vae.training import train

# (An IAF with a VampPrior trains ~4x slower, and its IWAE is slower still: the
# VampPrior's density needs q's at every pseudo-input, and an IAF's density inverts it.)
FAMILIES = [("diagonal", "standard_normal"), ("full_covariance", "standard_normal"),
            ("iaf", "standard_normal"), ("diagonal", "mixture"), ("diagonal", "vamp")]
LAYERS = [("one layer, 784-200-200-50", "burda_1layer", mnist_mlp, 0),
          ("two layers, 784-[200-200]-100-[100-100]-50", "burda_2layer", burda_2layer, 0),
          ("one layer, KL warm-up", "burda_1layer_warmup", mnist_mlp, 2000),
          ("two layers, KL warm-up", "burda_2layer_warmup", burda_2layer, 2000)]
"""(label, workdir name, config module, loss.kl_warmup_steps)."""
_WORKDIR = flags.DEFINE_string("workdir", "runs/families", "Folder of the runs.")
_NUM_STEPS = flags.DEFINE_integer("num_steps", 6000, "Training steps of every run.")


def measure(config, name: str) -> dict:
  """Trains `config` at the shared budget in workdir/name and evaluates its test split."""
  config.data.name = "embedded_mnist"
  config.train.num_steps = _NUM_STEPS.value
  config.train.batch_size = 128
  config.train.eval_every = config.train.checkpoint_every = _NUM_STEPS.value
  workdir = os.path.join(_WORKDIR.value, name)
  train.train_and_evaluate(config, workdir)
  path = os.path.join(workdir, "eval_test.json")
  if not os.path.exists(path):
    evaluate.evaluate_run(workdir, "test", overrides={
        "num_importance_samples": 5000, "decompose_gap": True, "num_examples": 100},
        progress=False)
  with open(path) as f:
    return json.load(f)


def cells(results: dict) -> str:
  gaps = results["gap_decomposition"]
  own = (f"{gaps['approximation_gap_family']:.2f} / {gaps['amortization_gap_family']:.2f}"
         if gaps.get("posterior_family") else "(the same)")
  return (f"{results['log_px']:.2f} ± {results['log_px_stderr']:.2f} | {results['elbo']:.2f} "
          f"| {results['kl']:.2f} | {results['bound_gap']:.2f} | "
          f"{gaps['approximation_gap']:.2f} / {gaps['amortization_gap']:.2f} | {own} |")


HEADER = ("log p(x), IWAE-5000 | ELBO | KL | bound gap | approximation / amortisation gap, "
          "diagonal q* | the same, q* in the encoder's family |")


def main(argv):
  del argv
  cli.quiet_dependency_logs()
  logging.set_verbosity(logging.WARNING)
  print(f"| posterior | prior | {HEADER}\n|---|---|---|---|---|---|---|---|")
  for posterior, prior in FAMILIES:
    config = default.get_config()
    config.model.posterior, config.model.prior = posterior, prior
    print(f"| {posterior} | {prior} | {cells(measure(config, f'{posterior}_{prior}'))}")
  print(f"\n| model | {HEADER} KL per layer |\n|---|---|---|---|---|---|---|---|")
  for label, name, config_module, warmup_steps in LAYERS:
    config = config_module.get_config()
    config.loss.kl_warmup_steps = warmup_steps
    results = measure(config, name)
    layers = " + ".join(f"{results[key]:.2f}" for key in ("kl_z1", "kl_z2") if key in results)
    print(f"| {label} | {cells(results)} {layers or '—'} |")


if __name__ == "__main__":
  app.run(main)
