"""One measurement each, run in a fresh process of scripts/benchmark.py (`run_worker`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from scripts import benchmark_sweep
from scripts.bench import timing
from scripts.bench.flops import make_roofline, matmul_equations, step_matmuls, total_flops
from scripts.bench.subjects import IMAGE_SHAPE, MODELS, YARDSTICK_MODELS, make_trainer
from scripts.bench.timing import peak_rss_mib, time_calls
from scripts.bench.yardstick import make_yardstick
from vae import data
from vae import evaluation as evaluate
from vae.configs import default, tiny
from vae.models import build_model
from vae.training import update

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

def _train_images(path: str) -> np.ndarray:
  return np.load(path, mmap_mode="r")


def _block(images: np.ndarray, config: ml_collections.ConfigDict, batch_size: int,
           steps: int) -> np.ndarray:
  """(steps, batch_size, 28, 28, 1) dynamically binarised training batches."""
  batches = data.TrainBatches(np.asarray(images), batch_size, config.seed, True)
  return batches.block(0, steps)


def worker_train(task: dict[str, Any]) -> dict[str, Any]:
  """Trainer (T steps per call and 1), roofline and (for YARDSTICK_MODELS) yardstick of
  one model and batch."""
  name, batch_size, steps = task["model"], task["batch_size"], task["steps_per_dispatch"]
  config = MODELS[name][1]()
  config.train.batch_size = batch_size
  images = _train_images(task["images"])
  block = _block(images, config, batch_size, steps)
  rss_start = peak_rss_mib()

  trainer, model, params = make_trainer(config, block)
  trainer_1, _, _ = make_trainer(config, block[:1])
  first_calls = {}
  for subject, call in (("trainer", trainer), ("trainer_dispatch1", trainer_1)):
    start = time.perf_counter()
    jax.block_until_ready(call())
    first_calls[subject] = time.perf_counter() - start
  rss_trainer = peak_rss_mib()

  loss_fn = update.make_loss_fn(model, config.loss)
  key = jax.random.PRNGKey(0)
  equations = step_matmuls(loss_fn, params, key, jnp.asarray(block[0]), jnp.float32(1.0))
  flops = total_flops(equations)
  roofline, roofline_flops = make_roofline(equations, key)
  subjects = {"trainer": trainer, "trainer_dispatch1": trainer_1, "roofline": roofline}
  yard_flops = None
  if name in YARDSTICK_MODELS:
    subjects["yardstick"], yard_loss, yard_args = make_yardstick(config.model, block[0], key)
    yard_flops = total_flops(step_matmuls(yard_loss, *yard_args))
  results = time_calls(subjects, task["repeats"], task["min_seconds"],
                       block_each=("roofline",))
  results["trainer"]["first_call_s"] = first_calls["trainer"]
  results["trainer_dispatch1"]["first_call_s"] = first_calls["trainer_dispatch1"]

  out = dict(model=name, description=MODELS[name][0], batch_size=batch_size,
             steps_per_dispatch=steps, device_count=jax.device_count(),
             num_params=int(sum(p.size for p in jax.tree.leaves(params))),
             flops_per_step=flops, yardstick_flops_per_step=yard_flops,
             matmuls_per_step=sum(t for _, t in equations))
  out["trainer"] = timing.rate(results["trainer"], steps * batch_size, steps * flops)
  out["trainer_dispatch1"] = timing.rate(results["trainer_dispatch1"], batch_size, flops)
  out["roofline"] = timing.rate(results["roofline"], batch_size, roofline_flops)
  out["yardstick"] = out["trainer_vs_yardstick"] = None
  if yard_flops is not None:
    out["yardstick"] = timing.rate(results["yardstick"], batch_size, yard_flops)
    out["trainer_vs_yardstick"] = (out["trainer"]["examples_per_s"]
                                   / out["yardstick"]["examples_per_s"])
  for subject in ("trainer", "trainer_dispatch1", "yardstick"):
    if out[subject] is not None:
      out[subject]["roofline_fraction"] = out[subject]["gflops"] / out["roofline"]["gflops"]
  out["peak_rss_mib_start"] = rss_start
  out["peak_rss_mib_trainer"] = rss_trainer
  out["peak_rss_mib"] = peak_rss_mib()
  return out


def worker_data_parallel(task: dict[str, Any]) -> dict[str, Any]:
  """The trainer's throughput with the batch sharded over this process's devices."""
  config = MODELS[task["model"]][1]()
  images = _train_images(task["images"])
  rows = []
  for batch_size in task["batch_sizes"]:
    config.train.batch_size = batch_size
    block = _block(images, config, batch_size, task["steps_per_dispatch"][str(batch_size)])
    trainer, _, _ = make_trainer(config, block)
    result = time_calls({"trainer": trainer}, task["repeats"], task["min_seconds"])
    rows.append(dict(model=task["model"], device_count=jax.device_count(),
                     batch_size=batch_size, steps_per_dispatch=len(block),
                     **timing.rate(result["trainer"], len(block) * batch_size, 0)))
    rows[-1].pop("gflops")
  return dict(rows=rows, peak_rss_mib=peak_rss_mib())


def worker_iwae(task: dict[str, Any]) -> dict[str, Any]:
  """`Evaluator.evaluate` at K importance samples on N tiled test images.

  One batch is evaluated first (compilation and warm-up), then the N images; the
  evaluation's matmuls and convolutions are counted and replayed alone as its roofline.
  """
  config = MODELS[task["model"]][1]()
  model = build_model(config.model, IMAGE_SHAPE)
  test = np.load(task["images"])
  images = np.resize(test, (task["num_examples"],) + test.shape[1:])
  params = model.init(jax.random.PRNGKey(0), test.mean(axis=0))
  eval_config = ml_collections.ConfigDict(dict(
      batch_size=min(task["batch_size"], len(images)),
      num_importance_samples=task["num_samples"], chunk_size=task["chunk_size"],
      num_elbo_samples=config.eval.num_elbo_samples,
      mi_num_examples=config.eval.mi_num_examples))
  evaluator = evaluate.Evaluator(model, eval_config)
  key = jax.random.PRNGKey(1)
  rss_start = peak_rss_mib()
  start = time.perf_counter()
  evaluator.evaluate(params, key, images[:eval_config.batch_size])
  first = time.perf_counter() - start
  start = time.perf_counter()
  summary = evaluator.evaluate(params, key, images)
  seconds = time.perf_counter() - start
  rss_eval = peak_rss_mib()
  rate = len(images) / seconds
  compile_s = max(0.0, first - eval_config.batch_size / rate)

  # FLOPs of one batch, from the same per-example function the Evaluator vmaps.
  per_example = jax.vmap(evaluate.make_example_metrics(model, eval_config),
                         in_axes=(None, None, 0, 0))
  # The prior is built inside (a hierarchy's holds callables, not arrays).
  batch_fn = lambda params, keys, x: per_example(params, model.prior(params), keys, x)
  batch = eval_config.batch_size
  equations = matmul_equations(jax.make_jaxpr(batch_fn)(
      params, jax.random.split(key, batch), jnp.asarray(images[:batch])))
  flops_per_example = total_flops(equations) / batch
  roofline, roofline_flops = make_roofline(equations, key)
  timed = time_calls({"roofline": roofline}, task["repeats"], task["min_seconds"],
                     block_each=("roofline",))["roofline"]
  roofline_gflops = roofline_flops / timed["median_s"] / 1e9
  gflops = flops_per_example * rate / 1e9
  return dict(model=task["model"], description=MODELS[task["model"]][0],
              num_importance_samples=task["num_samples"], num_examples=len(images),
              batch_size=batch, chunk_size=task["chunk_size"],
              seconds=seconds, examples_per_s=rate, first_batch_s=first,
              compile_s=compile_s, projected_10000_s=compile_s + 10000 / rate,
              gflop_per_example=flops_per_example / 1e9, gflops=gflops,
              roofline_gflops=roofline_gflops, roofline_fraction=gflops / roofline_gflops,
              log_px=summary["log_px"], peak_rss_mib_start=rss_start,
              peak_rss_mib=rss_eval)


def worker_sweep(task: dict[str, Any]) -> dict[str, Any]:
  """Whole wall time of one sweep mode, in this fresh process."""
  base = tiny.get_config() if task["base"] == "tiny" else default.get_config()
  configs = benchmark_sweep.sweep_configs(base, task["num_points"], task["batch_size"],
                                          task["num_steps"])
  benchmark_sweep.preload_data(base)
  with tempfile.TemporaryDirectory() as workdir:
    seconds = benchmark_sweep.time_mode(configs, task["mode"], workdir)
  return dict(seconds=seconds, peak_rss_mib=peak_rss_mib())


WORKERS = {"train": worker_train, "data_parallel": worker_data_parallel,
           "iwae": worker_iwae, "sweep": worker_sweep}


def run_worker(task: dict[str, Any], env: dict[str, str] | None = None,
               in_process: bool = False) -> dict[str, Any]:
  """Runs one task in a fresh Python process of this script; returns its JSON result.

  With `in_process` (--quick, where the figures mean nothing) the task runs here, which
  saves the start-up and the compilations a fresh process repeats.
  """
  start = time.perf_counter()
  if in_process:
    task = json.loads(json.dumps(task))  # As a worker process sees it.
    result = json.loads(json.dumps(WORKERS[task["kind"]](task)))
    result["worker_s"] = time.perf_counter() - start
    return result
  with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
    output = f.name
  command = [sys.executable, "-m", "scripts.benchmark", f"--worker={json.dumps(task)}",
             f"--worker_output={output}"]
  try:
    done = subprocess.run(command, cwd=_REPO, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, check=False)
    if done.returncode:
      raise RuntimeError(f"Worker {task} failed (exit {done.returncode}):\n"
                         f"{done.stderr[-4000:]}")
    with open(output) as f:
      result = json.load(f)
    result["worker_s"] = time.perf_counter() - start
    return result
  finally:
    os.remove(output)
