"""Test-wide settings: tiny programs compile faster than they run, so skip XLA's optimisations.

Also the session's fake TFDS catalog sets (see tests/tfds_fakes.py), prepared once.
"""

import jax
import pytest

jax.config.update("jax_disable_most_optimizations", True)


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
