r"""What the collapse diagnostics add to an evaluation's wall time, measured in one process.

  python scripts/diagnostics_cost.py                       # configs/default.py, ~1 min
  python scripts/diagnostics_cost.py --config=configs/burda_2layer.py
  python scripts/diagnostics_cost.py --config.model.posterior=iaf

On the config's test split (random-init params: the speed does not depend on the
weights), each timed after a warm-up call, the best of --repeats rounds (the three interleaved):

  * the per-example pass as it was before the diagnostics (ELBO terms, IWAE log p(x),
    posterior means: `make_example_metrics` with its latents dropped, so XLA removes them);
  * the same pass with the diagnostics' per-example part (one draw of q, its densities,
    `kl_per_dim`);
  * the aggregate-posterior pass for I(x; z) and the marginal KL
    (`Evaluator.information`, eval.mi_num_examples draws against every example);

at the config's K (training's evaluations) and at K = 5000 (experiments.evaluate's).
Prints a Markdown table; the share is (diagnostics) / (evaluation without them).
"""

from __future__ import annotations

import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from vae import cli, data, evaluate  # noqa: E402
from vae.models import build_model  # noqa: E402

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/default.py", "The config whose model, data and eval are measured "
    "(--config.a.b=value overrides a field).")
flags.DEFINE_integer("repeats", 5, "Timed rounds (the best of each pass is reported).")
flags.DEFINE_list("num_importance_samples", None, "K values (default: the config's, 5000).")


def _best_seconds(fns: dict, repeats: int) -> dict[str, float]:
  """{name: the least seconds of fns[name]() over `repeats` rounds}, the calls
  interleaved round by round: a shared machine only ever adds time, and a slow spell
  then falls on every pass alike."""
  for fn in fns.values():
    fn()  # compilation and warm-up
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: float(np.min(t)) for name, t in times.items()}


def measure(config, k: int, repeats: int) -> dict[str, float]:
  """Seconds of the three passes on the test split at K = k."""
  with config.unlocked():
    config.eval.num_importance_samples = k
  info = data.dataset_info(config.data)
  model = build_model(config.model, info.image_shape)
  params = model.init(jax.random.PRNGKey(0))
  images = data.load_split(config.data, "test")
  evaluator = evaluate.Evaluator(model, config.eval)
  key = jax.random.PRNGKey(1)
  example_metrics = evaluate.make_example_metrics(model, config.eval)

  def without_latents(params, key, indices, x):
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)
    metrics, means, _ = jax.vmap(example_metrics, in_axes=(None, None, 0, 0))(
        params, model.prior(params), keys, x)
    return metrics, means

  plain = jax.jit(without_latents)
  run_plain = lambda: evaluate._map_batches(  # pylint: disable=protected-access
      functools.partial(plain, params, key), (images,), evaluator.batch_size, evaluator.mesh)
  run_full = lambda: evaluator.per_example(params, key, images)
  latents = run_full()[2]
  run_information = lambda: evaluator.information(params, images, latents)
  seconds = _best_seconds(dict(before=run_plain, with_latents=run_full,
                                 information=run_information), repeats)
  added = seconds["with_latents"] - seconds["before"] + seconds["information"]
  return dict(k=k, num_examples=len(images), mi_num_examples=evaluator.mi_num_examples,
              **seconds, added=added,
              share=added / seconds["before"])


def report(argv):
  del argv
  config = _CONFIG.value
  ks = ([int(k) for k in FLAGS.num_importance_samples] if FLAGS.num_importance_samples
        else [config.eval.num_importance_samples, 5000])
  rows = [measure(config, k, FLAGS.repeats) for k in ks]
  print(f"{config.model.posterior} posterior, {config.model.prior} prior, latent sizes "
        f"{(config.model.latent_dim,) + tuple(config.model.upper_latent_dims)}, test split ({rows[0]['num_examples']} examples), "
        f"{rows[0]['mi_num_examples']} draws for I(x; z), batch "
        f"{config.eval.batch_size}; seconds, best of {FLAGS.repeats}:\n")
  print("| K | evaluation before | with per-example diagnostics | aggregate pass (I, "
        "marginal KL) | added | share |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['k']} | {r['before']:.3g} | {r['with_latents']:.3g} | "
          f"{r['information']:.3g} | {r['added']:.3g} | {100 * r['share']:.1f}% |")


def main(argv):
  cli.run(report, argv)


if __name__ == "__main__":
  app.run(main)
