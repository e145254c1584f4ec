r"""Throughput, compile time and memory of training, evaluation and sweeps on this machine.

  python -m scripts.benchmark [--output=runs/benchmark.json]   # 15-20 min on 2 cores
  python -m scripts.benchmark --quick                          # smoke test, < 1 min

Writes the figures to --output (JSON) and the tables to the same path with `.md`, and
prints the tables. For each model (the default config; Burda et al.'s 784-200-200-50
tanh MLP; the tutorials' 784-400-20 relu MLP; the MNIST conv config) and batch size:

* training throughput of the library's own jitted block (`vae.training.update.make_train_block`,
  state stacked over one run as `vae.training.runs.RunGroup` builds it), examples/s in
  the steady state: the median over --repeats of the mean time per call, after warm-up;
  with T = the config's `steps_per_dispatch` steps per call (fewer for big batches, see
  --max_examples_per_call) and with 1 step per call (the dispatch overhead);
* the same for a yardstick: a minimal hand-written step of the same model (plain `jnp`
  matmuls or `lax` convolutions, single-sample ELBO, `optax.adam`, jitted with donation,
  no Flax, no metrics), one step per call;
* FLOPs of a step: 2 * multiply-adds of every matmul and convolution of the forward and
  backward pass (`dot_general` and `conv_general_dilated` in the jaxpr of the trainer's
  `value_and_grad`; the holes of dilated convolutions are not counted, as in XLA's cost
  analysis), and the roofline: exactly those matmuls and convolutions replayed alone in
  one jitted program on random operands (no model, no elementwise work), timed the same
  way but waiting for every call. GFLOP/s = FLOPs per step / seconds per step;
  "% roofline" = GFLOP/s / roofline GFLOP/s (a pipelined step can pass 100% where the
  roofline's calls are short);
* compile time (first call minus a steady call) and peak resident memory (ru_maxrss) of
  a fresh process per (model, batch size), taken after the trainer's first calls.

Then, each in a fresh process of its own:

* IWAE log p(x) evaluation with `vae.evaluation.Evaluator` at K = 5000 (random-init params;
  the speed does not depend on the weights) on test images of the embedded MNIST tiled
  to N, after one warm-up batch: examples/s, GFLOP/s against the roofline of the
  evaluation's own matmuls, compile time, the projected time for 10,000 images
  (compilation + 10,000 / throughput) and peak memory;
* the vectorised beta sweep (`scripts/benchmark_sweep.py`: N points in one program)
  against the same points one after another, whole wall time including compilation,
  each mode in a fresh process;
* data-parallel training of 784-400-20 on 1 and 2 host devices
  (XLA_FLAGS=--xla_force_host_platform_device_count=N, the batch sharded over "data");
* the README's main command (`experiments.train` on configs/default.py, with its
  logging, evaluations and checkpoints), with empty compilation and data caches and then
  warm: wall time, time to the first step, and the median steps/s of its progress lines
  against the trainer's steady state at the same batch size.

--quick runs every section on one model, batch 8, one repeat, K = 20, a one-point
sweep and the main command on configs/tiny.py, in this process where it can and with XLA's optimisations off:
it checks that the script works (tests/test_benchmark.py), its figures mean nothing.

The figures are wall-clock times: other processes on the machine slow them down (the
JSON records the load average before and after).

The parts, one job each, are in scripts/bench/: `subjects` (the models and the trainer's
block), `timing`, `flops` (FLOP counting and the roofline), `yardstick`, `workers` (one
measurement per fresh process) and `report` (targets and tables); this file holds the
command line and the sections.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Any

import jax
import numpy as np
import optax
from absl import app, flags, logging

from scripts import benchmark_sweep
from scripts.bench.report import markdown, targets
from scripts.bench.subjects import IMAGE_SHAPE, MODELS
from scripts.bench.workers import WORKERS, run_worker
from vae import data
from vae.configs import default
from vae.runtime import cli

FLAGS = flags.FLAGS
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ sections


def _settings(quick: bool) -> dict[str, Any]:
  """Every size of the run, from the flags and the --quick defaults."""
  def pick(flag_value, full, fast):
    return flag_value if flag_value is not None else (fast if quick else full)

  models = FLAGS.models or (["mlp_400_20"] if quick else list(MODELS))
  unknown = [m for m in models if m not in MODELS]
  if unknown:
    raise app.UsageError(f"--models: unknown {unknown}; valid names are {list(MODELS)}.")
  iwae_models = ["mlp_400_20"] if quick else models
  iwae_examples = {m: 8 if quick else {"mlp_400_20": 300, "default": 100,
                                        "mnist_conv": 4}.get(m, 200) for m in iwae_models}
  if FLAGS.iwae_num_examples:
    for item in FLAGS.iwae_num_examples.split(","):
      model, _, number = item.rpartition("=")
      for m in [model] if model else iwae_models:
        iwae_examples[m] = int(number)
  sweep_grid = pick(FLAGS.sweep_grid, ["8@128"], ["1@8"])
  return dict(
      quick=quick, models=models,
      batch_sizes=[int(b) for b in pick(FLAGS.batch_sizes, [32, 128, 256, 1024], [8])],
      repeats=pick(FLAGS.repeats, 5, 1), min_seconds=0.0 if quick else 0.3,
      max_examples_per_call=FLAGS.max_examples_per_call,
      iwae_models=iwae_models, iwae_num_examples=iwae_examples,
      iwae_num_samples=pick(FLAGS.iwae_num_samples, 5000, 20),
      iwae_batch_size={m: 4 if quick or m == "mnist_conv" else 100 for m in iwae_models},
      iwae_chunk_size=10 if quick else 100,
      sweep_base="tiny" if quick else "default",
      main_command_config="tiny" if quick else "default",
      sweep_grid=[tuple(int(v) for v in item.split("@")) for item in sweep_grid],
      sweep_num_steps=pick(FLAGS.sweep_num_steps, 300, 5),
      data_parallel_model="mlp_400_20",
      data_parallel_batch_sizes=[
          int(b) for b in pick(FLAGS.data_parallel_batch_sizes, [128, 1024], [8])],
      data_parallel_devices=[1, 2],
      sections=list(FLAGS.sections))


def _steps_per_call(settings: dict[str, Any], model: str, batch_size: int) -> int:
  """Training steps per call: the model config's steps_per_dispatch, fewer for big batches."""
  configured = 2 if settings["quick"] else MODELS[model][1]().train.steps_per_dispatch
  return max(1, min(configured, settings["max_examples_per_call"] // batch_size))


def _log(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def section_train(settings, paths) -> list[dict[str, Any]]:
  rows = []
  for model in settings["models"]:
    for batch_size in settings["batch_sizes"]:
      row = run_worker(dict(kind="train", model=model, batch_size=batch_size,
                            steps_per_dispatch=_steps_per_call(settings, model, batch_size),
                            repeats=settings["repeats"], min_seconds=settings["min_seconds"],
                            images=paths["train"]), in_process=settings["quick"])
      rows.append(row)
      yardstick = (f"{row['yardstick']['examples_per_s']:.0f}" if row["yardstick"]
                   else "none for this model")
      _log(f"train {model} batch {batch_size}: trainer "
           f"{row['trainer']['examples_per_s']:.0f} ex/s (T=1: "
           f"{row['trainer_dispatch1']['examples_per_s']:.0f}), yardstick {yardstick}, "
           f"roofline {row['roofline']['gflops']:.1f} GFLOP/s, trainer "
           f"{100 * row['trainer']['roofline_fraction']:.0f}% of it")
  return rows


def section_iwae(settings, paths) -> list[dict[str, Any]]:
  rows = []
  for model in settings["iwae_models"]:
    row = run_worker(dict(kind="iwae", model=model, images=paths["test"],
                          num_examples=settings["iwae_num_examples"][model],
                          num_samples=settings["iwae_num_samples"],
                          batch_size=settings["iwae_batch_size"][model],
                          chunk_size=settings["iwae_chunk_size"],
                          repeats=settings["repeats"], min_seconds=settings["min_seconds"]),
                     in_process=settings["quick"])
    rows.append(row)
    _log(f"iwae {model} K={row['num_importance_samples']}: "
         f"{row['examples_per_s']:.2f} ex/s, 10,000 in {row['projected_10000_s'] / 60:.1f} "
         f"min, peak {row['peak_rss_mib']:.0f} MiB")
  return rows


def section_sweep(settings, paths) -> list[dict[str, Any]]:
  del paths
  rows = []
  for num_points, batch_size in settings["sweep_grid"]:
    seconds = {}
    for mode in benchmark_sweep.MODES:
      seconds[mode] = run_worker(dict(
          kind="sweep", base=settings["sweep_base"], mode=mode, num_points=num_points,
          batch_size=batch_size, num_steps=settings["sweep_num_steps"]),
          in_process=settings["quick"])["seconds"]
    rows.append(benchmark_sweep.row(batch_size, num_points, settings["sweep_num_steps"],
                                    seconds["sequential"], seconds["vectorized"]))
    _log(f"sweep {num_points} points, batch {batch_size}: sequential "
         f"{seconds['sequential']:.1f} s, vectorised {seconds['vectorized']:.1f} s")
  return rows


def section_data_parallel(settings, paths) -> list[dict[str, Any]]:
  rows = []
  for devices in settings["data_parallel_devices"]:
    flags_value = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""),
                                         f"--xla_force_host_platform_device_count={devices}"]))
    result = run_worker(dict(kind="data_parallel", model=settings["data_parallel_model"],
                             batch_sizes=settings["data_parallel_batch_sizes"],
                             steps_per_dispatch={
                                 b: _steps_per_call(settings, settings["data_parallel_model"], b)
                                 for b in settings["data_parallel_batch_sizes"]},
                             repeats=settings["repeats"], min_seconds=settings["min_seconds"],
                             images=paths["train"]), env={"XLA_FLAGS": flags_value},
                        in_process=settings["quick"] and devices == jax.device_count())
    for row in result["rows"]:
      row["peak_rss_mib"] = result["peak_rss_mib"]
      rows.append(row)
      _log(f"data parallel {devices} device(s), batch {row['batch_size']}: "
           f"{row['examples_per_s']:.0f} ex/s")
  return rows


_PROGRESS = re.compile(r"^I\d{4} (\d\d):(\d\d):(\d\d\.\d+) .*\] step (\d+)/\d+ ", re.M)


def _run_main_command(config: str, caches: str) -> dict[str, Any]:
  """One fresh process of experiments.train on configs/<config>.py with its compilation
  and data caches in `caches`: whole seconds, and when its first step started (the first
  progress line's time less its steps at the median logged rate)."""
  env = {**os.environ, "VAE_JAX_CACHE_DIR": os.path.join(caches, "xla"),
         "XDG_CACHE_HOME": caches}
  with tempfile.TemporaryDirectory() as workdir:
    command = [sys.executable, "-m", "experiments.train", f"--config=configs/{config}.py",
               f"--workdir={workdir}"]
    start, now = time.perf_counter(), time.time()
    wall = time.localtime(now)  # absl's log lines carry the local time of day
    start_of_day = wall.tm_hour * 3600 + wall.tm_min * 60 + wall.tm_sec + now % 1
    done = subprocess.run(command, cwd=_REPO, capture_output=True,
                          text=True, check=False, env=env)
    seconds = time.perf_counter() - start
    if done.returncode:
      raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      rates = [r["steps_per_sec"] for r in map(json.loads, f) if r["split"] == "train"]
  hours, minutes, secs, step = _PROGRESS.search(done.stderr).groups()
  logged = int(hours) * 3600 + int(minutes) * 60 + float(secs) - start_of_day
  median_rate = float(np.median(rates))
  return dict(seconds=seconds, first_step_s=logged - int(step) / median_rate,
              median_steps_per_s=median_rate, num_logs=len(rates))


def section_main_command(settings, paths) -> list[dict[str, Any]]:
  """The README's main command as a user runs it: a fresh process of experiments.train,
  with its logging, evaluations and checkpoints, twice: with empty compilation and data
  caches ("cold", a first run) and then with the caches the first left ("warm", a rerun
  or the next sweep point). Whole seconds, time to the first step, and the median of its
  progress lines' steps/s (`steps_per_sec` of metrics.jsonl, which leaves out evaluations
  and checkpoints) against the trainer's steady state in the training section."""
  del paths
  config = settings["main_command_config"]
  rows = []
  with tempfile.TemporaryDirectory() as caches:
    for cache in ("cold", "warm"):
      row = dict(command=f"python -m experiments.train --config=configs/{config}.py "
                         "--workdir=...", config=config, cache=cache,
                 **_run_main_command(config, caches))
      _log(f"main command, {cache} caches: {row['seconds']:.0f} s, first step after "
           f"{row['first_step_s']:.1f} s, progress lines' median "
           f"{row['median_steps_per_s']:.1f} steps/s")
      rows.append(row)
  return rows


SECTIONS = {"train": section_train, "iwae": section_iwae, "sweep": section_sweep,
            "data_parallel": section_data_parallel, "main_command": section_main_command}


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _write_inputs(directory: str, quick: bool) -> dict[str, str]:
  """Saves train and test images (N, 28, 28, 1) as .npy files for the workers.

  The embedded MNIST splits; with `quick`, random binary images instead (reading the
  embedded set takes seconds, and the smoke test's figures mean nothing).
  """
  if quick:
    rng = np.random.default_rng(0)
    splits = {split: (rng.random((n,) + IMAGE_SHAPE) < 0.13).astype(np.float32)
              for split, n in (("train", 64), ("test", 16))}
  else:
    data_config = default.get_config().data
    splits = {split: data.load_split(data_config, split) for split in ("train", "test")}
  paths = {}
  for split, images in splits.items():
    paths[split] = os.path.join(directory, f"{split}.npy")
    np.save(paths[split], images)
  return paths


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.quiet_dependency_logs()
  logging.set_verbosity(logging.WARNING)
  if FLAGS.worker:
    task = json.loads(FLAGS.worker)
    result = WORKERS[task["kind"]](task)
    with open(FLAGS.worker_output, "w") as f:
      json.dump(result, f)
    return
  unknown = [s for s in FLAGS.sections if s not in SECTIONS]
  if unknown:
    raise app.UsageError(f"--sections: unknown {unknown}; valid are {list(SECTIONS)}.")
  start = time.perf_counter()
  settings = _settings(FLAGS.quick)
  if settings["quick"]:
    # A smoke test: compile fast (as tests/conftest.py does), in this process and workers.
    jax.config.update("jax_disable_most_optimizations", True)
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
  results: dict[str, Any] = dict(
      command=" ".join(["python -m scripts.benchmark"] + [shlex.quote(a)
                                                          for a in sys.argv[1:]]),
      machine=dict(cpu=_cpu_name(), cpu_count=os.cpu_count(), platform=platform.platform(),
                   python=platform.python_version(), jax=jax.__version__,
                   flax=_version("flax"), optax=optax.__version__,
                   xla_flags=os.environ.get("XLA_FLAGS", ""),
                   load_average_before=list(os.getloadavg())),
      settings=settings)
  with tempfile.TemporaryDirectory() as tmp:
    paths = _write_inputs(tmp, settings["quick"])
    for name, section in SECTIONS.items():
      key = "training" if name == "train" else name
      results[key] = section(settings, paths) if name in settings["sections"] else []
  results["machine"]["load_average_after"] = list(os.getloadavg())
  results["targets"] = targets(results)
  results["seconds"] = time.perf_counter() - start
  results["markdown"] = markdown(results)
  output_dir = os.path.dirname(os.path.abspath(FLAGS.output))
  os.makedirs(output_dir, exist_ok=True)
  with open(FLAGS.output, "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.splitext(FLAGS.output)[0] + ".md", "w") as f:
    f.write(results["markdown"])
  print(results["markdown"])
  print(f"Wrote {FLAGS.output} in {results['seconds']:.0f} s.")


def _version(package: str) -> str:
  import importlib.metadata  # pylint: disable=import-outside-toplevel
  return importlib.metadata.version(package)


def _define_flags() -> None:
  """The command line; defined only when run as a script, so importing defines no flags."""
  flags.DEFINE_bool("quick", False, "Tiny sizes, one model, one batch size, one repeat, "
                    "in this process where it can: a smoke test of every section (its "
                    "figures mean nothing).")
  flags.DEFINE_string("output", "runs/benchmark.json",
                      "JSON path; the Markdown tables go to the same path with .md.")
  flags.DEFINE_list("models", None,
                    "Models to time (default: all of MODELS; quick: mlp_400_20).")
  flags.DEFINE_list("batch_sizes", None,
                    "Training batch sizes (default 32,128,256,1024; quick: 8).")
  flags.DEFINE_integer("repeats", None, "Timed repeats per figure, the median is reported "
                       "(default 5; quick: 1).")
  flags.DEFINE_integer("max_examples_per_call", 4096,
                       "Training calls run min(the model config's steps_per_dispatch, "
                       "this // batch) steps, so that a call of a big batch stays short.")
  flags.DEFINE_list("sections", list(SECTIONS), "Sections to run.")
  flags.DEFINE_string("iwae_num_examples", None,
                      "Images timed per IWAE measurement (after one warm-up batch): one "
                      "number, or model=number pairs (default: mlp_400_20=300, "
                      "default=100, burda_mlp=200, mnist_conv=4; quick: 8).")
  flags.DEFINE_integer("iwae_num_samples", None, "K of IWAE (default 5000; quick: 20).")
  flags.DEFINE_list("sweep_grid", None,
                    "points@batch measurements of the sweep section (default 8@128; e.g. "
                    "2@128,4@128,8@32,8@512 for the trend; quick: 1@8).")
  flags.DEFINE_integer("sweep_num_steps", None,
                       "Training steps per sweep point, a multiple of the base config's "
                       "steps_per_dispatch (default 300; quick: 5).")
  flags.DEFINE_list("data_parallel_batch_sizes", None,
                    "Batch sizes of the data-parallel section (default 128,1024; quick: 8).")
  flags.DEFINE_string("worker", None, "Internal: run one measurement (a JSON task) in this "
                      "process and write its JSON result to --worker_output.")
  flags.DEFINE_string("worker_output", None, "Internal: see --worker.")

if __name__ == "__main__":
  _define_flags()
  app.run(main)
