"""Fashion-MNIST, Tomczak & Welling's protocol: the row beyond Norouzi et al.'s table
(configs/fashion_hvae_vamp_iwae.py) trained on from its best validation checkpoint with
the same objective (IWAE, K = 20, DReG encoder gradients) and a learning rate that
decays: a fresh Adam at 2.5e-4 (half the protocol's) brought to 0 by a cosine over 50
epochs, keeping the best validation log p(x) by IWAE with K = 100.

  python -m experiments.train --config=configs/fashion_hvae_vamp_iwae_cosine.py \
      --workdir=runs/fashion_hvae_vamp_iwae_cosine \
      --config.train.init_from=runs/fashion_hvae_vamp_iwae
  python -m experiments.evaluate --workdir=runs/fashion_hvae_vamp_iwae_cosine --best --split=test

(`scripts/fashion_mnist_rows.sh` runs its sources first.) Why: at the constant rate its
source's validation log p(x) was still creeping up (+0.05 per 40 epochs at the end) and
its test figure, -226.13, was 0.10 short of the target (issue 30: >= -226.0, 0.5 nats
above Exemplar HVAE's -226.53 +- 0.09); the noise of a constant rate is what a decay
takes away. Budget: 50 epochs at the K = 20 step's cost.
Reached here (seed 0, 2026-12-07: 25,000 steps at 11 steps/s, 38 min on 2 CPU cores alone,
validation included; 4.2 h with its sources'): the best validation checkpoint was the last
(IWAE_100 -224.71 -> -224.26); test log p(x) -225.74 +- 0.75, +0.39 +- 0.01 over its
source and +0.90 +- 0.01 over the ELBO-trained HVAE + VampPrior (paired per image), 0.79
above Exemplar HVAE: the target is met by 0.29. ELBO -229.05 (above both sources').
Details: docs/results/fashion_mnist.md.
"""

from vae.configs import fashion_hvae_vamp_iwae, fashion_vae

SOURCE = "fashion_hvae_vamp_iwae"  # the config whose run's best checkpoint this one starts from


def get_config():
  config = fashion_hvae_vamp_iwae.get_config()
  optimizer = config.optimizer
  optimizer.learning_rate, optimizer.schedule, optimizer.warmup_steps = 2.5e-4, "cosine", 0
  config.train.num_steps = 50 * fashion_vae.STEPS_PER_EPOCH
  config.train.init_from = f"runs/{SOURCE}"
  return config
