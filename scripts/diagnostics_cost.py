r"""What the collapse diagnostics add to an evaluation's wall time, measured in one process.

  python -m scripts.diagnostics_cost                       # configs/default.py, ~1 min
  python -m scripts.diagnostics_cost --config=configs/burda_2layer.py
  python -m scripts.diagnostics_cost --config.model.posterior=iaf

On the config's test split (random-init params: the speed does not depend on the
weights), each timed after a warm-up call, the best of --repeats rounds (the passes
interleaved):

  * the per-example pass as it was before the diagnostics (ELBO terms, IWAE log p(x),
    posterior means: `make_example_metrics` with its latents dropped, so XLA removes them);
  * the same pass with the diagnostics' per-example part, as evaluations run it;
  * that part alone (`make_example_latents`: the encoder, one draw of q, its densities,
    `kl_per_dim`), an upper bound on what it adds, since the full pass shares the encoder;
  * the aggregate-posterior pass for I(x; z) and the marginal KL
    (`Evaluator.information`, eval.mi_num_examples draws against every example);

at the config's K (training's evaluations) and at K = 5000 (experiments.evaluate's).
Prints a Markdown table: added = the part alone + the aggregate pass, share = added /
before. The first two columns differ by what the part adds plus this machine's spread,
which for two 0.3 s passes on a shared VM is a few hundredths of a second either way.
"""

from __future__ import annotations

import functools
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from vae import data
from vae import evaluation as evaluate
from vae.evaluation import split_batches
from vae.kernels import batching
from vae.models import build_model
from vae.runtime import cli

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/default.py", "The config whose model, data and eval are measured "
    "(--config.a.b=value overrides a field).")
flags.DEFINE_integer("repeats", 9, "Timed rounds (the best of each pass is reported).")
flags.DEFINE_list("num_importance_samples", None, "K values (default: the config's, 5000).")


def _best_seconds(fns: dict, repeats: int) -> dict[str, float]:
  """{name: the least seconds of fns[name]() over `repeats` rounds}, the calls interleaved
  round by round, so a slow spell of a shared machine falls on every pass alike, and
  in reverse order every other round (a pass run right after another one comes out
  slower here, which would otherwise fall on the same pass each time)."""
  for fn in fns.values():
    fn()  # compilation and warm-up
  times = {name: [] for name in fns}
  for round_ in range(repeats):
    order = list(fns.items())
    for name, fn in (order if round_ % 2 == 0 else order[::-1]):
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: float(np.min(t)) for name, t in times.items()}


def measure(config, k: int, repeats: int) -> dict[str, float]:
  """Seconds of the four passes on the test split at K = k."""
  with config.unlocked():
    config.eval.num_importance_samples = k
  info = data.dataset_info(config.data)
  model = build_model(config.model, info.image_shape)
  train_mean = data.load_split(config.data, "train").mean(axis=0)
  params = model.init(jax.random.PRNGKey(0), train_mean)
  images = data.load_split(config.data, "test")
  evaluator = evaluate.Evaluator(model, config.eval)
  key = jax.random.PRNGKey(1)

  def over_batch(example_fn):
    """fn(params, key, indices, x) -> example_fn(params, prior, key_i, x_i) for each i."""
    return lambda params, key, indices, x: jax.vmap(example_fn, in_axes=(None, None, 0, 0))(
        params, model.prior(params), batching.example_keys(key, indices), x)

  batch_metrics = over_batch(evaluate.make_example_metrics(model, config.eval))
  without_latents = lambda *args: batch_metrics(*args)[:2]
  latents_alone = over_batch(evaluate.make_example_latents(model, config.eval))

  def over_split(fn):
    batch_fn = functools.partial(jax.jit(fn), params, key)  # compiled once, reused each call
    return lambda: split_batches.map_batches(
        batch_fn, (images,), evaluator.batch_size, evaluator.mesh)

  run_full = lambda: evaluator.per_example(params, key, images)
  latents = run_full()[2]
  seconds = _best_seconds(dict(
      before=over_split(without_latents), with_latents=run_full,
      latents_alone=over_split(latents_alone),
      information=lambda: evaluator.information(params, images, latents)), repeats)
  added = seconds["latents_alone"] + seconds["information"]
  return dict(k=k, num_examples=len(images), mi_num_examples=evaluator.mi_num_examples,
              **seconds, added=added, share=added / seconds["before"])


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
  print("| K | evaluation before | with per-example diagnostics | per-example part alone | "
        "aggregate pass (I, marginal KL) | added | share |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['k']} | {r['before']:.3g} | {r['with_latents']:.3g} | "
          f"{r['latents_alone']:.3g} | {r['information']:.3g} | {r['added']:.3g} | "
          f"{100 * r['share']:.1f}% |")


def main(argv):
  cli.run(report, argv)


if __name__ == "__main__":
  app.run(main)
