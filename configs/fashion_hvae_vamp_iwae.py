"""Fashion-MNIST, Tomczak & Welling's protocol: this codebase's best single model beyond
Norouzi et al.'s table. The HVAE with a VampPrior (configs/fashion_hvae_vamp.py) trained to
its early stop by the ELBO, then trained on from its best validation checkpoint by the
importance-weighted bound (IWAE, K = 20 samples) with DReG gradients for the encoder, a
fresh Adam, for at most 100 epochs, keeping the best validation log p(x) by IWAE with
K = 100 (an IWAE-trained encoder makes the protocol's K = 10 a loose, misleading yardstick).

  python -m experiments.train --config=configs/fashion_hvae_vamp.py --workdir=runs/fashion_hvae_vamp
  python -m experiments.train --config=configs/fashion_hvae_vamp_iwae.py \
      --workdir=runs/fashion_hvae_vamp_iwae --config.train.init_from=runs/fashion_hvae_vamp
  python -m experiments.evaluate --workdir=runs/fashion_hvae_vamp_iwae --best --split=test

(`scripts/fashion_mnist_rows.sh` runs all three for its seed.) Why this second stage,
measured on the VAE row's best checkpoint (docs/results/fashion_mnist.md): trained on by
IWAE-DReG with K = 5 for 55 epochs its validation log p(x) rose 0.52 +- 0.05 nats, with
K = 20 for 30 epochs 0.63 +- 0.05 (IWAE, K = 1000, the first 1,000 validation images,
paired); on this model a step with K = 20 costs 5x the ELBO's (K = 5: 2x). Target (issue 30): test log p(x) >=
-226.0, 0.5 nats above the table's best MLP row (Exemplar HVAE, -226.53 +- 0.09).
Reached here (seed 0, 100 epochs, 1.2 h on 2 CPU cores after its source's 2.5 h): test
log p(x) -226.13 +- 0.75, +0.51 +- 0.01 over its source (paired), 0.40 above Exemplar
HVAE and 0.10 short of the target; ELBO -230.06. Trained on at a decaying rate
(configs/fashion_hvae_vamp_iwae_cosine.py) it reaches -225.74, the target met.
Details: docs/results/fashion_mnist.md.
"""

from vae.configs import fashion_hvae_vamp, fashion_vae

SOURCE = "fashion_hvae_vamp"  # the config whose run's best checkpoint this one starts from


def get_config():
  config = fashion_hvae_vamp.get_config()
  config.loss.objective, config.loss.num_samples = "iwae", 20
  config.loss.gradient_estimator, config.loss.kl_warmup_steps = "dreg", 0
  config.train.num_steps = 100 * fashion_vae.STEPS_PER_EPOCH
  config.train.init_from = f"runs/{SOURCE}"
  config.eval.num_importance_samples, config.eval.chunk_size = 100, 100
  return config
