"""Every config file in configs/ works: its docstring gives the command that runs it, it
passes the whole-config check, its data yields batches, and its model encodes and decodes
one batch under jit.

The files are found by glob, so a new config is covered at once. The TFDS catalog sets
are the session's tiny fakes (tests/tfds_fakes.py); only the fields that must fit them
are shrunk (validation_size, train.batch_size), never a model field, so every model is
built at its real size.
"""

import importlib.util
import pathlib
import types

import jax
import ml_collections
import numpy as np
import pytest

from vae import data, models
from vae.config import checks as config_checks

CONFIGS_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIG_FILES = sorted(path for path in CONFIGS_DIR.glob("*.py") if path.name != "__init__.py")

# Shrunk to fit the fakes: 20 training examples (16 after holding out validation), or 6
# for binarized_mnist.
FAKE_VALIDATION_SIZE = 4
FAKE_BATCH_SIZE = 6

# The decoder's output for each likelihood, given the images' shape: Bernoulli logits
# shaped like x; a Gaussian (mean, logvar) pair, each shaped like x.
DECODED_SHAPES = {
    "bernoulli": lambda shape: shape,
    "gaussian": lambda shape: (shape, shape),
}

# Model is a hashable frozen dataclass: as a static argument, configs that build equal
# models share one compilation. Jitting the init halves its time.
init = jax.jit(models.Model.init, static_argnums=0)
encode_mean = jax.jit(models.Model.encode_mean, static_argnums=0)
decode = jax.jit(models.Model.decode, static_argnums=0)


@pytest.fixture(scope="module", params=CONFIG_FILES, ids=lambda path: path.name)
def config_file(request) -> pathlib.Path:
  """Each config file in turn; module-scoped, so pytest runs one file's tests together
  and they share its loaded data (vae.data caches only the last few splits)."""
  return request.param


def load_config_module(path: pathlib.Path) -> types.ModuleType:
  """Loads a config file by its path, as `--config=configs/<file>.py` does."""
  spec = importlib.util.spec_from_file_location(f"config_under_test_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def fitted_config(path: pathlib.Path, data_dir: pathlib.Path, idx_dir: pathlib.Path
                  ) -> ml_collections.ConfigDict:
  """The file's `get_config()`, reading the TFDS fakes in `data_dir` (an idx set: the
  fake folder `idx_dir`), with the data-size fields shrunk to fit them."""
  config = load_config_module(path).get_config()
  model_fields = config.model.to_dict()
  config.data.data_dir = str(data_dir)
  if config.data.name == "idx":
    config.data.path = str(idx_dir)
  config.data.validation_size = min(config.data.validation_size, FAKE_VALIDATION_SIZE)
  config.train.batch_size = min(config.train.batch_size, FAKE_BATCH_SIZE)
  assert config.model.to_dict() == model_fields
  return config


def assert_images(images: np.ndarray, shape: tuple[int, ...], kind: str) -> None:
  assert images.shape == shape and images.dtype == np.float32
  if kind == "binary":
    assert set(np.unique(images)) <= {0.0, 1.0}
  else:
    assert 0 <= images.min() and images.max() <= 1


def test_configs_are_found():
  names = {path.name for path in CONFIG_FILES}
  assert {"default.py", "mnist_mlp.py", "mnist_conv.py", "fashion_mnist.py",
          "cifar10_conv.py", "burda_2layer.py"} <= names


def test_docstring_gives_command(config_file):
  docstring = load_config_module(config_file).__doc__ or ""
  assert f"python -m experiments.train --config=configs/{config_file.name}" in docstring


def test_config_passes_checks(config_file, fake_tfds_dir, fake_idx_dir):
  config = fitted_config(config_file, fake_tfds_dir, fake_idx_dir)
  info = config_checks.check_config(config)
  assert info == data.dataset_info(config.data)
  assert config.model.likelihood in DECODED_SHAPES, "add its decoder output here"


def test_data_batches(config_file, fake_tfds_dir, fake_idx_dir):
  config = fitted_config(config_file, fake_tfds_dir, fake_idx_dir)
  info = config_checks.check_config(config)
  batches = data.TrainBatches(data.load_split(config.data, "train"),
                              config.train.batch_size, config.seed,
                              config.data.binarize == "dynamic", config.data.num_shards)
  batch_shape = (config.train.batch_size,) + info.image_shape
  for step in (0, 1, batches.steps_per_epoch):  # the last step crosses into epoch 1
    assert_images(batches.batch(step), batch_shape, info.kind)
  for split in config.eval.splits:
    images = data.load_split(config.data, split)
    assert len(images) > 0, f"{split} is empty"
    assert_images(images, (len(images),) + info.image_shape, info.kind)


def test_model_encodes_and_decodes(config_file, fake_tfds_dir, fake_idx_dir):
  config = fitted_config(config_file, fake_tfds_dir, fake_idx_dir)
  info = config_checks.check_config(config)
  model = models.build_model(config.model, info.image_shape)
  params = init(model, jax.random.PRNGKey(config.seed),
                data.load_split(config.data, "train").mean(axis=0))
  x = data.TrainBatches(data.load_split(config.data, "train"), config.train.batch_size,
                        config.seed, config.data.binarize == "dynamic").batch(0)

  points = encode_mean(model, params, x)
  latent_dim = config.model.latent_dim + sum(config.model.upper_latent_dims)
  assert points.shape == (len(x), latent_dim)
  decoded = decode(model, params, points)
  shapes = jax.tree.map(lambda array: array.shape, decoded)
  assert shapes == DECODED_SHAPES[config.model.likelihood](x.shape)
  for array in jax.tree.leaves((points, decoded)):
    assert np.isfinite(array).all()
