"""config.train.init_from: a run that starts from another run's params (fine-tuning)."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from vae.configs import tiny
from vae.models import build_model
from vae.training import best_checkpoint, checkpoints, train, update, warm_start

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.xdist_group("warm_start")  # the source run is trained once


def _config(**train_fields):
  config = tiny.get_config()
  config.eval.splits = ("validation",)
  config.train.update(**train_fields)
  return config


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  """A tiny run that kept its best validation checkpoint (of steps 10 and 20)."""
  workdir = str(tmp_path_factory.mktemp("source"))
  train.train_and_evaluate(_config(keep_best="log_px"), workdir)
  return workdir


def _fresh_state(config):
  model = build_model(config.model, (8, 8, 1))
  return update.init_state(model, config, jax.random.key(1))


def _assert_same_tree(first, second):
  assert jax.tree.structure(first) == jax.tree.structure(second)
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_fresh_state_takes_the_sources_best_params_and_keeps_its_optimizer(source):
  config = _config(ema_decay=0.9)  # the average starts from the source's params too
  fresh = _fresh_state(config)
  state, origin = warm_start.warm_started(fresh, source)
  best_params, best_step = best_checkpoint.load_params(source)
  assert origin == {"source": source, "checkpoint": "best", "step": best_step}
  assert warm_start.describe(origin) == f"the best checkpoint (step {best_step}) of {source}"
  _assert_same_tree(state.params, best_params)
  _assert_same_tree(state.ema_params, best_params)
  _assert_same_tree(state.opt_state, fresh.opt_state)
  assert int(state.step) == 0


def test_without_a_kept_best_the_latest_checkpoint_is_read(source, tmp_path):
  plain = str(tmp_path / "plain")
  shutil.copytree(source, plain)
  os.remove(os.path.join(plain, best_checkpoint.FILE))
  state, origin = warm_start.warm_started(_fresh_state(_config()), plain)
  assert origin == {"source": plain, "checkpoint": "latest", "step": 20}
  _assert_same_tree(state.params, checkpoints.load_params(plain)[1])


def test_a_warm_started_run_evaluates_as_its_source_at_the_start(source, tmp_path):
  # At a learning rate of 1e-12 the params stay the source's: the first evaluation of the
  # new run must give the figures the source's best evaluation gave (same seed, same keys).
  config = _config(init_from=source, num_steps=10)
  config.optimizer.learning_rate = 1e-12
  results = train.train_and_evaluate(config, str(tmp_path / "fine"))
  recorded = best_checkpoint.read(source)["results"]["validation"]
  for metric in ("elbo", "log_px", "kl"):
    np.testing.assert_allclose(results["validation"][metric], recorded[metric], rtol=1e-5)


def test_a_resumed_warm_start_no_longer_needs_its_source(source, tmp_path):
  copy, workdir = str(tmp_path / "source"), str(tmp_path / "fine")
  shutil.copytree(source, copy)
  train.train_and_evaluate(_config(init_from=copy, num_steps=10), workdir)
  shutil.rmtree(copy)
  with pytest.raises(ValueError, match="must be the workdir of a trained run"):
    train.train_and_evaluate(_config(init_from=copy), str(tmp_path / "another"))
  assert not os.path.exists(tmp_path / "another" / "checkpoints")
  train.train_and_evaluate(_config(init_from=copy, num_steps=20), workdir)
  assert checkpoints.latest_step(workdir) == 20
  # The run still names the checkpoint it started from, its source gone.
  best_step = best_checkpoint.read(source)["step"]
  assert warm_start.read_origin(workdir) == {"source": copy, "checkpoint": "best",
                                             "step": best_step}


def test_only_the_attempt_that_trains_names_the_origin(source, tmp_path):
  """A fresh run's origin is the source's checkpoint of its own start; an attempt that
  saved nothing and is started again from scratch names none."""
  workdir = str(tmp_path / "fine")
  os.makedirs(workdir)
  stale = {"source": "elsewhere", "checkpoint": "best", "step": 1}
  (tmp_path / "fine" / warm_start.ORIGIN_FILE).write_text(json.dumps(stale))
  train.train_and_evaluate(_config(num_steps=10), workdir)
  assert warm_start.read_origin(workdir) is None
  workdir = str(tmp_path / "fine_again")
  os.makedirs(workdir)
  (tmp_path / "fine_again" / warm_start.ORIGIN_FILE).write_text(json.dumps(stale))
  train.train_and_evaluate(_config(init_from=source, num_steps=10), workdir)
  assert warm_start.read_origin(workdir)["source"] == source
  from vae.evaluation import loaded_run  # pylint: disable=import-outside-toplevel
  assert loaded_run.load_run(workdir).origin == warm_start.read_origin(workdir)


@pytest.mark.parametrize("text", ['{"source": "/a/run", "chec', "not json", "[1, 2]"])
def test_a_damaged_origin_record_loads_the_run_without_one(source, tmp_path, text):
  """warm_start.json only says where a run came from: damaged by hand, the run still
  loads, with no origin, instead of raising a JSON error."""
  workdir = str(tmp_path / "copy")
  shutil.copytree(source, workdir)
  (tmp_path / "copy" / warm_start.ORIGIN_FILE).write_text(text)
  from vae.evaluation import loaded_run  # pylint: disable=import-outside-toplevel
  run = loaded_run.load_run(workdir)
  assert run.origin is None
  assert run.step == checkpoints.latest_step(source)


@pytest.mark.parametrize("change,message", [
    ({"model.latent_dim": 6}, r"do not fit the model this config builds"),
    ({"train.init_from": "no/such/run"}, r"init_from='no/such/run' must be the workdir"),
])
def test_a_source_that_cannot_start_the_run_is_one_line(source, tmp_path, change, message):
  config = _config(init_from=source)
  config.update_from_flattened_dict(change)
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path / "fine"))
  assert checkpoints.latest_step(str(tmp_path / "fine")) is None


def test_a_source_whose_best_params_are_gone_names_them_and_the_fix(source, tmp_path):
  """best.json names a step best/ no longer holds (deleted by hand): not "keep a best",
  which the run did, but what is missing and how to go on."""
  copy = tmp_path / "copy"
  shutil.copytree(source, copy)
  step = best_checkpoint.read(str(copy))["step"]
  shutil.rmtree(copy / best_checkpoint.FOLDER / str(step))
  with pytest.raises(ValueError, match=rf"best.json names the params of step {step}, which "
                                       rf"\S+best no longer holds: restore best/{step}, or "
                                       r"delete best.json to use the run's latest"):
    train.train_and_evaluate(_config(init_from=str(copy)), str(tmp_path / "fine"))
  (copy / best_checkpoint.FILE).unlink()  # as the message offers
  assert warm_start.source_checkpoint(str(copy)) == ("latest", checkpoints.latest_step(source))


def test_a_source_without_checkpoints_is_one_plain_line(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / checkpoints.CONFIG_FILE).write_text(json.dumps({}))
  done = subprocess.run(
      [sys.executable, "-m", "experiments.train", "--config=configs/tiny.py",
       f"--workdir={tmp_path / 'fine'}", f"--config.train.init_from={empty}"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode != 0
  assert "holds no checkpoint yet: train it first" in done.stderr
  assert "Traceback" not in done.stderr
