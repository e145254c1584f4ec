"""Default VAE run: an MLP VAE on 5,000 MNIST digits that ship inside a pip package.

Command (from the repository root; works offline):

  python -m experiments.train --config=configs/default.py --workdir=runs/default

Override any field on the command line, e.g. `--config.model.latent_dim=8
--config.loss.beta=2`. Expected on 2 CPU cores: under 1 minute (6,000 steps, 192 epochs of
the 4,000 train digits, three evaluations). Measured at step 6,000 on the 500 test digits:
ELBO -107.3, log p(x) (IWAE, K = 100) -101.9, bound gap 5.5 nats per example, all 20
latent units active.

The recipe (issue 20, `python -m scripts.recipe_compare`, README "The recipe"): the
PyTorch example's model (784-400-20 relu, Bernoulli, Adam, batch 128) with PyTorch's
fan-in-uniform initialisation and a peak rate of 3e-3 after a 100-step warm-up, decayed by
a cosine to 0. It beats the PyTorch example's own loop on these digits by 1.7 nats of test
NLL (IWAE, K = 5000) after 100 epochs and 1.4 after 200. Before it, this config was
784-512-256-16 with flax's LeCun-normal initialisation and a peak of 1e-3: log p(x)
-102.9 (-102.4 with seed 1); no recipe tried on that model did better (fan-in init
-102.3/-103.6 for seeds 0/1, peaks of 7e-4 and 2e-3 worse: -103.7, -107.8), since it
overfits the 4,000 digits (train ELBO -93 against test -108.7).
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  """The default run config: one section per part of a run (see each `_<section>()`)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = _data()
  config.model = _model()
  config.loss = _loss()
  config.optimizer = _optimizer()
  config.train = _train()
  config.logging = _logging()
  config.eval = _eval()
  return config


def _data() -> ml_collections.ConfigDict:
  """Which images, how they are binarised and split."""
  data = ml_collections.ConfigDict()
  data.name = "embedded_mnist"
  data.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None: tfds default.
  data.path = config_dict.placeholder(str)  # The .npz file ("npz"), idx folder ("idx").
  data.binarize = "dynamic"  # "none" | "dynamic" | "static".
  data.validation_size = 5000  # Train examples held out where a set has no validation split.
  # None: hold out the train split's last rows; a seed: shuffle it once with it first.
  data.validation_shuffle_seed = config_dict.placeholder(int)
  data.download = False  # Let tfds download and prepare a missing catalog set.
  # Equal parts of the training set that every batch draws from evenly; a run over P
  # processes needs P to divide it (each reads only its own shards). The numbers depend on
  # it, not on the number of processes or devices.
  data.num_shards = 1
  return data


def _model() -> ml_collections.ConfigDict:
  """The encoder, decoder, posterior family, prior and stochastic layers."""
  model = ml_collections.ConfigDict()
  model.architecture = "mlp"  # "mlp" | "conv".
  model.latent_dim = 20
  model.likelihood = "bernoulli"  # "bernoulli" | "gaussian".
  model.activation = "relu"  # Or "gated": gated dense layers (h = (W x + b) * sigmoid(V x + c)).
  model.hidden_sizes = (400,)  # MLP encoder widths; the decoder mirrors them.
  model.conv_features = (32, 64)  # Stride-2 conv channels (conv architecture).
  model.conv_hidden_size = 256  # Dense layer between convs and latents.
  model.posterior = "diagonal"  # q(z|x): "diagonal" | "full_covariance" | "iaf".
  model.flow_steps = 2  # IAF steps ("iaf").
  model.flow_hidden = 64  # Width of each IAF step's MADE and of its context h ("iaf").
  # Params at step 0: "lecun_normal" (flax's LeCun-normal kernels, zero biases) |
  # "fan_in_uniform" (PyTorch's nn.Linear/nn.Conv: kernels and biases U(+-1/sqrt(fan_in))) |
  # "he_normal" (kernels N(0, 2/fan_in), biases as PyTorch's: Tomczak & Welling's he_init).
  model.init = "fan_in_uniform"
  # The decoder's output bias at step 0: "zeros" (as `init` draws it) | "data_mean" (p(x|z)
  # starts at the training images' per-pixel mean; keeps tanh encoders out of saturation,
  # issue 33, docs/families.md).
  model.decoder_bias_init = "zeros"
  model.prior = "standard_normal"  # p(z): "standard_normal" | "mixture" | "vamp".
  model.prior_components = 50  # Mixture components or VampPrior pseudo-inputs.
  # The VampPrior's pseudo-inputs: "sigmoid" (of N(0, 0.01^2): grey 0.5 at the start) |
  # "clipped" (clip(N(0.05, 0.01^2), 0, 1), Tomczak & Welling's; docs/families.md).
  model.pseudo_inputs = "sigmoid"
  # Stochastic layers above z_1 (whose size is latent_dim), bottom to top, e.g. (50,) for
  # two layers; () for one. q(z_{l+1}|z_l) and p(z_l|z_{l+1}) are diagonal Gaussians
  # from MLPs of upper_hidden_sizes; posterior and prior apply to z_1 and z_L.
  model.upper_latent_dims = ()
  model.upper_hidden_sizes = (100, 100)
  # The order of several layers' posterior: "bottom_up" q(z_1|x) q(z_2|z_1) ..., the
  # decoder reading z_1 (Burda et al.) | "top_down" q(z_L|x) q(z_{L-1}|x, z_L) ..., the
  # decoder reading every layer, each through a hidden layer of its own (Tomczak &
  # Welling's HVAE; q(z_l|x, z_{l+1}) reads x and z_{l+1} so too).
  model.hierarchy = "bottom_up"
  # Bounds (low, high) of every Gaussian head's log-variance (a hardtanh: Tomczak &
  # Welling's (-6.0, 2.0)); () for none.
  model.logvar_bounds = ()
  return model


def _loss() -> ml_collections.ConfigDict:
  """The objective and its gradient estimator."""
  loss = ml_collections.ConfigDict()
  # "elbo" | "iwae" | "miwae" | "piwae" | "ciwae" (vae.kernels.bound_objective).
  loss.objective = "elbo"
  loss.beta = 1.0  # KL weight: objective = reconstruction - beta * kl.
  loss.kl_warmup_steps = 0  # Linear warm-up of beta from 0 over these steps.
  # Free bits (Kingma et al. 2016), nats per latent dimension, 0 = off: the objective's KL
  # is sum_d max(free_bits, KL_d), KL_d the batch's mean KL of dimension d, times beta
  # (and its warm-up); dimensions below free_bits get no KL gradient. "elbo" with a
  # diagonal posterior and the standard normal prior only. The logged elbo stays the bound.
  loss.free_bits = 0.0
  loss.num_samples = 1  # z samples per example (K of the IWAE objective).
  loss.analytic_kl = True
  loss.num_outer_samples = 1  # M of "miwae" and "piwae": M groups of K samples.
  loss.ciwae_beta = 0.5  # "ciwae": ciwae_beta * ELBO + (1 - ciwae_beta) * IWAE_K.
  # The encoder's gradient: "reparameterized" | "stl" (sticking the landing; with "elbo"
  # it needs analytic_kl=False) | "dreg" (doubly reparameterised; the IWAE family only).
  loss.gradient_estimator = "reparameterized"
  return loss


def _optimizer() -> ml_collections.ConfigDict:
  """Adam, its learning-rate schedule and clipping."""
  optimizer = ml_collections.ConfigDict()
  optimizer.learning_rate = 3e-3  # The peak, after warmup_steps (see the docstring).
  optimizer.schedule = "cosine"  # "constant" | "cosine" | "piecewise".
  optimizer.warmup_steps = 100
  # "piecewise": the rate times decay_factor**j after the j-th of decay_boundaries (steps).
  optimizer.decay_boundaries = ()
  optimizer.decay_factor = 0.1
  optimizer.adam_eps = 1e-8  # Adam's epsilon (optax's default).
  optimizer.grad_clip_norm = config_dict.placeholder(float)  # None: no clipping.
  # Divide each parameter tensor's gradient by its L2 norm before Adam (Tomczak & Welling's
  # AdamNormGrad).
  optimizer.normalize_gradients = False
  return optimizer


def _train() -> ml_collections.ConfigDict:
  """Steps, batches, logging, checkpoints, the params' average, the best."""
  train = ml_collections.ConfigDict()
  train.num_steps = 6000
  train.batch_size = 128
  train.steps_per_dispatch = 10  # Steps per jitted call (a lax.scan when > 1).
  train.log_every = 100
  train.eval_every = 2000
  train.checkpoint_every = 2000
  train.keep_checkpoints = 3
  # Decay of an exponential moving average of the params (0 = off; VDVAE uses 0.9999),
  # min(ema_decay, (1 + t) / (10 + t)) at update t. When on, evaluations, images,
  # experiments.evaluate and the best checkpoint use the average ("params": "ema").
  train.ema_decay = 0.0
  # Keep the params of the best evaluation on the validation split by this metric,
  # "log_px" or "elbo" (higher is better), in workdir/best/, with best.json; "" = off.
  train.keep_best = ""
  # Early stopping: end the run once this many evaluations in a row have not beaten the
  # best (needs keep_best); 0 = off. The best checkpoint is the run's result.
  train.early_stopping_patience = 0
  # Start from the params of another run (its workdir): its best checkpoint if it kept one,
  # else its latest; the optimiser, step and schedule start afresh (fine-tuning). "" = off.
  train.init_from = ""
  return train


def _logging() -> ml_collections.ConfigDict:
  """Metric writers beside metrics.jsonl and TensorBoard."""
  logging = ml_collections.ConfigDict()
  # Weights & Biases beside metrics.jsonl and TensorBoard: the same scalars and images, and
  # the config, in this project (needs `pip install wandb`; WANDB_MODE=offline keeps it
  # on this machine; docs/run_outputs.md).
  logging.wandb = False
  logging.wandb_project = "vae-jax"
  return logging


def _eval() -> ml_collections.ConfigDict:
  """What every evaluation computes, and what experiments.evaluate adds."""
  eval = ml_collections.ConfigDict()
  eval.splits = ("validation", "test")
  eval.batch_size = 250
  eval.num_importance_samples = 100  # K of the IWAE estimate of log p(x).
  eval.chunk_size = 100  # Importance samples evaluated at once.
  eval.num_elbo_samples = 10  # z samples for the reconstruction term of the ELBO.
  # Draws of the first examples scored against the aggregate posterior of the whole split,
  # for I(x; z) and the marginal KL (vae.kernels.collapse); 0 = off; -1 = the posterior family's
  # number (vae.models.POSTERIORS: 1000, the IAF 32, its density being dear).
  eval.mi_num_examples = -1
  eval.num_images = 64  # Examples shown in reconstruction and sample grids.
  # What experiments.evaluate adds (each a flag there, e.g. --decompose_gap --ais_steps=100):
  eval.num_examples = 100  # The subset (first examples of the split) of these two:
  eval.decompose_gap = False  # Split the gap into approximation and amortisation.
  eval.estimator = "iwae"  # "iwae"; or "ais" to add AIS estimates of log p(x).
  eval.subset_batch_size = 20  # Examples fitted (q*) or annealed (AIS) at once.
  eval.gap = ml_collections.ConfigDict()  # The fit of q* per example (Adam).
  eval.gap.num_samples = 100  # Samples per Adam step of the fit.
  eval.gap.learning_rate = 1e-2
  eval.gap.max_steps = 2000
  eval.gap.check_every = 50  # Steps between checks of the fit's ELBO.
  eval.gap.patience = 2  # Checks without improvement before the fit stops.
  eval.gap.tolerance = 0.01  # Nats of improvement a check must bring.
  eval.gap.num_elbo_samples = 1000  # Samples scoring ELBO[q_encoder] and ELBO[q*].
  # For an encoder of a richer family than the diagonal Gaussian (a hierarchy, an IAF),
  # q* is also fitted in that family, on the first family_examples examples (0: all).
  eval.gap.family_examples = 0
  eval.ais = ml_collections.ConfigDict()  # Annealed importance sampling with HMC.
  eval.ais.steps = 500  # Annealing steps.
  eval.ais.chains = 16  # Chains per example.
  eval.ais.leapfrog_steps = 5  # Leapfrog steps per HMC transition.
  eval.ais.start = "prior"  # Base distribution: "prior" p(z) or "encoder" q(z|x).
  eval.ais.schedule = "sigmoid"  # Annealing schedule: "sigmoid" or "linear".
  return eval
