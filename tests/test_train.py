"""The training loop end to end on the tiny config: logs, files, resume, failures, CLI."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys

import flax
import jax
import numpy as np
import pytest

from records import assert_same_metrics

from tensorboard_events import tensorboard_events

from vae import data
from vae.common import errors
from vae.configs import tiny
from vae.reporting import metric_writers
from vae.training import checkpoints, runs, train, update
from vae.training import workdirs as workdirs_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_METRICS = ("reconstruction", "kl", "elbo", "log_px", "bound_gap", "active_units")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  results = train.train_and_evaluate(tiny.get_config(), workdir)
  return workdir, results


def test_run_writes_every_metric_file_and_image(finished_run):
  workdir, results = finished_run
  records = metric_writers.read_metrics(workdir)
  train_records = [r for r in records if r["split"] == "train"]
  assert [r["step"] for r in train_records] == [10, 20]
  for record in train_records:
    for key in update.TRAIN_METRICS + ("steps_per_sec",):
      assert math.isfinite(record[key]), (key, record)
  for split in ("validation", "test"):
    evals = [r for r in records if r["split"] == split]
    assert [r["step"] for r in evals] == [10, 20]
    for record in evals:
      for key in EVAL_METRICS:
        assert math.isfinite(record[key]), (key, record)
      # IWAE_K >= ELBO up to Monte Carlo error; the gap is their difference.
      assert record["log_px"] >= record["elbo"] - 3 * record["elbo_stderr"]
      assert record["bound_gap"] == pytest.approx(record["log_px"] - record["elbo"], abs=1e-4)
      assert record["elbo"] == pytest.approx(record["reconstruction"] - record["kl"], abs=1e-4)
      assert 0 <= record["active_units"] <= 4
      assert len(record["kl_per_dim"]) == 4
      assert sum(record["kl_per_dim"]) == pytest.approx(record["kl"], rel=1e-5)
      assert math.isfinite(record["mutual_information"] + record["marginal_kl"])
  assert results["test"]["elbo"] == evals[-1]["elbo"]
  assert results["test"]["elbo"] > train_records[0]["elbo"]  # it learned something
  files = set(os.listdir(os.path.join(workdir, "images")))
  assert {"reconstructions_step10.png", "samples_step20.png", "traversal_step20.png",
          "kl_per_dim_step20.png"} <= files
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10", "20"]
  histograms = {(value.tag, event.step) for event in tensorboard_events(os.path.join(workdir, "tensorboard"))
                for value in event.summary.value if value.HasField("histo")}
  assert {("test/kl_per_dim", 20), ("validation/kl_per_dim", 10)} <= histograms
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["model"]["latent_dim"] == 4


def comparable(records):
  return [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in records]


@pytest.mark.parametrize("stopped_block, saved_step", [
    (2, 15),  # between two evaluations
    (1, 10),  # at an evaluation's step, before it: the resume evaluates it first
])
def test_interrupted_run_resumes_to_the_same_numbers(finished_run, tmp_path, monkeypatch,
                                                     stopped_block, saved_step):
  reference, _ = finished_run
  original = runs.prefetch_to_device

  def interrupt(blocks, *args):  # blocks of 5 steps
    for i, block in enumerate(original(blocks, *args)):
      if i == stopped_block:  # Ctrl-C arrives while this block is being prepared.
        signal.raise_signal(signal.SIGINT)
      yield block

  monkeypatch.setattr(runs, "prefetch_to_device", interrupt)
  workdir = str(tmp_path)
  with pytest.raises(KeyboardInterrupt, match=f"checkpoint of step {saved_step}"):
    train.train_and_evaluate(tiny.get_config(), workdir)
  assert checkpoints.Checkpointer(workdir, 3).latest_step() == saved_step
  monkeypatch.setattr(runs, "prefetch_to_device", original)
  train.train_and_evaluate(tiny.get_config(), workdir)
  assert comparable(metric_writers.read_metrics(workdir)) == comparable(
      metric_writers.read_metrics(reference))


def test_finished_run_is_not_trained_again(finished_run):
  workdir, results = finished_run
  before = metric_writers.read_metrics(workdir)
  assert train.train_and_evaluate(tiny.get_config(), workdir) == {
      split: {k: v for k, v in values.items()} for split, values in results.items()}
  assert metric_writers.read_metrics(workdir) == before


def test_a_split_missing_from_the_last_evaluation_is_the_only_one_scored_again(
    finished_run, tmp_path):
  """A stop between the writes of the last evaluation's splits (the test line lost):
  the rerun scores the test split alone and writes each split of that step once."""
  workdir = str(tmp_path / "run")
  shutil.copytree(finished_run[0], workdir)
  before = metric_writers.read_metrics(workdir)
  last = before[-1]
  assert (last["step"], last["split"]) == (tiny.get_config().train.num_steps, "test")
  with open(os.path.join(workdir, metric_writers.METRICS_FILE), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in before[:-1])
  train.train_and_evaluate(tiny.get_config(), workdir)
  assert metric_writers.read_metrics(workdir) == before


def test_a_deleted_metrics_file_is_logged_afresh_from_the_last_evaluation(finished_run,
                                                                          tmp_path):
  """Deleting metrics.jsonl, as its damaged-line message offers, resumes the run: the
  last checkpoint's evaluation is written again, nothing is trained again."""
  workdir = str(tmp_path / "run")
  shutil.copytree(finished_run[0], workdir)
  before = metric_writers.read_metrics(workdir)
  os.remove(os.path.join(workdir, metric_writers.METRICS_FILE))
  train.train_and_evaluate(tiny.get_config(), workdir)
  last_step = tiny.get_config().train.num_steps
  assert metric_writers.read_metrics(workdir) == [
      r for r in before if r["step"] == last_step and r["split"] != "train"]


@flax.struct.dataclass
class TrainStateBeforeTheAverage:  # update.TrainState before config.train.ema_decay
  step: jax.Array
  params: dict
  opt_state: tuple


def test_a_run_saved_before_the_newer_model_fields_still_resumes(finished_run, tmp_path):
  """A config.json without the posterior, prior, stochastic-layer and estimator fields,
  and a checkpoint of the state before the params' average (a run of an earlier version):
  the model they default to; it resumes, and other changes still stop."""
  workdir = str(tmp_path / "old")
  shutil.copytree(finished_run[0], workdir)
  checkpointer = checkpoints.Checkpointer(workdir, 3)
  restored = checkpointer.restore(20)
  shutil.rmtree(os.path.join(checkpointer.directory, "20"))
  checkpointer.close()
  checkpointer = checkpoints.Checkpointer(workdir, 3)
  checkpointer.save(20, {"state": TrainStateBeforeTheAverage(**restored["state"]),
                         "metrics": restored["metrics"]})
  checkpointer.close()
  path = os.path.join(workdir, checkpoints.CONFIG_FILE)
  with open(path) as f:
    saved = json.load(f)
  for field in ("posterior", "prior", "upper_latent_dims", "upper_hidden_sizes", "init"):
    del saved["model"][field]
  for field in ("ema_decay", "keep_best"):
    del saved["train"][field]
  for field in ("num_outer_samples", "ciwae_beta", "gradient_estimator"):
    del saved["loss"][field]
  for field in ("decay_boundaries", "decay_factor", "adam_eps"):
    del saved["optimizer"][field]
  with open(path, "w") as f:
    json.dump(saved, f)
  config = tiny.get_config()
  config.model.init = "lecun_normal"  # what a run saved without the field was initialised by
  config.train.num_steps = 30
  assert train.train_and_evaluate(config, workdir)["test"]["num_examples"] > 0
  assert checkpoints.Checkpointer(workdir, 3).latest_step() == 30
  assert not os.path.exists(os.path.join(workdir, checkpoints.DAMAGED_DIR))  # it was read
  config.model.upper_latent_dims = (2,)
  with pytest.raises(ValueError, match=r"model.upper_latent_dims: \[\] -> \[2\]"):
    train.train_and_evaluate(config, workdir)


@pytest.mark.parametrize("schedule, warmup, boundaries, want", [
    ("constant", 0, (), [1.0, 1.0, 1.0, 1.0]),  # no warm-up: the full rate from step 0
    ("constant", 10, (), [0.0, 0.5, 1.0, 1.0]),
    ("piecewise", 0, (10, 20), [1.0, 1.0, 0.5, 0.25]),
    ("piecewise", 10, (20,), [0.0, 0.5, 1.0, 0.5]),
])
def test_learning_rate_schedules(schedule, warmup, boundaries, want):
  config = tiny.get_config()
  config.train.num_steps = 40
  config.optimizer.update(schedule=schedule, warmup_steps=warmup,
                          decay_boundaries=boundaries, decay_factor=0.5)
  got = [float(update.unit_schedule(config)(step)) for step in (0, 5, 10, 25)]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_incompatible_checkpoint_stops_before_training(finished_run):
  workdir, _ = finished_run
  config = tiny.get_config()
  config.model.latent_dim = 6
  with pytest.raises(ValueError, match=r"model.latent_dim: 4 -> 6.*new --workdir"):
    train.train_and_evaluate(config, workdir)
  assert checkpoints.Checkpointer(workdir, 3).latest_step() == 20


def test_huge_learning_rate_stops_with_the_step(tmp_path):
  config = tiny.get_config()
  config.optimizer.learning_rate = 1e9
  with pytest.raises(errors.NonFiniteLossError,
                     match=r"non-finite at step \d+\. Last good checkpoint: none.*learning_rate"):
    train.train_and_evaluate(config, str(tmp_path))


def test_a_rerun_after_a_nan_stop_is_a_new_attempt_from_the_last_good_checkpoint(tmp_path):
  """The failure's step is the update that went non-finite: a checkpoint of that step
  holds the good state before it, so the rerun tries again (and stops the same way)."""
  config = tiny.get_config()
  config.optimizer.learning_rate = 1e9
  config.train.update(steps_per_dispatch=1, checkpoint_every=1, log_every=1)
  for _ in range(2):
    with pytest.raises(errors.NonFiniteLossError,
                       match=r"non-finite at step 1\. Last good checkpoint: step 1 "):
      train.train_and_evaluate(config, str(tmp_path))
    assert workdirs_lib.read_failure(str(tmp_path))["step"] == 1


@pytest.mark.parametrize("text", ['{"step": 1, "rea', '{"reason": "non-finite"}',
                                  '{"step": 1}'])
def test_a_damaged_failure_record_stops_before_training_naming_it(tmp_path, text):
  (tmp_path / workdirs_lib.FAILED_FILE).write_text(text)
  with pytest.raises(ValueError, match=r"failed.json is damaged \(not a JSON object with "
                                       r"step, reason\): restore it, or delete it to let the run "
                                       r"train on from its latest checkpoint"):
    train.train_and_evaluate(tiny.get_config(), str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints") or not os.listdir(
      tmp_path / "checkpoints")


def test_nan_loss_keeps_the_last_good_checkpoint_loadable(tmp_path, monkeypatch):
  original = data.TrainBatches.block

  def poisoned(self, start_step, num_steps):
    batches = original(self, start_step, num_steps)
    return batches * np.nan if start_step >= 10 else batches

  monkeypatch.setattr(data.TrainBatches, "block", poisoned)
  workdir = str(tmp_path)
  with pytest.raises(errors.NonFiniteLossError,
                     match=r"non-finite at step 10\. Last good checkpoint: step 10"):
    train.train_and_evaluate(tiny.get_config(), workdir)
  checkpointer = checkpoints.Checkpointer(workdir, 3)
  assert checkpointer.latest_step() == 10
  restored = checkpointer.restore(10, None)
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(restored["state"]["params"]))


def run_cli(*args, workdir):
  return subprocess.run(
      [sys.executable, "-m", "experiments.train", "--config=configs/tiny.py",
       f"--workdir={workdir}", *args],
      cwd=REPO, capture_output=True, text=True, timeout=300)


def test_cli_parses_config_overrides(tmp_path):
  done = run_cli("--config.model.latent_dim=3", "--config.train.num_steps=10",
                 workdir=tmp_path)
  assert done.returncode == 0, done.stderr[-2000:]
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["model"]["latent_dim"] == 3
  assert "step 10/10 (100%)" in done.stderr


def test_cli_bad_value_is_one_plain_message(tmp_path):
  done = run_cli("--config.model.latent_dim=0", workdir=tmp_path)
  assert done.returncode != 0
  assert "error: config.model.latent_dim=0 is invalid" in done.stderr
  assert "Traceback" not in done.stderr
  assert not os.path.exists(tmp_path / "checkpoints")


def test_vectorized_runs_match_runs_alone(finished_run, tmp_path):
  reference, _ = finished_run
  other = tiny.get_config()
  other.seed, other.loss.beta, other.optimizer.learning_rate = 1, 2.0, 3e-3
  other.loss.kl_warmup_steps = 10
  workdirs = [str(tmp_path / "a"), str(tmp_path / "b")]
  train.train_vectorized([tiny.get_config(), other], workdirs)
  alone = str(tmp_path / "alone")
  train.train_and_evaluate(other, alone)
  for together, single in ((workdirs[0], reference), (workdirs[1], alone)):
    assert_same_metrics(metric_writers.read_metrics(together),
                        metric_writers.read_metrics(single))
  beta_logged = [r["beta"] for r in metric_writers.read_metrics(workdirs[1]) if r["split"] == "train"]
  assert beta_logged[0] < 2.0  # the KL warm-up ramps beta during the first 10 steps


def test_runs_of_other_latent_sizes_train_together_padded(finished_run, tmp_path, caplog):
  """Latent sizes 4 (the reference), 2 and 7 in one program: each run's metrics are its
  run's alone, and its checkpoints have its own model's shapes (loadable alone); the log
  gives the runs' own numbers of params, not the padded program's."""
  reference, _ = finished_run
  small, large = tiny.get_config(), tiny.get_config()
  small.model.latent_dim, small.seed = 2, 1
  large.model.latent_dim, large.loss.beta = 7, 2.0
  workdirs = [str(tmp_path / name) for name in ("d4", "d2", "d7")]
  caplog.set_level("INFO", logger="absl")  # whatever verbosity an earlier test left
  train.train_vectorized([tiny.get_config(), small, large], workdirs)
  sizes = [sum(np.size(leaf) for leaf in jax.tree.leaves(
      checkpoints.Checkpointer(w, 3).restore(20)["state"]["params"])) for w in workdirs]
  assert f"Model: mlp, {sizes[1]} to {sizes[2]} parameters;" in caplog.text
  alone = [reference]
  for config, name in ((small, "d2_alone"), (large, "d7_alone")):
    alone.append(str(tmp_path / name))
    train.train_and_evaluate(config, alone[-1])
  for together, single in zip(workdirs, alone):
    assert_same_metrics(metric_writers.read_metrics(together),
                        metric_writers.read_metrics(single))
    shapes = [checkpoints.Checkpointer(w, 3).restore(20) for w in (together, single)]
    assert jax.tree.map(np.shape, shapes[0]) == jax.tree.map(np.shape, shapes[1])


def test_a_diverging_run_of_a_group_is_frozen_at_its_last_finite_step(tmp_path):
  """Learning rate 1e9 goes non-finite at step 1 (in the first block of 5 steps): the run
  keeps the whole state of its step-1 update (params and Adam's moments), which a run
  trained alone for that one step has; the other run goes on."""
  diverging = tiny.get_config()
  diverging.optimizer.learning_rate = 1e9
  workdirs = [str(tmp_path / "good"), str(tmp_path / "bad")]
  train.train_vectorized([tiny.get_config(), diverging], workdirs)
  one_step = tiny.get_config()
  one_step.optimizer.learning_rate = 1e9
  one_step.train.steps_per_dispatch = 1
  with runs.RunGroup([one_step], [str(tmp_path / "one_step")]) as group:
    group.train(next(group.blocks())[1])  # (its evaluation would not be finite)
    ((_, after_one),) = group.per_run_state()
  frozen = checkpoints.Checkpointer(workdirs[1], 3).restore(20)["state"]
  for name in ("params", "opt_state"):
    for got, want in zip(jax.tree.leaves(frozen[name]),
                         jax.tree.leaves(getattr(after_one, name))):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
  assert int(frozen["step"]) == 20  # counted on
  good = checkpoints.Checkpointer(workdirs[0], 3).restore(20)["state"]
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(good["params"]))
  # Resumed from a checkpoint the group saved after the failure (a requeued task): the
  # run stays frozen with its failure as recorded; the other ends as it did.
  failure = workdirs_lib.read_failure(workdirs[1])
  assert failure["step"] == 1
  good_records = metric_writers.read_metrics(workdirs[0])
  for workdir in workdirs:
    shutil.rmtree(os.path.join(workdir, "checkpoints", "20"))
  train.train_vectorized([tiny.get_config(), diverging], workdirs)
  assert workdirs_lib.read_failure(workdirs[1]) == failure
  again = checkpoints.Checkpointer(workdirs[1], 3).restore(20)["state"]
  for got, want in zip(jax.tree.leaves(again["params"]), jax.tree.leaves(frozen["params"])):
    np.testing.assert_array_equal(got, want)
  assert comparable(metric_writers.read_metrics(workdirs[0])) == comparable(good_records)
  # A group of frozen runs only: nothing to train, one line.
  with pytest.raises(errors.NonFiniteLossError, match=r"non-finite at step 1 .*--retry_failed"):
    train.train_vectorized([diverging], [workdirs[1]])


def test_only_shape_preserving_fields_may_differ_when_vectorized(tmp_path):
  other = tiny.get_config()
  other.model.hidden_sizes = (16,)
  with pytest.raises(ValueError, match=r"\['model.hidden_sizes'\].*cannot be trained together"):
    train.train_vectorized([tiny.get_config(), other], [str(tmp_path / "a"), str(tmp_path / "b")])
  vamp = [tiny.get_config(), tiny.get_config()]
  for config, latent_dim in zip(vamp, (4, 6)):
    config.model.prior, config.model.latent_dim = "vamp", latent_dim
  with pytest.raises(ValueError, match=r"model.latent_dim cannot be trained together: only a "
                                       r"diagonal posterior with the standard normal prior"):
    train.train_vectorized(vamp, [str(tmp_path / "c"), str(tmp_path / "d")])


def test_empty_evaluation_split_stops_before_training(tmp_path):
  path = tmp_path / "own.npz"
  rng = np.random.default_rng(0)
  np.savez(path, train=rng.random((64, 8, 8)).astype(np.float32),
           test=rng.random((16, 8, 8)).astype(np.float32))
  config = tiny.get_config()
  config.data.name, config.data.path, config.data.validation_size = "npz", str(path), 0
  with pytest.raises(ValueError, match=r"'validation'.*empty.*validation_size=0"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints" / "10")


def assert_one_plain_message(stderr, message):
  """The message, and no traceback or asyncio noise after it (stderr of the app)."""
  assert re.search(message, stderr), stderr[-3000:]
  assert "Traceback" not in stderr and "Event loop is closed" not in stderr, stderr[-3000:]


def test_cli_nan_stop_is_one_plain_message(tmp_path):
  done = run_cli("--config.optimizer.learning_rate=1e9", workdir=tmp_path)
  assert done.returncode != 0
  assert_one_plain_message(done.stderr, r"error: .*the loss became non-finite at step \d+")


def test_cli_failed_restore_is_one_plain_message(tmp_path):
  """Training sets a damaged checkpoint aside (tests/test_faults.py); evaluating it fails."""
  assert run_cli("--config.train.num_steps=10", workdir=tmp_path).returncode == 0
  for path in (tmp_path / "checkpoints" / "10").rglob("*"):
    if path.is_file() and path.parent.name == "d":  # the arrays' data files
      path.write_bytes(path.read_bytes()[:10])
  done = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"--workdir={tmp_path}",
                         "--num_importance_samples=10"],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode != 0
  assert_one_plain_message(done.stderr,
                           r"error: The checkpoint of step 10 in .*checkpoints is damaged")


def test_cli_ctrl_c_saves_and_is_one_plain_message(tmp_path):
  process = subprocess.Popen(
      [sys.executable, "-m", "experiments.train", "--config=configs/tiny.py",
       f"--workdir={tmp_path}", "--config.train.num_steps=100000",
       "--config.train.eval_every=100000", "--config.train.checkpoint_every=100000"],
      cwd=REPO, stderr=subprocess.PIPE, text=True)
  lines = []
  for line in process.stderr:  # Ctrl-C once training runs
    lines.append(line)
    if "step 20/100000" in line:
      process.send_signal(signal.SIGINT)
      break
  stderr = "".join(lines) + process.communicate(timeout=300)[1]
  assert process.returncode != 0
  assert_one_plain_message(stderr, r"Interrupted: saved a checkpoint of step \d+ in ")
  assert checkpoints.latest_step(str(tmp_path)) >= 20
