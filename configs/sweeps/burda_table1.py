"""Burda et al. (2016) Table 1 as one sweep: {VAE, IWAE} x k in {1, 5, 50} x {one, two
stochastic layers}, plus IWAE-DReG (k = 50), MIWAE and PIWAE (M = K = 8) and CIWAE
(k = 50, beta 0.5) for each depth: 20 points.

Burda's protocol: MNIST (tfds, 50,000 training digits, dynamic binarisation), the
architectures of configs/mnist_mlp.py (784-200-200-50) and configs/burda_2layer.py
(784-[200-200]-100-[100-100]-50), tanh, batch 20, Adam (beta2 0.999, epsilon 1e-4) at
1e-3 * 10^(-i/7) for 3^i epochs, i = 0..7: 3,280 epochs, 8.2 million steps per point.
That is an accelerator's job (a few GPU-days for the 20 points):

  python -m experiments.sweep --sweep=configs/sweeps/burda_table1.py --workdir=runs/burda_table1

A quick offline version on the embedded digits, 22 minutes on 2 CPU cores (the
schedule's boundaries lie beyond the run, so the rate stays at 1e-3; README.md has its
table):

  python -m experiments.sweep --sweep=configs/sweeps/burda_table1.py \
      --workdir=runs/burda_table1_embedded --sweep.data.name=embedded_mnist \
      --sweep.train.num_steps=1000 --sweep.train.batch_size=100 \
      "--sweep.eval.splits=('test',)" --mode=sequential

Burda et al. report test NLL (IWAE-5000) 86.76 / 86.47 / 86.35 (VAE, k = 1 / 5 / 50) and
86.76 / 85.54 / 84.78 (IWAE) with one layer, 85.33 / 85.01 / 84.78 and 85.33 / 83.89 /
82.90 with two. The sweep's table.md lays the results out as their Table 1: one row per
depth and k, one column per objective, each cell the test NLL (IWAE-5000, nats) and the
active units (per layer, top last).
"""

from vae import sweeps
from vae.configs import burda_2layer, mnist_mlp
from vae.sweeps import summary as sweep_summary

STEPS_PER_EPOCH = 50000 // 20
EPOCHS = [3**i for i in range(8)]  # 1 + 3 + ... + 2187 = 3,280


def get_config():
  config = mnist_mlp.get_config()
  config.train.batch_size = 20
  config.train.num_steps = sum(EPOCHS) * STEPS_PER_EPOCH
  config.train.eval_every = config.train.checkpoint_every = 100 * STEPS_PER_EPOCH
  config.model.init = "lecun_normal"  # the table was measured so (before issue 20)
  config.optimizer.learning_rate = 1e-3  # Burda et al.'s
  config.optimizer.schedule = "piecewise"
  config.optimizer.warmup_steps = 0
  config.optimizer.decay_boundaries = tuple(
      sum(EPOCHS[:i + 1]) * STEPS_PER_EPOCH for i in range(len(EPOCHS) - 1))
  config.optimizer.decay_factor = 10 ** (-1 / 7)
  config.optimizer.adam_eps = 1e-4
  config.loss.kl_warmup_steps = 0  # Burda et al. train without (the IWAE has no KL to ramp)
  config.eval.num_importance_samples = 5000
  return config


def _depths() -> list[dict]:
  """One and two stochastic layers, Burda's architectures."""
  two = burda_2layer.get_config().model
  return [{"model.latent_dim": 50, "model.upper_latent_dims": ()},
          {"model.latent_dim": two.latent_dim, "model.upper_latent_dims": two.upper_latent_dims,
           "model.upper_hidden_sizes": two.upper_hidden_sizes}]


def get_sweep():
  table = sweeps.product(sweeps.axis("loss.objective", ["elbo", "iwae"]),
                         sweeps.axis("loss.num_samples", [1, 5, 50]), _depths())
  tighter = [
      {"loss.objective": "iwae", "loss.num_samples": 50, "loss.gradient_estimator": "dreg"},
      {"loss.objective": "miwae", "loss.num_samples": 8, "loss.num_outer_samples": 8},
      {"loss.objective": "piwae", "loss.num_samples": 8, "loss.num_outer_samples": 8},
      {"loss.objective": "ciwae", "loss.num_samples": 50, "loss.ciwae_beta": 0.5},
  ]
  return table + sweeps.product(tighter, _depths())


OBJECTIVE_NAMES = {"elbo": "VAE", "iwae": "IWAE", "miwae": "MIWAE", "piwae": "PIWAE",
                   "ciwae": "CIWAE"}


def _row(point: dict) -> str:
  layers = 2 if point.get("model.upper_latent_dims") else 1
  k = point["loss.num_samples"] * point.get("loss.num_outer_samples", 1)
  return f"{layers} layer{'s' * (layers > 1)}, k = {k}"


def _column(point: dict) -> str:
  name = OBJECTIVE_NAMES[point["loss.objective"]]
  if point.get("loss.gradient_estimator") == "dreg":
    return name + "-DReG"
  if "loss.num_outer_samples" in point:
    return f"{name} (M = {point['loss.num_outer_samples']})"
  if "loss.ciwae_beta" in point:
    return f"{name} (beta = {point['loss.ciwae_beta']})"
  return name


def _cell(row: dict) -> str:
  return f"{-row['log_px']:.2f} ({sweep_summary.active_units_text(row)})"


def get_table():
  return sweep_summary.Table("Test NLL (IWAE-5000, nats) and active units, as in Burda "
                             "et al. (2016) Table 1.", _row, _column, _cell)
