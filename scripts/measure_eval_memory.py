r"""Wall time and peak memory of evaluating 10,000 MNIST-size images at K = 5000.

  python -m scripts.measure_eval_memory [--train_steps=300] [--num_images=10000] \
      [--num_importance_samples=5000] [--batch_size=100] [--chunk_size=50]

Trains a 784-400-20 relu MLP VAE with a Bernoulli likelihood (the model of Kingma &
Welling 2014) briefly on the embedded MNIST digits (`--train_steps=0` keeps random
params; the cost does not depend on them), tiles the 500 test digits to `--num_images`
images, and runs the same evaluation `experiments/evaluate.py` runs
(`vae.evaluation.evaluate_params`), then prints the wall time and the peak resident memory
of the process (getrusage), which `/usr/bin/time -v` confirms from outside.
"""

import tempfile
import time

import jax
import numpy as np
from absl import app, flags, logging

from vae import data
from vae import evaluation as evaluate
from vae.configs import default
from vae.models import build_model
from vae.runtime import cli
from vae.training import checkpoints, train

_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 300, "Training steps; 0 for random params.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 10000, "Images evaluated.")
_K = flags.DEFINE_integer("num_importance_samples", 5000, "K of IWAE.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 100, "Examples evaluated at once.")
_CHUNK_SIZE = flags.DEFINE_integer("chunk_size", 50, "Importance samples per example at once.")


def model_config():
  config = default.get_config()
  config.model.hidden_sizes = (400,)
  config.model.latent_dim = 20
  config.train.num_steps = max(_TRAIN_STEPS.value, 10)
  config.train.eval_every = config.train.checkpoint_every = config.train.num_steps
  config.train.log_every = 10
  config.eval.splits = ("test",)
  return config


def main(argv):
  del argv
  cli.quiet_dependency_logs()
  config = model_config()
  model = build_model(config.model, data.dataset_info(config.data).image_shape)
  if _TRAIN_STEPS.value > 0:
    with tempfile.TemporaryDirectory() as workdir:
      train.train_and_evaluate(config, workdir)
      _, params, _ = checkpoints.load_params(workdir)
  else:
    params = model.init(jax.random.PRNGKey(config.seed))
  test = data.load_split(config.data, "test")
  images = np.concatenate([test] * -(-_NUM_IMAGES.value // len(test)))[:_NUM_IMAGES.value]
  eval_config = evaluate.eval_settings(config.eval, dict(
      num_importance_samples=_K.value, batch_size=_BATCH_SIZE.value,
      chunk_size=_CHUNK_SIZE.value))
  logging.info("Evaluating %d images %s at K=%d, batch %d, chunk %d.", len(images),
               images.shape[1:], _K.value, _BATCH_SIZE.value, _CHUNK_SIZE.value)
  start = time.perf_counter()
  summary, _ = evaluate.evaluate_params(model, params, images, config.seed, eval_config)
  wall = time.perf_counter() - start
  print(f"{len(images)} images {images.shape[1:]}, 784-400-20 relu MLP, Bernoulli, "
        f"K={_K.value}, batch {_BATCH_SIZE.value}, chunk {_CHUNK_SIZE.value}")
  print(f"elbo {summary['elbo']:.2f}  log_px {summary['log_px']:.2f}  "
        f"bound_gap {summary['bound_gap']:.2f} nats per example")
  print(f"evaluation wall time {wall:.0f} s ({wall / 60:.1f} min); "
        f"peak RSS of the process {summary['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
  app.run(main)
