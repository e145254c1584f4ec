"""scripts/benchmark.py: its --quick smoke run, and the FLOP counts its figures rest on.

No timing is asserted anywhere: the figures depend on the machine and its load.
"""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scripts.bench import flops, subjects, yardstick
from vae.models import build_model
from vae.training import update

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RATE_KEYS = {"examples_per_s", "seconds_per_call", "first_call_s", "compile_s"}


def test_quick_run_writes_every_section(tmp_path):
  output = tmp_path / "benchmark.json"
  done = subprocess.run(
      [sys.executable, "-m", "scripts.benchmark", "--quick",
       f"--output={output}"], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads(output.read_text())
  assert {"command", "machine", "settings", "training", "iwae", "sweep", "data_parallel",
          "main_command", "targets", "markdown", "seconds"} <= set(results)
  assert results["settings"]["quick"]
  for row in results["training"]:
    for subject in ("trainer", "trainer_dispatch1", "yardstick", "roofline"):
      assert RATE_KEYS <= set(row[subject]), subject
    assert {"roofline_fraction", "gflops"} <= set(row["trainer"])
    assert {"trainer_vs_yardstick", "flops_per_step", "peak_rss_mib"} <= set(row)
    assert row["flops_per_step"] == row["yardstick_flops_per_step"]
  (iwae,) = results["iwae"]
  assert {"examples_per_s", "projected_10000_s", "peak_rss_mib", "roofline_fraction",
          "log_px"} <= set(iwae)
  (sweep,) = results["sweep"]
  assert {"sequential_s", "vectorized_s", "speedup", "num_points"} <= set(sweep)
  assert sorted(r["device_count"] for r in results["data_parallel"]) == [1, 2]
  assert [main["cache"] for main in results["main_command"]] == ["cold", "warm"]
  for main in results["main_command"]:
    assert main["config"] == "tiny" and main["num_logs"] == 2 and main["median_steps_per_s"] > 0
    assert 0 < main["first_step_s"] < main["seconds"]
  assert all({"target", "value", "met"} <= set(t) for t in results["targets"])
  markdown = (tmp_path / "benchmark.md").read_text()
  assert markdown == results["markdown"] and "| model | batch |" in markdown


@pytest.mark.parametrize("fn, shapes", [
    (lambda a, b: a @ b, [(5, 7), (7, 3)]),
    (lambda a, b: jnp.einsum("bij,bjk->bik", a, b), [(2, 5, 7), (2, 7, 3)]),
    (lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 2), "SAME",
                                               dimension_numbers=flops.NHWC),
     [(2, 9, 9, 3), (3, 3, 3, 4)]),
    (lambda x, w: jax.lax.conv_transpose(x, w, (2, 2), "SAME",
                                         dimension_numbers=flops.NHWC),
     [(2, 5, 5, 3), (3, 3, 3, 4)]),
])
def test_flops_match_xla_cost_analysis(fn, shapes):
  """The roofline replays the forward and gradient matmuls/convolutions, nothing else,
  so XLA's count of its FLOPs must be ours (holes of dilated convolutions excluded)."""
  args = [jnp.ones(shape) for shape in shapes]
  grad_fn = jax.grad(lambda *a: jnp.sum(jnp.tanh(fn(*a))), argnums=(0, 1))
  equations = flops.matmul_equations(jax.make_jaxpr(grad_fn)(*args))
  assert len(equations) == 3  # forward, and the gradients of both operands
  roofline, roofline_flops = flops.make_roofline(equations, jax.random.PRNGKey(0))
  assert roofline_flops == flops.total_flops(equations)
  expected = jax.jit(roofline.func).lower(*roofline.args).cost_analysis()["flops"]
  assert roofline_flops == expected
  jax.block_until_ready(roofline())


def test_scan_bodies_count_once_per_iteration():
  def scanned(a, b):
    return jax.lax.scan(lambda c, _: (c @ b, None), a, None, length=4)[0]
  a, b = jnp.ones((3, 3)), jnp.ones((3, 3))
  equations = flops.matmul_equations(jax.make_jaxpr(scanned)(a, b))
  assert flops.total_flops(equations) == 4 * 2 * 27


@pytest.mark.parametrize("name", list(subjects.YARDSTICK_MODELS))
def test_yardstick_has_the_models_matmuls(name):
  """The hand-written step does the same matmuls and convolutions as the trainer's."""
  config = subjects.MODELS[name][1]()
  model = build_model(config.model, subjects.IMAGE_SHAPE)
  key = jax.random.PRNGKey(0)
  x = jnp.asarray(np.random.default_rng(0).random((2,) + subjects.IMAGE_SHAPE) < 0.5,
                  jnp.float32)
  params = jax.eval_shape(model.init, key, x.mean(axis=0))
  trainer = flops.step_matmuls(update.make_loss_fn(model, config.loss), params, key, x,
                               jnp.float32(1.0))
  _, loss_fn, loss_args = yardstick.make_yardstick(config.model, np.asarray(x), key)
  hand_written = flops.step_matmuls(loss_fn, *loss_args)
  assert flops.total_flops(hand_written) == flops.total_flops(trainer) > 0
  shapes = lambda eqns: sorted(e.outvars[0].aval.shape for e, _ in eqns)  # noqa: E731
  assert len(shapes(hand_written)) == len(shapes(trainer))


def test_sweep_benchmark_cli_runs(tmp_path):
  output = tmp_path / "sweep.json"
  done = subprocess.run(
      [sys.executable, "-m", "scripts.benchmark_sweep",
       "--config=configs/tiny.py", "--num_points=2", "--batch_sizes=8", "--num_steps=5",
       "--axis=model.latent_dim", f"--output={output}"], cwd=REPO, capture_output=True,
      text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  (row,) = json.loads(output.read_text())["rows"]
  assert row["num_points"] == 2 and row["sequential_s"] > 0 and row["vectorized_s"] > 0
  assert "| model.latent_dim | 8 | 2 | 5 |" in done.stdout  # latent sizes 2 and 5, padded


def test_diagnostics_cost_prints_its_table():
  done = subprocess.run(
      [sys.executable, "-m", "scripts.diagnostics_cost",
       "--config=configs/tiny.py", "--repeats=1", "--num_importance_samples=5"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  (row,) = [line for line in done.stdout.splitlines() if line.startswith("| 5 |")]
  cells = [cell.strip() for cell in row.strip("|").split("|")]
  before, with_latents, alone, aggregate, added = (float(c) for c in cells[1:6])
  assert min(before, with_latents, alone, aggregate) > 0
  assert added == pytest.approx(alone + aggregate, rel=0.01) and cells[6].endswith("%")


def test_gradient_snr_per_estimator_on_a_tiny_model():
  """scripts/gradient_snr.py's measurement (scripts/bench/snr.py): DReG and STL coincide at K = 1, DReG leaves
  the decoder's SNR unchanged, and the decoder's SNR rises with K."""
  from scripts.bench import snr  # pylint: disable=import-outside-toplevel
  from vae.configs import tiny  # pylint: disable=import-outside-toplevel
  model = build_model(tiny.get_config().model, (8, 8, 1))
  params = model.init(jax.random.PRNGKey(0))
  x = (jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 1)) > 0.5).astype(jnp.float32)
  table = {(k, e): snr.snr(model, params, x, k, e, num_draws=30)
           for k in (1, 8) for e in ("reparameterized", "stl", "dreg")}
  assert table[(1, "stl")] == pytest.approx(table[(1, "dreg")], rel=1e-4)
  for k in (1, 8):
    assert table[(k, "dreg")]["decoder"] == pytest.approx(
        table[(k, "reparameterized")]["decoder"], rel=1e-4)
  assert table[(8, "reparameterized")]["decoder"] > table[(1, "reparameterized")]["decoder"]
  assert all(np.isfinite(v) and v > 0 for snrs in table.values() for v in snrs.values())


def test_recipe_compare_prints_its_tables_and_says_where_torch_is_missing(tmp_path):
  done = subprocess.run(
      [sys.executable, "-m", "scripts.recipe_compare", "--epochs=1",
       "--seeds=0", "--recipes=pytorch,flax_init", "--num_importance_samples=5",
       f"--out={tmp_path}", "--notorch"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  rows = {line.split(" | ")[0]: line for line in done.stdout.splitlines() if " | " in line}
  assert {"pytorch", "flax_init"} <= set(rows)
  assert "The PyTorch example's loop was not run (--notorch)" in done.stdout
  (result,) = json.loads((tmp_path / "recipe_compare.json").read_text())[:1]
  assert result["epochs"] == 1 and 50 < result["nll"][0]["test"] < 600  # nats per digit


def test_the_pytorch_examples_weights_fit_our_model_of_its_shape():
  from scripts.bench import pytorch_vae  # pylint: disable=import-outside-toplevel
  from vae.configs import default  # pylint: disable=import-outside-toplevel
  shapes = {"fc1": (400, 784), "fc21": (20, 400), "fc22": (20, 400), "fc3": (400, 20),
            "fc4": (784, 400)}
  weights = {}
  for name, (out, fan_in) in shapes.items():
    weights[f"{name}.weight"] = np.random.default_rng(0).normal(size=(out, fan_in))
    weights[f"{name}.bias"] = np.zeros(out)
  config = default.get_config().model
  config.hidden_sizes, config.latent_dim = (400,), 20
  ours = build_model(config, (28, 28, 1)).init(jax.random.PRNGKey(0))
  theirs = pytorch_vae.as_flax_params(weights)
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  assert jax.tree.map(np.shape, ours) == jax.tree.map(np.shape, theirs)
  np.testing.assert_array_equal(theirs["encoder"]["Dense_0"]["kernel"], weights["fc1.weight"].T)


def test_load_run_speed_prints_both_times_and_their_ratio():
  done = subprocess.run(
      [sys.executable, "-m", "scripts.load_run_speed", "--quick"], cwd=REPO,
      capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  summary, header, _, row = done.stdout.strip().splitlines()[-4:]
  assert summary.startswith("200 images, K = 20: evaluate ") and summary.endswith(
      "mean log p(x) the same: True")
  assert header.startswith("| images | K | evaluate_run (s)")
  images, k, evaluate_s, score_s, ratio = (float(c) for c in row.strip("|").split("|"))
  assert (images, k) == (200, 20) and evaluate_s > 0 and score_s > 0
  assert math.isclose(ratio, score_s / evaluate_s, rel_tol=0.05)
