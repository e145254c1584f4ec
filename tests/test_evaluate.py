"""Evaluating a run end to end on a tiny trained model: the JSON, chunking, keys, the CLI."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from vae import data
from vae import evaluation as evaluate
from vae.configs import default, tiny
from vae.models import build_model
from vae.reporting import metric_writers
from vae.training import checkpoints, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN_KEYS = ("workdir", "step", "split", "params", "best", "num_examples", "latent_dim",
             "seed",
             "num_importance_samples", "chunk_size", "batch_size", "num_elbo_samples",
             "decompose_gap", "estimator", "elbo", "elbo_stderr", "reconstruction",
             "reconstruction_stderr", "kl", "kl_stderr", "log_px", "log_px_stderr",
             "bound_gap", "bound_gap_stderr", "active_units", "ais", "gap_decomposition",
             "seconds", "peak_rss_mib", "mi_num_examples", "kl_per_dim", "mutual_information",
             "mutual_information_stderr", "marginal_kl", "marginal_kl_stderr")
GAP_KEYS = ("num_examples", "log_px_estimator", "posterior_family", "log_px",
            "log_px_stderr", "elbo_encoder", "elbo_encoder_stderr", "elbo_optimal",
            "elbo_optimal_stderr", "total_gap", "total_gap_stderr", "approximation_gap",
            "approximation_gap_stderr", "amortization_gap", "amortization_gap_stderr",
            "mean_steps", "fraction_at_max_steps", "num_samples", "learning_rate",
            "max_steps", "check_every", "patience", "tolerance", "num_elbo_samples",
            "family_examples")
AIS_KEYS = ("num_examples", "log_px", "log_px_stderr", "iwae_log_px", "iwae_log_px_stderr",
            "ais_minus_iwae", "ais_minus_iwae_stderr", "acceptance_rate", "steps", "chains",
            "leapfrog_steps", "start", "schedule")
# What eval_<split>.json holds beside the metric fields of a training-time evaluation: the
# run, the settings, the subset's sections, time and memory.
NOT_LOGGED_IN_TRAINING = {"workdir", "best", "latent_dim", "seed", "mi_num_examples",
                          "num_importance_samples", "chunk_size", "batch_size",
                          "num_elbo_samples", "decompose_gap", "estimator", "ais",
                          "gap_decomposition", "seconds", "peak_rss_mib"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  train.train_and_evaluate(tiny.get_config(), workdir)
  return workdir


def test_evaluate_run_writes_every_key_and_the_numbers_fit_together(run):
  results = evaluate.evaluate_run(run, "test", overrides={
      "num_importance_samples": 100, "decompose_gap": True, "num_examples": 5,
      "estimator": "ais", "ais.steps": 20, "ais.chains": 4}, progress=False)
  with open(os.path.join(run, "eval_test.json")) as f:
    assert json.load(f) == results
  assert set(results) == set(MAIN_KEYS)
  assert set(results["gap_decomposition"]) == set(GAP_KEYS)
  assert set(results["ais"]) == set(AIS_KEYS)
  for section in (results, results["gap_decomposition"], results["ais"]):
    for key, value in section.items():
      if isinstance(value, float):
        assert math.isfinite(value), key
  assert results["step"] == 20 and results["num_examples"] == 200
  assert results["num_importance_samples"] == 100 and results["estimator"] == "ais"
  assert results["elbo"] == pytest.approx(results["reconstruction"] - results["kl"], abs=1e-4)
  assert results["bound_gap"] == pytest.approx(results["log_px"] - results["elbo"], abs=1e-4)
  assert results["log_px"] > results["elbo"] - 3 * results["elbo_stderr"]
  assert 0 <= results["active_units"] <= results["latent_dim"] == 4
  assert len(results["kl_per_dim"]) == 4 and min(results["kl_per_dim"]) >= 0
  assert sum(results["kl_per_dim"]) == pytest.approx(results["kl"], rel=1e-5)
  mi, mi_err = results["mutual_information"], results["mutual_information_stderr"]
  assert -3 * mi_err <= mi <= results["kl"] + 3 * mi_err
  # I + marginal KL is the Monte Carlo KL of the draws, the closed-form KL within its error.
  assert mi + results["marginal_kl"] == pytest.approx(
      results["kl"], abs=4 * (mi_err + results["marginal_kl_stderr"]))
  gaps = results["gap_decomposition"]
  assert gaps["num_examples"] == 5 and gaps["log_px_estimator"] == "ais"
  assert gaps["log_px"] == pytest.approx(results["ais"]["log_px"], abs=1e-5)
  assert gaps["total_gap"] == pytest.approx(
      gaps["approximation_gap"] + gaps["amortization_gap"], abs=1e-4)
  assert gaps["elbo_optimal"] > gaps["elbo_encoder"] - 0.05  # q* is at least as good
  assert 0 < gaps["mean_steps"] <= gaps["max_steps"]
  assert 0.3 < results["ais"]["acceptance_rate"] < 1.0
  per_example = np.load(os.path.join(run, "eval_test.npz"))
  assert per_example["log_px"].shape == (200,) and per_example["posterior_mean"].shape == (200, 4)
  assert per_example["gap_approximation_gap"].shape == per_example["ais_log_px"].shape == (5,)
  assert per_example["kl_per_dim"].shape == (200, 4)
  assert per_example["mutual_information"].shape == per_example["marginal_kl"].shape == (200, 1)
  np.testing.assert_allclose(per_example["log_px"].mean(), results["log_px"], rtol=1e-6)
  table = evaluate.format_report(results)
  for label in ("ELBO", "log p(x), IWAE with K = 100", "bound gap", "active units",
                "log p(x), AIS", "approximation gap", "amortisation gap", "I(x; z)",
                "KL(q(z) || p(z))"):
    assert label in table


def test_chunks_and_batches_change_memory_not_numbers(run):
  config, params, _ = checkpoints.load_params(run)
  model = build_model(config.model, data.dataset_info(config.data).image_shape)
  images = data.load_split(config.data, "test")[:23]
  whole = evaluate.eval_settings(config.eval, dict(num_importance_samples=64, chunk_size=64,
                                                   batch_size=23))
  chunked = evaluate.eval_settings(config.eval, dict(num_importance_samples=64, chunk_size=5,
                                                     batch_size=7))
  results = [evaluate.evaluate_params(model, params, images, 0, options, progress=False)
             for options in (whole, chunked)]
  (summary_a, per_example_a), (summary_b, per_example_b) = results
  for key in evaluate.PER_EXAMPLE_METRICS + ("posterior_mean", "kl_per_dim",
                                          "mutual_information", "marginal_kl"):
    np.testing.assert_allclose(per_example_a[key], per_example_b[key], rtol=1e-5, atol=1e-5)
  assert summary_a["log_px"] == pytest.approx(summary_b["log_px"], abs=1e-4)


def test_the_run_eval_settings_reproduce_its_logged_test_metrics(run):
  results = evaluate.evaluate_run(run, "test", write=False, progress=False)
  logged = [r for r in metric_writers.read_metrics(run) if r["split"] == "test"][-1]
  assert logged["step"] == results["step"]
  for key in ("elbo", "log_px", "bound_gap", "reconstruction", "kl", "active_units",
              "mutual_information", "marginal_kl", "kl_per_dim"):
    assert results[key] == pytest.approx(logged[key], rel=1e-6, abs=1e-6), key
  assert results["gap_decomposition"] is None and results["ais"] is None


@pytest.mark.parametrize("layers", [1, 2])
def test_training_and_standalone_evaluations_write_the_same_metric_fields(run, tmp_path,
                                                                          layers):
  """The last training-time evaluation record of a split in metrics.jsonl and the
  eval_<split>.json of the same checkpoint carry the same metric fields (every one of
  `metric_names` with its standard error), with the same numbers; two layers too."""
  workdir = run
  if layers == 2:
    workdir, config = str(tmp_path), tiny.get_config()
    config.model.upper_latent_dims, config.model.upper_hidden_sizes = (3,), (16,)
    config.train.num_steps = 10
    train.train_and_evaluate(config, workdir)
  evaluate.evaluate_run(workdir, "validation", progress=False)
  with open(os.path.join(workdir, "eval_validation.json")) as f:
    written = json.load(f)
  logged = [r for r in metric_writers.read_metrics(workdir) if r["split"] == "validation"][-1]
  assert logged["step"] == written["step"]
  assert set(logged) <= set(written)
  assert set(written) - set(logged) == NOT_LOGGED_IN_TRAINING
  layer_kls = ("kl_z1", "kl_z2") if layers == 2 else ()
  for name in evaluate.PER_EXAMPLE_METRICS + layer_kls:
    assert {name, f"{name}_stderr"} <= set(logged), name
  for key in set(logged) - {"step", "split", "params"}:
    assert written[key] == pytest.approx(logged[key], rel=1e-6, abs=1e-6), key


@pytest.mark.parametrize("kwargs, message", [
    (dict(split="dev"), r"split='dev' is not one of"),
    (dict(overrides=dict(num_importance_samples=0)),
     "config.eval.num_importance_samples=0 is invalid"),
    (dict(overrides=dict(estimator="exact")), "config.eval.estimator='exact' is invalid"),
    (dict(overrides=dict(num_examples=0)), "config.eval.num_examples=0 is invalid"),
    (dict(overrides=dict(chunk_size=-1)), "config.eval.chunk_size=-1 is invalid"),
    (dict(overrides={"ais.stepz": 3}), r"config.eval.ais.stepz is not a field.*'ais.steps'"),
    (dict(step=7), r"no checkpoint of step 7; it has \[10, 20\]"),
])
def test_bad_arguments_stop_with_a_plain_message(run, kwargs, message):
  with pytest.raises(ValueError, match=message):
    evaluate.evaluate_run(run, **kwargs, write=False, progress=False)


def test_missing_run_or_checkpoint_stops_with_a_plain_message(tmp_path):
  with pytest.raises(ValueError, match="does not exist"):
    evaluate.evaluate_run(str(tmp_path / "nowhere"))
  checkpoints.save_config(tiny.get_config(), str(tmp_path))
  with pytest.raises(ValueError, match="holds no checkpoint. Train first"):
    evaluate.evaluate_run(str(tmp_path))


def test_cli_prints_the_table_and_writes_where_asked(run, tmp_path):
  output_dir = str(tmp_path / "scores")
  done = subprocess.run(
      [sys.executable, "-m", "experiments.evaluate", f"--workdir={run}", "--split=validation",
       "--num_importance_samples=50", f"--output_dir={output_dir}"], cwd=REPO,
      capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "log p(x), IWAE with K = 50" in done.stdout and "active units" in done.stdout
  assert f"Written to {output_dir}/eval_validation.json" in done.stdout
  assert "100%" in done.stderr  # the progress line
  assert "Traceback" not in done.stderr
  with open(os.path.join(output_dir, "eval_validation.json")) as f:
    assert json.load(f)["num_importance_samples"] == 50


def _listing(folder):
  """{path under folder: (size, mtime in ns)} of every file."""
  return {os.path.relpath(os.path.join(root, name), folder):
          (os.stat(os.path.join(root, name)).st_size,
           os.stat(os.path.join(root, name)).st_mtime_ns)
          for root, _, names in os.walk(folder) for name in names}


def test_an_output_dir_leaves_the_workdir_as_it_was(run, tmp_path):
  before = _listing(run)
  output_dir = str(tmp_path / "made" / "here")
  results = evaluate.evaluate_run(run, "validation", best=False, output_dir=output_dir,
                                  overrides={"num_importance_samples": 20}, progress=False)
  assert _listing(run) == before
  with open(os.path.join(output_dir, "eval_validation.json")) as f:
    assert json.load(f) == results
  per_example = np.load(os.path.join(output_dir, "eval_validation.npz"))
  assert np.mean(per_example["log_px"]) == pytest.approx(results["log_px"], rel=1e-5)


class _Stopped(Exception):
  """Stands for a stop (preemption, end of a session) during the gap decomposition."""


def test_a_stop_during_the_gap_decomposition_keeps_the_iwae_pass(run, tmp_path, monkeypatch):
  def stopped(*args, **kwargs):
    raise _Stopped()

  monkeypatch.setattr(evaluate.run_evaluation.ais_and_gap, "decompose_gaps", stopped)
  with pytest.raises(_Stopped):
    evaluate.evaluate_run(run, "validation", output_dir=str(tmp_path), progress=False,
                          overrides={"num_importance_samples": 20, "decompose_gap": True})
  with open(tmp_path / "eval_validation.json") as f:
    kept = json.load(f)
  assert kept["pending"] == ["gap_decomposition"] and kept["gap_decomposition"] is None
  assert set(kept) == set(MAIN_KEYS) | {"pending"}
  assert sorted(os.listdir(tmp_path)) == ["eval_validation.json", "eval_validation.npz"]
  monkeypatch.undo()
  results = evaluate.evaluate_run(run, "validation", output_dir=str(tmp_path), progress=False,
                                  overrides={"num_importance_samples": 20, "decompose_gap": True,
                                             "num_examples": 3})
  for key in ("log_px", "elbo", "bound_gap", "active_units"):
    assert kept[key] == results[key], key  # the same draws: the same numbers
  with open(tmp_path / "eval_validation.json") as f:
    assert json.load(f) == results and "pending" not in results
  assert results["gap_decomposition"]["num_examples"] == 3


def test_an_output_dir_that_cannot_be_written_stops_before_the_work(run, tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  with pytest.raises(ValueError, match=r"cannot be written to .*a_file/out.*--output_dir"):
    evaluate.evaluate_run(run, "validation", output_dir=str(a_file / "out"), progress=False)


@pytest.mark.parametrize("args, message", [
    (["--split=dev"], "error: split='dev' is not one of"),
    (["--num_importance_samples=0"], "error: config.eval.num_importance_samples=0 is invalid"),
    (["--output_dir=/dev/null/scores"], "error: The evaluation cannot be written to"),
])
def test_app_stops_with_one_plain_message_on_bad_input(run, args, message):
  from absl import flags  # pylint: disable=import-outside-toplevel

  from vae.apps import evaluate as app  # pylint: disable=import-outside-toplevel
  flags.FLAGS(["evaluate", f"--workdir={run}", *args])
  try:
    with pytest.raises(SystemExit, match=f"^{message}"):
      app.main(["evaluate"])
  finally:
    flags.FLAGS.unparse_flags()


def test_the_draws_for_mutual_information_default_to_the_posterior_family():
  config = default.get_config()
  image_shape = (28, 28, 1)
  for family, draws in (("diagonal", 1000), ("iaf", 32)):
    with config.unlocked():
      config.model.posterior = family
    model = build_model(config.model, image_shape)
    assert evaluate.mi_num_examples(model, config.eval) == draws
  with config.unlocked():
    config.eval.mi_num_examples = 7
  assert evaluate.mi_num_examples(model, config.eval) == 7


def test_a_progress_line_only_if_slow_is_silent_for_quick_work(monkeypatch, caplog):
  from vae.reporting import progress  # pylint: disable=import-outside-toplevel
  clock = [100.0]
  monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
  monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False)
  caplog.set_level("INFO", logger="absl")
  for label, seconds_per_update in (("quick:", 1.0), ("slow:", 31.0)):
    meter = progress.ProgressLine(label, 10, only_if_slow=True)
    for done in (5, 10):
      clock[0] += seconds_per_update
      meter.update(done)
  assert "quick:" not in caplog.text  # a routine evaluation stays silent
  assert caplog.text.count("slow:") == 2  # a long one shows its progress and its end
