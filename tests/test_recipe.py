"""The training recipe's options: the params' moving average and the best checkpoint."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vae import evaluation as evaluate
from vae.config import checks as config_checks
from vae.configs import tiny
from vae.reporting import metric_writers
from vae.training import best_checkpoint, checkpoints, train, update


def test_the_average_follows_its_recurrence_and_leaves_training_alone():
  """_make_step on a quadratic loss: the params move as plain SGD does, and the average
  is a_{t+1} = d_t a_t + (1 - d_t) params_{t+1}, d_t = min(decay, (1 + t) / (10 + t))."""
  target = jnp.array([1.0, -2.0, 3.0])

  def loss_fn(params, key, x, beta):
    del key, x, beta
    loss = jnp.sum((params["w"] - target) ** 2)
    return loss, {}

  optimizer = optax.sgd(0.1)
  params = {"w": jnp.zeros(3)}
  decay = 0.9
  state = update.TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params),
                            ema_params=params)
  acc = update.empty_accumulator(("loss", "beta", "grad_norm"))
  step = update._make_step(loss_fn, optimizer, {"beta": 1.0, "kl_warmup_steps": 0.0},  # pylint: disable=protected-access
                           jax.random.PRNGKey(0), decay)
  w, average = np.zeros(3), np.zeros(3)
  for t in range(30):
    (state, acc), _ = step((state, acc), (jnp.zeros(1), False))
    w = w - 0.1 * 2 * (w - np.asarray(target))
    d = min(decay, (1 + t) / (10 + t))
    average = d * average + (1 - d) * w
    np.testing.assert_allclose(state.params["w"], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.ema_params["w"], average, rtol=1e-5, atol=1e-6)
  assert not np.allclose(average, w, atol=1e-3)  # the average lags the params


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory):
  config = tiny.get_config()
  config.train.ema_decay = 0.9
  config.train.keep_best = "log_px"
  config.optimizer.schedule = "constant"  # so a shorter first run is its first half
  workdir = str(tmp_path_factory.mktemp("averaged"))
  return config, workdir, train.train_and_evaluate(config, workdir)


def test_evaluations_checkpoints_and_resume_use_the_average(averaged_run, tmp_path):
  config, workdir, results = averaged_run
  records = [r for r in metric_writers.read_metrics(workdir) if r["split"] == "test"]
  assert [r["params"] for r in records] == ["ema", "ema"]
  restored = checkpoints.Checkpointer(workdir, 3).restore(20)["state"]
  assert not np.allclose(restored["ema_params"]["decoder"]["Dense_0"]["kernel"],
                         restored["params"]["decoder"]["Dense_0"]["kernel"])
  again = evaluate.evaluate_run(workdir, "test", write=False, progress=False)
  assert again["params"] == "ema"
  assert again["log_px"] == pytest.approx(results["test"]["log_px"], abs=1e-5)

  halfway = str(tmp_path / "resumed")  # 10 steps, then resumed to 20: the same numbers
  first = tiny.get_config()
  first.update_from_flattened_dict({"train.ema_decay": 0.9, "train.keep_best": "log_px",
                                    "optimizer.schedule": "constant", "train.num_steps": 10})
  train.train_and_evaluate(first, halfway)
  resumed = train.train_and_evaluate(config, halfway)
  assert resumed["test"]["log_px"] == results["test"]["log_px"]
  assert resumed["test"]["elbo"] == results["test"]["elbo"]
  assert best_checkpoint.read(halfway)["step"] == best_checkpoint.read(workdir)["step"]


def test_the_best_evaluation_is_kept_and_evaluated_again(averaged_run):
  _, workdir, _ = averaged_run
  validation = {r["step"]: r["log_px"] for r in metric_writers.read_metrics(workdir)
                if r["split"] == "validation"}
  record = best_checkpoint.read(workdir)
  assert record["step"] == max(validation, key=validation.get)
  assert record["value"] == pytest.approx(validation[record["step"]])
  assert sorted(os.listdir(os.path.join(workdir, best_checkpoint.FOLDER))) == [
      str(record["step"])]
  best = evaluate.evaluate_run(workdir, "validation", best=True, write=False,
                               progress=False)
  assert best["step"] == record["step"] and best["best"] is True
  assert best["log_px"] == pytest.approx(record["value"], abs=1e-5)


def test_a_stop_while_an_evaluation_is_kept_as_the_best_is_made_good_by_the_rerun(
    averaged_run, tmp_path, monkeypatch):
  """Killed after the best evaluation's metrics are logged and its params saved, before
  best.json names it: the rerun offers the logged evaluation again, and ends with the
  uninterrupted run's best and records."""
  config, reference, _ = averaged_run
  target = best_checkpoint.read(reference)["step"]
  offer = best_checkpoint.BestCheckpoint.offer

  def killed_during_the_offer(keeper, step, params, results):
    if step == target:
      keeper._checkpointer.save(step, {"params": params})  # pylint: disable=protected-access
      raise KeyboardInterrupt("killed")
    return offer(keeper, step, params, results)

  monkeypatch.setattr(best_checkpoint.BestCheckpoint, "offer", killed_during_the_offer)
  workdir = str(tmp_path)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, workdir)
  monkeypatch.undo()
  train.train_and_evaluate(config, workdir)
  kept, want = best_checkpoint.read(workdir), best_checkpoint.read(reference)
  assert (kept["step"], kept["value"]) == (want["step"], want["value"])
  assert sorted(os.listdir(os.path.join(workdir, best_checkpoint.FOLDER))) == [str(target)]
  steps_and_splits = lambda w: [(r["step"], r["split"]) for r in metric_writers.read_metrics(w)]
  assert steps_and_splits(workdir) == steps_and_splits(reference)


def test_the_best_keeper_keeps_only_improvements_and_forgets_the_future(tmp_path):
  workdir = str(tmp_path)
  params = lambda value: {"w": np.full(2, value, np.float32)}
  scores = lambda value: {"validation": {"log_px": value, "elbo": value - 1},
                          "test": {"log_px": value + 0.5}}
  keeper = best_checkpoint.BestCheckpoint(workdir, "log_px", start_step=0)
  assert keeper.offer(10, params(1.0), scores(-90.0))
  assert not keeper.offer(20, params(2.0), scores(-95.0))  # worse
  assert not keeper.offer(30, params(3.0), scores(-90.0))  # a tie keeps the earlier step
  assert keeper.offer(40, params(4.0), scores(-80.0))
  keeper.close()
  loaded, step = best_checkpoint.load_params(workdir)
  assert step == 40 and np.all(loaded["w"] == 4.0)
  with open(os.path.join(workdir, best_checkpoint.FILE)) as f:
    assert json.load(f)["results"]["test"]["log_px"] == -79.5
  resumed = best_checkpoint.BestCheckpoint(workdir, "log_px", start_step=40)
  assert resumed.record["step"] == 40  # still the best of the steps kept
  resumed.close()
  earlier = best_checkpoint.BestCheckpoint(workdir, "log_px", start_step=30)
  assert earlier.record is None  # its step 40 will be trained again
  assert earlier.offer(35, params(5.0), scores(-99.0))
  earlier.close()
  assert best_checkpoint.load_params(workdir)[1] == 35


def test_a_stop_while_a_new_best_is_kept_leaves_best_json_naming_a_checkpoint(tmp_path,
                                                                              monkeypatch):
  """Killed after the new best's params are saved and before best.json names them: the
  old best is still there, and a later improvement leaves only itself."""
  workdir = str(tmp_path)
  params = lambda value: {"w": np.full(2, value, np.float32)}
  scores = lambda value: {"validation": {"log_px": value, "elbo": value - 1}}
  keeper = best_checkpoint.BestCheckpoint(workdir, "log_px", start_step=0)
  assert keeper.offer(10, params(1.0), scores(-90.0))

  def killed(*args):
    raise KeyboardInterrupt("killed")

  monkeypatch.setattr(best_checkpoint.os, "replace", killed)
  with pytest.raises(KeyboardInterrupt):
    keeper.offer(20, params(2.0), scores(-80.0))
  keeper.close()
  loaded, step = best_checkpoint.load_params(workdir)
  assert step == 10 and np.all(loaded["w"] == 1.0)
  monkeypatch.undo()
  resumed = best_checkpoint.BestCheckpoint(workdir, "log_px", start_step=10)
  assert sorted(os.listdir(os.path.join(workdir, best_checkpoint.FOLDER))) == ["10"]
  assert resumed.offer(30, params(3.0), scores(-70.0))
  resumed.close()
  assert sorted(os.listdir(os.path.join(workdir, best_checkpoint.FOLDER))) == ["30"]
  assert best_checkpoint.load_params(workdir)[1] == 30


def test_another_keep_best_metric_on_resume_is_one_line_and_keeps_the_best(tmp_path):
  workdir = str(tmp_path)
  keeper = best_checkpoint.BestCheckpoint(workdir, "log_px", start_step=0)
  assert keeper.offer(10, {"w": np.ones(2, np.float32)}, {"validation": {"log_px": -90.0}})
  keeper.close()
  with pytest.raises(ValueError, match=r"keeps its best evaluation by log_px .*"
                                       r"--config.train.keep_best=log_px, or use a new"):
    best_checkpoint.BestCheckpoint(workdir, "elbo", start_step=10)
  assert best_checkpoint.load_params(workdir)[1] == 10


def test_another_keep_best_metric_from_before_the_best_step_starts_a_new_best(tmp_path):
  """Trained again from before its best step (say, its later checkpoints deleted), the
  run forgets that best whichever metric it kept it by: no reason to stop."""
  workdir = str(tmp_path)
  keeper = best_checkpoint.BestCheckpoint(workdir, "log_px", start_step=0)
  assert keeper.offer(10, {"w": np.ones(2, np.float32)}, {"validation": {"log_px": -90.0}})
  keeper.close()
  restarted = best_checkpoint.BestCheckpoint(workdir, "elbo", start_step=0)
  assert restarted.record is None and best_checkpoint.read(workdir) is None
  assert restarted.offer(10, {"w": np.zeros(2, np.float32)}, {"validation": {"elbo": -95.0}})
  restarted.close()
  assert best_checkpoint.read(workdir)["metric"] == "elbo"


@pytest.mark.parametrize("text", ['{"step": 10, "metric": "log_px", "val', "[10]",
                                  '{"step": 10, "metric": "log_px", "split": "validation"}',
                                  '{"step": true, "metric": "log_px", "split": "validation",'
                                  ' "value": -90.0}'])
def test_a_damaged_best_json_stops_the_resume_and_keeps_the_best_params(tmp_path, text):
  """A best.json hand-edited or damaged: read as no best, the next evaluation would
  replace the params it names; instead one line names it and nothing is deleted."""
  workdir = str(tmp_path)
  keeper = best_checkpoint.BestCheckpoint(workdir, "log_px", start_step=0)
  assert keeper.offer(10, {"w": np.ones(2, np.float32)}, {"validation": {"log_px": -90.0}})
  keeper.close()
  (tmp_path / best_checkpoint.FILE).write_text(text)
  with pytest.raises(ValueError, match=r"best.json is damaged \(not a JSON object with step, "
                                       r"metric, split, value\): restore it \(best/ beside "
                                       r"it still holds the params it named\), or, to keep a "
                                       r"new best .*, delete it and best/\.$"):
    best_checkpoint.BestCheckpoint(workdir, "log_px", start_step=20)
  assert os.listdir(os.path.join(workdir, best_checkpoint.FOLDER)) == ["10"]
  (tmp_path / best_checkpoint.FILE).unlink()  # as the message offers: a new best
  fresh = best_checkpoint.BestCheckpoint(workdir, "log_px", start_step=20)
  assert fresh.record is None
  fresh.close()


def test_a_run_without_a_best_checkpoint_says_how_to_keep_one(tmp_path):
  with pytest.raises(ValueError, match="keep_best=log_px"):
    best_checkpoint.load_params(str(tmp_path))


@pytest.mark.parametrize("overrides, message", [
    ({"train.ema_decay": 1.0}, r"config.train.ema_decay=1.0 is invalid.*\[0, 1\)"),
    ({"train.ema_decay": -0.1}, r"config.train.ema_decay=-0.1 is invalid"),
    ({"train.keep_best": "nll"}, r"config.train.keep_best='nll' is invalid.*log_px"),
    ({"train.keep_best": "elbo", "eval.splits": ("test",)},
     r"config.train.keep_best='elbo' is invalid.*'validation'"),
])
def test_bad_recipe_fields_are_one_line(overrides, message):
  config = tiny.get_config()
  config.update_from_flattened_dict(overrides)
  with pytest.raises(ValueError, match=message):
    config_checks.check_config(config)
