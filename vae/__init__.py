"""vae-jax: variational autoencoders in JAX/Flax, with the bound gap measured.

The package is built in floors; each imports only the floors below it (tests/test_layout.py
keeps it so):

  0  vae.kernels     pure JAX kernels: KLs, likelihoods, ELBO, IWAE, the bound gap,
                     posteriors, priors, collapse, AIS, q* (jax, numpy, optax only);
     vae.common      errors, the config-field style, the user cache folder;
  1  vae.models      Flax encoders and decoders built from a config;
     vae.data        image data sets: the embedded default, .npz files, TFDS;
  2  vae.config      config checks, config and sweep files, old runs' configs;
     vae.training    the update step, the loop, checkpoints, the workdir;
     vae.evaluation  log p(x), the bound gap and where it comes from, on whole splits;
     vae.sweeps      sweeps as code, run and summarised;
     vae.reporting   metrics.jsonl, TensorBoard, images, progress lines;
     vae.runtime     what every app shares, the compilation cache, devices;
  3  vae.apps        the absl apps (vae-train, vae-evaluate, vae-sweep);
     vae.configs     the shipped configs and sweeps (--config=NAME).

The public API, importable from `vae` (all but `kernels` are loaded on first use, so the
light install, `pip install vae-jax`, imports the kernels without Flax):

  kernels              the pure kernels (`vae.kernels`);
  build_model, Model   a model from a config (`vae.models`);
  load_split           a split of a data set as float32 images (`vae.data`);
  train_and_evaluate   trains a run from a config into a workdir (`vae.training.train`);
  load_params          a run's config and params from its workdir (`vae.training.checkpoints`);
  evaluate_run         evaluates a run's checkpoint on a split (`vae.evaluation`);
  load_run             a run in your hands: encode, decode, sample, score images
                       (`vae.evaluation.loaded_run`);
  axis, product, zip_points, run_sweep   sweeps as code (`vae.sweeps`).
"""

import importlib

from vae import kernels

_LAZY = {
    "build_model": "vae.models", "Model": "vae.models", "load_split": "vae.data",
    "train_and_evaluate": "vae.training.train", "load_params": "vae.training.checkpoints",
    "evaluate_run": "vae.evaluation", "load_run": "vae.evaluation", "axis": "vae.sweeps",
    "product": "vae.sweeps",
    "zip_points": "vae.sweeps", "run_sweep": "vae.sweeps",
}

__all__ = ["kernels", *_LAZY]


def __getattr__(name: str):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'vae' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_LAZY))
