"""The shapes of Burda et al.'s Table 1 on Fashion-MNIST at a CPU budget (issue 30): the
VAE against IWAE-trained models (k = 5, 50, and DReG at k = 50), one stochastic layer
against two, each on Tomczak & Welling's protocol (configs/fashion_vae.py and
configs/fashion_hvae.py: gated MLPs, 40 latents a level, AdamNormGrad at 5e-4, batch 100).

  python -m experiments.sweep --sweep=configs/sweeps/fashion_burda.py \
      --workdir=runs/fashion_burda --mode=sequential

The budget: 50 epochs a point (25,000 steps), no KL warm-up (an IWAE objective has no KL
to ramp; the VAE trains without it too, so that only the objective differs), no early
stopping; the test split's log p(x) (IWAE, K = 5000) at the end, nothing selected on it.
Burda et al.'s shapes (MNIST, 3,280 epochs): IWAE beats the VAE, more so as k grows, and
two layers beat one. Results: docs/results/fashion_mnist.md.
"""

from vae import sweeps
from vae.configs import fashion_hvae, fashion_vae
from vae.sweeps import summary as sweep_summary

EPOCHS = 50


def get_config():
  config = fashion_vae.get_config()
  config.loss.kl_warmup_steps = 0
  config.train.num_steps = EPOCHS * fashion_vae.STEPS_PER_EPOCH
  config.train.eval_every = config.train.num_steps
  config.train.checkpoint_every = 5 * fashion_vae.STEPS_PER_EPOCH  # a stopped point resumes
  config.train.keep_best, config.train.early_stopping_patience = "", 0
  config.eval.splits = ("test",)
  config.eval.num_importance_samples, config.eval.chunk_size = 5000, 100
  config.eval.num_elbo_samples = 10
  return config


def _depths() -> list[dict]:
  two = fashion_hvae.get_config().model
  return [{"model.upper_latent_dims": ()},
          {"model.upper_latent_dims": two.upper_latent_dims, "model.hierarchy": two.hierarchy,
           "model.upper_hidden_sizes": two.upper_hidden_sizes}]


def get_sweep():
  objectives = [
      {"loss.objective": "elbo", "loss.num_samples": 1},
      {"loss.objective": "iwae", "loss.num_samples": 5},
      {"loss.objective": "iwae", "loss.num_samples": 50},
      {"loss.objective": "iwae", "loss.num_samples": 50, "loss.gradient_estimator": "dreg"},
  ]
  return sweeps.product(_depths(), objectives)


def _row(point: dict) -> str:
  return "two layers" if point.get("model.upper_latent_dims") else "one layer"


def _column(point: dict) -> str:
  if point["loss.objective"] == "elbo":
    return "VAE"
  dreg = "-DReG" if point.get("loss.gradient_estimator") == "dreg" else ""
  return f"IWAE{dreg} k = {point['loss.num_samples']}"


def _cell(row: dict) -> str:
  return f"{row['log_px']:.2f} ({sweep_summary.active_units_text(row)})"


def get_table():
  return sweep_summary.Table("Test log p(x) (IWAE, K = 5000, nats) after 50 epochs, and "
                             "active units (z1+z2), as in Burda et al.'s Table 1.", _row,
                             _column, _cell)
