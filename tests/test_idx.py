"""The idx reader (`vae.data.idx`) on small idx files the tests write, and the shuffled
hold-out of a validation split (`config.data.validation_shuffle_seed`)."""

import numpy as np
import pytest
from idx_fakes import make_set

from vae import data
from vae.configs import default


def data_config(path, **fields):
  config = default.get_config().data
  config.update({"name": "idx", "path": str(path), "binarize": "none",
                 "validation_size": 0, **fields})
  return config


@pytest.mark.parametrize("compress", [True, False])
def test_an_idx_folder_reads_as_its_images_in_the_unit_interval(tmp_path, compress):
  splits = make_set(tmp_path, compress=compress)
  config = data_config(tmp_path, validation_size=10)
  assert data.dataset_info(config).image_shape == (6, 5, 1)
  np.testing.assert_allclose(data.load_split(config, "test")[..., 0], splits["t10k"] / 255.0,
                             rtol=1e-6)
  # No shuffle seed: the validation split is the train file's last rows.
  np.testing.assert_allclose(data.load_split(config, "validation")[..., 0],
                             splits["train"][20:] / 255.0, rtol=1e-6)
  assert data.split_size(config, "train") == 20


def test_a_prefix_picks_one_set_of_a_shared_folder(tmp_path):
  make_set(tmp_path, prefix="emnist-letters-", seed=1)
  digits = make_set(tmp_path, prefix="emnist-digits-", num_test=4, seed=2)
  config = data_config(tmp_path / "emnist-digits")
  np.testing.assert_allclose(data.load_split(config, "test")[..., 0], digits["t10k"] / 255.0,
                             rtol=1e-6)


def test_a_shuffled_holdout_is_a_fixed_partition_of_the_train_file(tmp_path):
  splits = make_set(tmp_path, num_train=40)
  config = data_config(tmp_path, validation_size=12, validation_shuffle_seed=3)
  train, validation = (data.load_split(config, s)[..., 0] for s in ("train", "validation"))
  assert (len(train), len(validation)) == (28, 12)
  together = np.concatenate([train, validation]).reshape(40, -1)
  original = (splits["train"] / 255.0).reshape(40, -1).astype(np.float32)
  # Every train row exactly once, not in the file's order.
  assert sorted(map(bytes, together)) == sorted(map(bytes, original))
  assert not np.array_equal(validation.reshape(12, -1), original[-12:])
  # The same seed, the same split; rows read in part are the rows of the whole.
  np.testing.assert_array_equal(data.load_split(config, "validation", range(4, 9))[..., 0],
                                validation[4:9])
  other = data_config(tmp_path, validation_size=12, validation_shuffle_seed=4)
  assert not np.array_equal(data.load_split(other, "validation")[..., 0], validation)


@pytest.mark.parametrize("damage,message", [
    (lambda raw: raw[:200], r"truncated or damaged: its header says \(30, 6, 5\)"),
    (lambda raw: raw[:10], r"truncated: its header ends after 10 bytes"),
    (lambda raw: b"PK\x03\x04" + raw[4:], r"is not an idx file of images"),
])
def test_a_damaged_file_is_one_clear_error(tmp_path, damage, message):
  make_set(tmp_path, compress=False)
  path = tmp_path / "train-images-idx3-ubyte"
  path.write_bytes(damage(path.read_bytes()))
  with pytest.raises(ValueError, match=message):
    data.load_split(data_config(tmp_path), "train")


def test_missing_files_name_the_folder_and_the_install_command(tmp_path):
  with pytest.raises(ValueError, match=r"no train-images-idx3-ubyte\[\.gz\] in the folder "
                     r".*apt-get install dataset-fashion-mnist.*name='fashion_mnist'"):
    data.load_split(data_config(tmp_path), "train")
  with pytest.raises(ValueError, match=r"no folder .*nowhere"):
    data.load_split(data_config(tmp_path / "nowhere"), "train")
  with pytest.raises(ValueError, match=r"validation_shuffle_seed=-1 must be None"):
    data.load_split(data_config(tmp_path, validation_shuffle_seed=-1), "train")
