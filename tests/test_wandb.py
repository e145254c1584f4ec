"""Weights & Biases as a metric writer, in its offline mode: nothing leaves the machine; the
records W&B writes are read back from its run file."""

import glob
import json
import os
import struct
import sys

import pytest

from vae.config import checks as config_checks
from vae.configs import tiny
from vae.reporting import metric_writers, wandb_run
from vae.training import train


def wandb_records(workdir):
  """(history items {key: value}, config {key: value}) of the W&B runs in workdir/wandb,
  read from their .wandb files: W&B's 7-byte header, then LevelDB log records in 32 KiB
  blocks (7-byte headers: crc, length, type FULL/FIRST/MIDDLE/LAST), each a protobuf."""
  from wandb.proto import wandb_internal_pb2  # pylint: disable=import-outside-toplevel
  history, config = [], {}
  for path in sorted(glob.glob(os.path.join(workdir, "wandb", "*run-*", "run-*.wandb"))):
    raw, pos, pending = open(path, "rb").read(), 7, b""
    while pos + 7 <= len(raw):
      room = 32768 - pos % 32768
      _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
      if room < 7 or (kind == 0 and length == 0):
        pos += room
        continue
      pending = (b"" if kind in (1, 2) else pending) + raw[pos + 7:pos + 7 + length]
      pos += 7 + length
      if kind not in (1, 4):
        continue
      record = wandb_internal_pb2.Record()
      record.ParseFromString(pending)
      if record.WhichOneof("record_type") == "history":
        history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                        for item in record.history.item})
      if record.WhichOneof("record_type") == "run":
        config.update({item.key: json.loads(item.value_json)
                       for item in record.run.config.update})
  return history, config


@pytest.fixture
def offline(monkeypatch):
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")


def test_wandb_gets_the_scalars_images_and_config_of_a_run_and_its_resume(offline, tmp_path):
  pytest.importorskip("wandb")
  config = tiny.get_config()
  config.train.num_steps = 10
  config.logging.wandb = True
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)
  config.train.num_steps = 20  # resumed: the same W&B run goes on
  train.train_and_evaluate(config, workdir)

  history, logged_config = wandb_records(workdir)
  run_id = open(os.path.join(workdir, wandb_run.ID_FILE)).read().strip()
  assert len(glob.glob(os.path.join(workdir, "wandb", f"*run-*-{run_id}"))) == 2
  by_step = {}
  for item in history:
    by_step.setdefault(item["_step"], {}).update(item)
  records = metric_writers.read_metrics(workdir)
  assert {r["step"] for r in records} == {10, 20}
  for record in records:
    logged = by_step[record["step"]]
    for name, value in record.items():
      if isinstance(value, float):
        assert logged[f"{record['split']}/{name}"] == pytest.approx(value, rel=1e-6), name
      if isinstance(value, list):  # kl_per_dim: a histogram of its values
        assert logged[f"{record['split']}/{name}/_type"] == "histogram"
  assert any(key.endswith("/_type") and value == "image-file"
             for logged in by_step.values() for key, value in logged.items())
  assert logged_config["model"]["latent_dim"] == config.model.latent_dim


def test_wandb_selected_but_not_installed_is_one_line(monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now fails
  config = tiny.get_config()
  config.logging.wandb = True
  with pytest.raises(ValueError, match=r"config.logging.wandb=True is invalid: it must be "
                     r"False unless the wandb package is installed. Install it: "
                     r"pip install wandb"):
    config_checks.check_config(config)
