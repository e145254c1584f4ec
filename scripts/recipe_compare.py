r"""Training recipes against the PyTorch example's own loop, at equal budget.

  python -m scripts.recipe_compare                     # 100 and 200 epochs, 2 seeds
  python -m scripts.recipe_compare --epochs=50,100,150,200 --recipes=pytorch,lr3e-3_cosine

Trains the PyTorch example's architecture (784-400-20 relu, Bernoulli, Adam 1e-3, batch
128) through our trainer on the embedded digits' train split (4,000), for each recipe,
budget (epochs of the train split) and seed, and evaluates the final params on the
validation and test splits (500 held-out digits each, binarised once with a fixed seed)
with IWAE at K = --num_importance_samples (5000). Where torch imports, the PyTorch
example's own loop (scripts/bench/pytorch_vae.py) trains on the same digits for the same
epochs, and its weights are scored by the same evaluator; where it does not, that column
says so. Prints a Markdown table of test NLL (nats, mean over seeds, +- half their range)
and its difference from PyTorch's, and writes it with every figure to --out.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
from absl import app, flags, logging

from scripts.bench import pytorch_vae
from vae import data
from vae import evaluation as evaluate
from vae.configs import default
from vae.models import build_model
from vae.runtime import cli
from vae.training import train


def recipe(init: str, schedule: str, learning_rate: float, ema_decay: float = 0.0,
           adam_eps: float = 1e-8) -> dict:
  """Every field a recipe sets (the rest is configs/default.py's): the initialisation,
  a constant rate or a 100-step warm-up then cosine to 0, the (peak) rate, the EMA and
  Adam's epsilon (1e-8: PyTorch's and optax's)."""
  return {"model.init": init, "optimizer.schedule": schedule,
          "optimizer.warmup_steps": 100 if schedule == "cosine" else 0,
          "optimizer.learning_rate": learning_rate, "train.ema_decay": ema_decay,
          "optimizer.adam_eps": adam_eps}


RECIPES = {
    # The PyTorch example's recipe: PyTorch's initialisation, a constant rate of 1e-3.
    "pytorch": recipe("fan_in_uniform", "constant", 1e-3),
    "flax_init": recipe("lecun_normal", "constant", 1e-3),
    "cosine": recipe("fan_in_uniform", "cosine", 1e-3),
    "flax_init_cosine": recipe("lecun_normal", "cosine", 1e-3),  # the default before issue 20
    "ema": recipe("fan_in_uniform", "constant", 1e-3, ema_decay=0.999),
    "lr2e-3_cosine": recipe("fan_in_uniform", "cosine", 2e-3),
    "lr3e-3_cosine": recipe("fan_in_uniform", "cosine", 3e-3),  # configs/default.py's
    "lr5e-3_cosine": recipe("fan_in_uniform", "cosine", 5e-3),
    "lr1e-2_cosine": recipe("fan_in_uniform", "cosine", 1e-2),
    "lr5e-3_cosine_flax_init": recipe("lecun_normal", "cosine", 5e-3),
    "lr3e-3_cosine_ema": recipe("fan_in_uniform", "cosine", 3e-3, ema_decay=0.999),
    "lr2e-3_ema": recipe("fan_in_uniform", "constant", 2e-3, ema_decay=0.999),
    "lr3e-3_ema": recipe("fan_in_uniform", "constant", 3e-3, ema_decay=0.999),
    "lr3e-3_cosine_eps1e-4": recipe("fan_in_uniform", "cosine", 3e-3, adam_eps=1e-4),
}
DEFAULT_RECIPES = ["pytorch", "flax_init", "cosine", "flax_init_cosine", "lr3e-3_cosine",
                   "lr5e-3_cosine"]
SPLITS = ("validation", "test")

_EPOCHS = flags.DEFINE_list("epochs", ["100", "200"], "Budgets, in epochs of the train split.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds of each recipe and budget.")
_RECIPES = flags.DEFINE_list("recipes", DEFAULT_RECIPES, f"Among {sorted(RECIPES)}.")
_K = flags.DEFINE_integer("num_importance_samples", 5000, "K of the IWAE estimate.")
_OUT = flags.DEFINE_string("out", "runs/recipe_compare", "Folder of the runs and results.")
_TORCH = flags.DEFINE_bool("torch", True, "Train the PyTorch example where torch imports.")


def peer_config(recipe: str, epochs: int, seed: int):
  """configs/default.py (whose model is the PyTorch example's) at the budget, with the
  recipe's fields."""
  config = default.get_config()
  config.seed = seed
  config.model.hidden_sizes, config.model.latent_dim = (400,), 20  # as the default's
  num_train = data.split_size(config.data, "train")
  config.train.num_steps = math.ceil(epochs * num_train / config.train.batch_size)
  config.train.steps_per_dispatch = max(  # a divisor, so the budget is exactly that
      d for d in range(1, config.train.steps_per_dispatch + 1) if config.train.num_steps % d == 0)
  config.train.log_every = config.train.steps_per_dispatch * (100 // config.train.steps_per_dispatch)
  config.train.eval_every = config.train.checkpoint_every = config.train.num_steps
  config.eval.num_importance_samples = _K.value
  for dotted, value in RECIPES[recipe].items():
    section, field = dotted.split(".")
    config[section][field] = value
  return config


def ours(recipe: str, epochs: int, seed: int) -> dict[str, float]:
  """{split: log p(x)} of a run of the recipe (a finished run is read back, not redone)."""
  workdir = os.path.join(_OUT.value, f"{recipe}_e{epochs}_s{seed}")
  results = train.train_and_evaluate(peer_config(recipe, epochs, seed), workdir)
  return {split: results[split]["log_px"] for split in SPLITS}


def pytorch(epochs: int, seed: int) -> dict[str, float]:
  """{split: log p(x)} of the PyTorch example's loop, scored by our evaluator."""
  path = os.path.join(_OUT.value, f"pytorch_loop_e{epochs}_s{seed}.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  config = peer_config("pytorch", epochs, seed)
  weights = pytorch_vae.train(data.load_split(config.data, "train"), epochs, seed)
  model = build_model(config.model, data.dataset_info(config.data).image_shape)
  params = pytorch_vae.as_flax_params(weights)
  scores = {split: float(evaluate.evaluate_params(
      model, params, data.load_split(config.data, split), seed, config.eval,
      progress=False)[0]["log_px"]) for split in SPLITS}
  os.makedirs(_OUT.value, exist_ok=True)
  with open(path, "w") as f:
    json.dump(scores, f)
  return scores


def spread(values: list[float]) -> str:
  return f"{np.mean(values):.2f} ± {(max(values) - min(values)) / 2:.2f}"


def table(nll: dict, epochs: list[int], recipes: list[str], split: str) -> str:
  """Markdown: a row per recipe, a column per budget; NLL and its difference from the
  PyTorch loop's (negative: ours is better)."""
  lines = [f"{split} NLL (nats, IWAE K = {_K.value}; mean ± half-range over seeds "
           f"{', '.join(_SEEDS.value)}) | " + " | ".join(f"{e} epochs" for e in epochs),
           "|".join(["---"] * (len(epochs) + 1))]
  for recipe in (["pytorch loop"] if ("pytorch loop", epochs[0]) in nll else []) + recipes:
    cells = []
    for e in epochs:
      values = [v[split] for v in nll[(recipe, e)]]
      cell = spread(values)
      if recipe != "pytorch loop" and ("pytorch loop", e) in nll:
        peer = np.mean([v[split] for v in nll[("pytorch loop", e)]])
        cell += f" ({np.mean(values) - peer:+.2f})"
      cells.append(cell)
    lines.append(f"{recipe} | " + " | ".join(cells))
  return "\n".join(lines)


def compare() -> str:
  epochs, seeds = [int(e) for e in _EPOCHS.value], [int(s) for s in _SEEDS.value]
  unknown = sorted(set(_RECIPES.value) - set(RECIPES))
  if unknown:
    raise ValueError(f"--recipes={unknown} unknown; choose among {sorted(RECIPES)}.")
  nll = {(r, e): [{s: -v for s, v in ours(r, e, seed).items()} for seed in seeds]
         for r in _RECIPES.value for e in epochs}
  reason = pytorch_vae.available() if _TORCH.value else "--notorch"
  if reason is None:
    for e in epochs:
      nll[("pytorch loop", e)] = [{s: -v for s, v in pytorch(e, seed).items()}
                                  for seed in seeds]
  note = ("" if reason is None else
          f"\n\nThe PyTorch example's loop was not run ({reason}).")
  report = "\n\n".join(table(nll, epochs, _RECIPES.value, split) for split in SPLITS)
  with open(os.path.join(_OUT.value, "recipe_compare.json"), "w") as f:
    json.dump([{"recipe": r, "epochs": e, "nll": v} for (r, e), v in nll.items()], f, indent=1)
  with open(os.path.join(_OUT.value, "recipe_compare.md"), "w") as f:
    f.write(report + note + "\n")
  return report + note


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  print(cli.run(compare))


if __name__ == "__main__":
  app.run(main)
