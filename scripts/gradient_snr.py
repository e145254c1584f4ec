r"""Gradient signal-to-noise ratio of the encoder and the decoder, per K and estimator.

  python -m scripts.gradient_snr [--workdir=runs/gradient_snr/run] [--ks=1,5,50,500]
      [--num_draws=100] [--num_examples=8] [--out=runs/gradient_snr]

For the checkpoint in --workdir (default: trained there first, a 1,000-step run of
configs/default.py), draws --num_draws gradients of the IWAE_K objective (mean over the
first --num_examples test digits, `vae.bounds.bound_objective`) with each estimator
(reparameterized, stl, dreg) and each K, and reports SNR = |E g| / std g per parameter,
averaged over the encoder's parameters and over the decoder's (Rainforth et al. 2018,
Fig. 1; Tucker et al. 2019, Fig. 1). Writes `snr.md` (a Markdown table) and `snr.png` in
--out. Expected: the plain encoder SNR falls like 1/sqrt(K), DReG's does not, and the
decoder's rises.
"""

import os

import jax.numpy as jnp
from absl import app, flags, logging

from scripts.bench.snr import snr
from vae import data
from vae.configs import default
from vae.kernels import bounds
from vae.models import build_model
from vae.runtime import cli
from vae.training import checkpoints, train

ESTIMATORS = bounds.GRADIENT_ESTIMATORS
_WORKDIR = flags.DEFINE_string("workdir", "runs/gradient_snr/run",
                               "A run's folder (trained there first if it has no checkpoint).")
_OUT = flags.DEFINE_string("out", "runs/gradient_snr", "Folder of snr.md and snr.png.")
_KS = flags.DEFINE_list("ks", ["1", "5", "50", "500"], "Values of K.")
_NUM_DRAWS = flags.DEFINE_integer("num_draws", 100, "Gradient draws per (K, estimator).")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 8, "Test digits in the objective.")


def trained_run(workdir: str) -> str:
  if checkpoints.latest_step(workdir) is None:
    config = default.get_config()
    config.train.num_steps = config.train.eval_every = config.train.checkpoint_every = 1000
    train.train_and_evaluate(config, workdir)
  return workdir


def write_plot(table: dict, ks: list[int], path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
  for ax, part in zip(axes, ("encoder", "decoder")):
    for estimator in ESTIMATORS:
      ax.loglog(ks, [table[(k, estimator)][part] for k in ks], "o-", label=estimator)
    ax.set(title=f"{part} gradient", xlabel="K", ylabel="mean SNR |E g| / std g")
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main(argv):
  del argv
  cli.quiet_dependency_logs()
  logging.set_verbosity(logging.WARNING)
  workdir = trained_run(_WORKDIR.value)
  config = checkpoints.load_config(workdir)
  _, params, step = checkpoints.load_params(workdir, None)
  model = build_model(config.model, data.dataset_info(config.data).image_shape)
  x = jnp.asarray(data.load_split(config.data, "test")[:_NUM_EXAMPLES.value])
  ks = [int(k) for k in _KS.value]
  table = {(k, e): snr(model, params, x, k, e, _NUM_DRAWS.value)
           for k in ks for e in ESTIMATORS}
  lines = [f"Gradient SNR of IWAE_K, {workdir} at step {step}, {_NUM_EXAMPLES.value} test "
           f"digits, {_NUM_DRAWS.value} draws (mean over parameters of |E g| / std g):", "",
           "| K | " + " | ".join(f"encoder, {e}" for e in ESTIMATORS) + " | "
           + " | ".join(f"decoder, {e}" for e in ESTIMATORS) + " |",
           "|---|" + "---|" * 2 * len(ESTIMATORS)]
  for k in ks:
    cells = [f"{table[(k, e)][part]:.3f}" for part in ("encoder", "decoder")
             for e in ESTIMATORS]
    lines.append(f"| {k} | " + " | ".join(cells) + " |")
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, "snr.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  write_plot(table, ks, os.path.join(_OUT.value, "snr.png"))
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
