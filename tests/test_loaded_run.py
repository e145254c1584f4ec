"""`vae.load_run`: a trained run's model from Python, on NumPy arrays, with the numbers of
`experiments.evaluate`."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import vae
from vae import data, evaluation
from vae.configs import tiny
from vae.training import checkpoints, train

OLD_RUN = pathlib.Path(__file__).resolve().parent / "data" / "run_before_layout"

# (name, model fields, data fields): one layer diagonal (kept average), full covariance
# with a VampPrior, two layers (an IAF below) with a mixture prior, Gaussian pixels.
MODELS = [
    ("diagonal", {}, {}),
    ("full_covariance_vamp", {"posterior": "full_covariance", "prior": "vamp",
                              "prior_components": 5}, {}),
    ("two_layers_iaf_mixture", {"upper_latent_dims": (3,), "upper_hidden_sizes": (16,),
                                "posterior": "iaf", "flow_steps": 1, "flow_hidden": 8,
                                "prior": "mixture", "prior_components": 5}, {}),
    ("gaussian_pixels", {"likelihood": "gaussian"}, {"binarize": "none"}),
]


@pytest.fixture(scope="module", params=MODELS, ids=[name for name, _, _ in MODELS])
def workdir(request, tmp_path_factory):
  """A tiny run of 10 steps of the model, keeping its best and its params' average."""
  name, model_fields, data_fields = request.param
  config = tiny.get_config()
  config.model.update(model_fields)
  config.data.update(data_fields)
  config.train.num_steps = config.train.eval_every = config.train.checkpoint_every = 10
  config.train.ema_decay, config.train.keep_best = 0.9, "elbo"
  folder = str(tmp_path_factory.mktemp(name))
  train.train_and_evaluate(config, folder)
  return folder


# Every test of this module in one test process (pyproject's --dist loadgroup), so that
# its module fixtures (the runs of each model) are made once, not once per process.
pytestmark = pytest.mark.xdist_group("loaded_run")


@pytest.fixture(scope="module")
def test_images(workdir):
  return data.load_split(checkpoints.load_config(workdir).data, "test")


def test_scores_are_the_evaluate_apps_numbers(workdir, test_images):
  run = vae.load_run(workdir)
  assert (run.step, run.params_label) == (10, "ema")
  evaluation.evaluate_run(workdir, "test", overrides={"num_importance_samples": 30},
                          progress=False)
  written = np.load(pathlib.Path(workdir) / "eval_test.npz")
  scores = run.score(test_images, num_importance_samples=30)
  for name in evaluation.metric_names(run.model):
    np.testing.assert_array_equal(scores[name], written[name], err_msg=name)
  np.testing.assert_allclose(scores["bound_gap"], scores["log_px"] - scores["elbo"],
                             rtol=1e-6, atol=1e-5)
  # Any subset scores as within the split: each image's key is folded from its index.
  np.testing.assert_array_equal(run.score(test_images[:7], 30)["log_px"],
                                scores["log_px"][:7])


def test_every_method_batches_any_number_and_compiles_once(workdir, test_images):
  run = vae.load_run(workdir)
  n, d, shape = 7, run.latent_dim, run.image_shape
  codes = run.encode(test_images[:n])
  assert codes["mean"].shape == (n, d)
  if "scale" in codes:
    assert codes["scale"].shape == (n, d) and (codes["scale"] > 0).all()
  if "scale_tril" in codes:
    assert codes["scale_tril"].shape == (n, d, d)
    np.testing.assert_array_equal(np.triu(codes["scale_tril"], 1), 0.0)
  many = run.encode(test_images)  # more images than one batch: padded batches
  np.testing.assert_array_equal(many["mean"][:n], codes["mean"])
  assert run._programs["encode"]._cache_size() == 1  # pylint: disable=protected-access

  draws = run.sample_posterior(test_images[:n], seed=3)
  assert draws.shape == (n, d) and np.isfinite(draws).all()
  np.testing.assert_array_equal(draws, run.sample_posterior(test_images[:n], seed=3))
  assert not np.array_equal(draws, run.sample_posterior(test_images[:n], seed=4))

  pictures = run.reconstruct(test_images[:n])
  assert pictures.shape == (n,) + shape and 0 <= pictures.min() and pictures.max() <= 1
  np.testing.assert_allclose(pictures, run.decode(codes["mean"]), atol=1e-6)
  np.testing.assert_allclose(run.decode(codes["mean"][0]), pictures[:1], atol=1e-6)

  samples = run.sample(5, seed=1)
  assert samples.shape == (5,) + shape and np.isfinite(samples).all()
  line = run.interpolate(test_images[0], test_images[1], num=4)
  assert line.shape == (4,) + shape
  np.testing.assert_allclose(line[[0, -1]], pictures[:2], atol=1e-5)


def test_best_and_older_steps_load(workdir):
  best = vae.load_run(workdir, step="best")
  assert best.step == json.loads((pathlib.Path(workdir) / "best.json").read_text())["step"]
  assert vae.load_run(pathlib.Path(workdir), step=10).step == 10  # a Path does too


def test_a_run_saved_by_an_older_version_loads_with_its_numbers(tmp_path):
  """The run of tests/test_old_runs.py: its test split at K = 50 gives the log p(x) that
  the code of its time wrote."""
  workdir = tmp_path / "run"
  shutil.copytree(OLD_RUN, workdir)
  run = vae.load_run(str(workdir))
  expected = json.loads((OLD_RUN / "expected_eval_test.json").read_text())
  scores = run.score(data.load_split(run.config.data, "test"), num_importance_samples=50)
  assert float(np.mean(scores["log_px"])) == pytest.approx(expected["log_px"], rel=1e-6)


@pytest.mark.parametrize("images, message", [
    (np.zeros((3, 8, 8)), None),  # (N, H, W) of one channel is fine
    (np.zeros((3, 28, 28, 1), np.float32), r"shape \(3, 28, 28, 1\); expected images "
     r"shaped \(N, 8, 8, 1\) or one image \(8, 8, 1\)"),
    (np.full((2, 8, 8, 1), 2.0), r"floats outside \[0, 1\] \(min 2.0, max 2.0\)"),
    (np.full((2, 8, 8, 1), np.nan), r"floats outside \[0, 1\]"),
    (np.zeros((2, 8, 8, 1), np.int64), r"dtype int64; use uint8 \(0..255\), float in"),
    ([["a"]], r"shape \(1, 1\)"),
])
def test_bad_images_are_one_line_naming_what_was_expected(images, message):
  run = vae.load_run(str(OLD_RUN))
  if message is None:
    assert run.encode(images)["mean"].shape == (3, run.latent_dim)
    return
  with pytest.raises(ValueError, match=message) as error:
    run.encode(images)
  assert "\n" not in str(error.value)
  with pytest.raises(ValueError, match=message):  # the evaluator checks them too
    evaluation.evaluate_params(run.model, run.params, images, 0, run.config.eval, False)


def test_bad_codes_and_counts_are_one_line():
  run = vae.load_run(str(OLD_RUN))
  with pytest.raises(ValueError, match=rf"z has shape \(2, 3\).*\(N, {run.latent_dim}\)"):
    run.decode(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="num=0 must be an int >= 1"):
    run.sample(0)
  with pytest.raises(ValueError, match="num=1 must be an int >= 2"):
    run.interpolate(np.zeros((8, 8, 1)), np.zeros((8, 8, 1)), num=1)


def test_missing_runs_and_checkpoints_are_one_line(tmp_path):
  with pytest.raises(ValueError, match="does not exist"):
    vae.load_run(str(tmp_path / "nothing"))
  with pytest.raises(ValueError, match="holds no run"):
    vae.load_run(str(tmp_path))
  with pytest.raises(ValueError, match=r"no checkpoint of step 7; it has \[10\]"):
    vae.load_run(str(OLD_RUN), step=7)
  with pytest.raises(ValueError, match="step='last' must be None"):
    vae.load_run(str(OLD_RUN), step="last")


def test_a_damaged_checkpoint_is_one_line(tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(OLD_RUN, workdir)
  cut = 0
  for path in (workdir / "checkpoints" / "10").rglob("*"):
    if path.is_file() and path.parent.name == "d":  # array data: cut as a crash would
      path.write_bytes(path.read_bytes()[:10])
      cut += 1
  assert cut
  # In a subprocess: orbax's reads still in flight after the failed restore report to
  # asyncio later, which pytest would pin on whichever test runs next.
  script = ("import sys, vae\ntry:\n  vae.load_run(sys.argv[1])\nexcept ValueError as e:\n"
            "  print(repr(str(e)))\n")
  done = subprocess.run([sys.executable, "-c", script, str(workdir)], capture_output=True,
                        text=True, timeout=300, cwd=str(OLD_RUN.parents[2]))
  message = (done.stdout.strip().splitlines() or [""])[-1]
  assert "damaged" in message and "\\n" not in message, done.stdout + done.stderr[-2000:]


def test_on_two_devices_a_loaded_run_gives_the_numbers_of_one():
  """Batches split over 2 forced CPU devices (a subprocess: the device count is fixed at
  start-up) give what one device gives."""
  script = (
      "import json, sys, numpy as np, vae\n"
      "run = vae.load_run(sys.argv[1])\n"
      "images = vae.load_split(run.config.data, 'test')[:150]\n"
      "import jax; assert jax.device_count() == 2\n"
      "print(json.dumps({'log_px': run.score(images, 20)['log_px'].tolist(),\n"
      "                  'mean': run.encode(images)['mean'].tolist()}))\n")
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "JAX_PLATFORMS": "cpu"}
  done = subprocess.run([sys.executable, "-c", script, str(OLD_RUN)], capture_output=True,
                        text=True, timeout=600, env=env, cwd=str(OLD_RUN.parents[2]))
  assert done.returncode == 0, done.stderr[-3000:]
  two = json.loads(done.stdout.strip().splitlines()[-1])
  run = vae.load_run(str(OLD_RUN))
  images = data.load_split(run.config.data, "test")[:150]
  np.testing.assert_allclose(two["log_px"], run.score(images, 20)["log_px"], rtol=1e-5)
  np.testing.assert_allclose(two["mean"], run.encode(images)["mean"], rtol=1e-5, atol=1e-6)
