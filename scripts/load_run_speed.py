r"""Scoring images through `vae.load_run` against `experiments.evaluate`, the same work.

  python -m scripts.load_run_speed                  # 10,000 images, K = 1000: ~10 min
  python -m scripts.load_run_speed --quick          # 200 images, K = 20: a smoke run

A run of configs/default.py (784-400-20) trained for a few steps (speed does not depend
on the weights) on an .npz of the embedded digits whose test split is the 500 test digits
tiled to --num_images. Then, in one process, each timed whole (its compilation, its
passes, its files), alternating, --repeats rounds, the best of each kept:

  * evaluate: `vae.evaluate_run(workdir, "test", K)`, what `experiments.evaluate` runs
    after parsing its flags (it also writes eval_test.json/.npz and measures I(x; z));
  * score: `vae.load_run(workdir).score(images, K)` on the same test images, loading
    included.

Prints both times, their ratio (target: score within 10% of evaluate, i.e. <= 1.10) and
whether the mean log p(x) agree, and a Markdown row.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
from absl import app, flags

import vae
from vae import data
from vae.configs import default
from vae.runtime import cli

_NUM_IMAGES = flags.DEFINE_integer("num_images", None, "Test images (default 10000; quick: 200).")
_K = flags.DEFINE_integer("num_importance_samples", None, "K (default 1000; quick: 20).")
_REPEATS = flags.DEFINE_integer("repeats", None, "Rounds (default 2; quick: 1).")
_QUICK = flags.DEFINE_bool("quick", False, "Tiny sizes, one round: a smoke run.")


def _write_data(path: str, num_images: int) -> None:
  config = default.get_config()
  splits = {split: data.load_split(config.data, split) for split in ("train", "test")}
  tiled = np.resize(splits["test"], (num_images,) + splits["test"].shape[1:])
  np.savez(path, train=splits["train"], test=tiled)


def _timed(fn) -> tuple[float, object]:
  start = time.perf_counter()
  result = fn()
  return time.perf_counter() - start, result


def main(argv):
  del argv
  cli.quiet_dependency_logs()
  num_images = _NUM_IMAGES.value or (200 if _QUICK.value else 10000)
  k = _K.value or (20 if _QUICK.value else 1000)
  repeats = _REPEATS.value or (1 if _QUICK.value else 2)
  with tempfile.TemporaryDirectory() as folder:
    config = default.get_config()
    config.data.name, config.data.path = "npz", os.path.join(folder, "data.npz")
    config.data.validation_size = 500
    config.train.num_steps = config.train.eval_every = config.train.checkpoint_every = 10
    config.eval.splits = ("validation",)
    _write_data(config.data.path, num_images)
    workdir = os.path.join(folder, "run")
    vae.train_and_evaluate(config, workdir)
    images = data.load_split(config.data, "test")  # binarised once, as evaluate sees it
    seconds = {"evaluate": [], "score": []}
    for _ in range(repeats):
      took, summary = _timed(lambda: vae.evaluate_run(
          workdir, "test", overrides={"num_importance_samples": k}, progress=False))
      seconds["evaluate"].append(took)
      took, scores = _timed(lambda: vae.load_run(workdir).score(images, k))
      seconds["score"].append(took)
  best = {name: min(values) for name, values in seconds.items()}
  ratio = best["score"] / best["evaluate"]
  same = bool(np.isclose(np.mean(scores["log_px"]), summary["log_px"], rtol=1e-6))
  print(f"{num_images} images, K = {k}: evaluate {best['evaluate']:.1f} s, score "
        f"{best['score']:.1f} s, ratio {ratio:.3f} (target <= 1.10: "
        f"{'met' if ratio <= 1.10 else 'not met'}); mean log p(x) the same: {same}")
  print("| images | K | evaluate_run (s) | load_run(...).score (s) | ratio |")
  print("|---|---|---|---|---|")
  print(f"| {num_images} | {k} | {best['evaluate']:.2f} | {best['score']:.2f} | {ratio:.3f} |")


if __name__ == "__main__":
  app.run(main)
