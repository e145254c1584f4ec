"""Test-wide settings: tiny programs compile faster than they run, so skip XLA's optimisations,
in this process and in every app the tests launch (JAX_DISABLE_MOST_OPTIMIZATIONS), so that
an app's numbers are the numbers of the same run trained here.

Also the session's fake TFDS catalog sets (see tests/tfds_fakes.py), prepared once.
"""

import os

import jax
import pytest

jax.config.update("jax_disable_most_optimizations", True)
os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent compilation cache for the session, in-process and in the apps the
  tests launch (they read VAE_JAX_CACHE_DIR): the many tiny runs compile the same
  programs. Never the user's own cache folders (XDG_CACHE_HOME too)."""
  from vae.runtime import compilation_cache as cache  # pylint: disable=import-outside-toplevel
  folder = str(tmp_path_factory.mktemp("xla_cache"))
  user_cache = str(tmp_path_factory.mktemp("user_cache"))  # the embedded data parsed once
  previous = {name: os.environ.get(name) for name in (cache.ENV_VAR, "XDG_CACHE_HOME")}
  os.environ.update({cache.ENV_VAR: folder, "XDG_CACHE_HOME": user_cache})
  cache.enable(folder)
  yield folder
  for name, value in previous.items():
    if value is None:
      os.environ.pop(name, None)
    else:
      os.environ[name] = value


@pytest.fixture(scope="session")
def fake_tfds_dir(tmp_path_factory):
  """A TFDS data_dir holding tiny fakes of mnist, fashion_mnist, cifar10 and
  binarized_mnist, prepared in array_record format under the catalog's names and
  versions (contents: tests/tfds_fakes.py). Read-only for tests: copy what you alter."""
  # Imported here, so that sessions which never use the fakes do not import tfds.
  import tfds_fakes  # pylint: disable=import-outside-toplevel

  data_dir = tmp_path_factory.mktemp("tfds")
  tfds_fakes.prepare(data_dir)
  return data_dir


@pytest.fixture(scope="session")
def fake_idx_dir(tmp_path_factory):
  """A folder of 28x28 idx files (20 train, 8 test images) standing in for the Debian
  package's Fashion-MNIST (config.data.name="idx"). Read-only for tests."""
  import idx_fakes  # pylint: disable=import-outside-toplevel

  folder = tmp_path_factory.mktemp("idx")
  idx_fakes.make_set(folder, num_train=20, num_test=8, image_size=(28, 28))
  return folder
