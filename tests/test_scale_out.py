"""Data parallelism: 2 devices, and 2 processes joined by jax.distributed, match 1 device.

Every run is a subprocess of the README's commands, on the tiny config with its training
set in 2 shards (as a 2-process run needs): forced CPU devices through XLA_FLAGS, and two
local processes, each reading only its own shard and its half of the evaluation splits,
talking over 127.0.0.1 only. Training runs
evaluate as they go, so the metrics compared include the sharded evaluation; the
evaluation app is compared on its own too.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from records import assert_same_metrics

from vae.evaluation import split_batches
from vae.reporting import metric_writers
from vae.runtime import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = [sys.executable, "-m", "experiments.train", "--config=configs/tiny.py",
         "--config.data.num_shards=2"]


def run(args, workdir, env_extra=None, wait=True):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **(env_extra or {}))
  process = subprocess.Popen(TRAIN + [f"--workdir={workdir}"] + args, cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  if not wait:
    return process
  output, _ = process.communicate(timeout=300)
  assert process.returncode == 0, output[-3000:]
  return output


# Every test of this module in one test process (pyproject's --dist loadgroup), so that
# its module fixtures (the one-device run and evaluation) are made once, not once per process.
pytestmark = pytest.mark.xdist_group("scale_out")


@pytest.fixture(scope="module")
def one_device_workdir(tmp_path_factory):
  """A finished run of the tiny config on one device (read-only: copy what you alter)."""
  workdir = tmp_path_factory.mktemp("one")
  run([], workdir)
  return workdir


@pytest.fixture(scope="module")
def one_device(one_device_workdir):
  return metric_writers.read_metrics(one_device_workdir)




def test_two_devices_match_one(one_device, tmp_path):
  output = run([], tmp_path, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert_same_metrics(metric_writers.read_metrics(tmp_path), one_device)
  assert "Model: mlp" in output


def test_two_layers_with_a_learned_prior_on_two_devices_match_one(tmp_path):
  args = ["--config.model.upper_latent_dims=(3,)", "--config.model.upper_hidden_sizes=(16,)",
          "--config.model.posterior=full_covariance", "--config.model.prior=mixture",
          "--config.model.prior_components=5"]
  run(args, tmp_path / "one")
  run(args, tmp_path / "two", {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  got, want = (metric_writers.read_metrics(tmp_path / name) for name in ("two", "one"))
  assert "kl_z2" in want[-1]
  assert_same_metrics(got, want)


def test_batch_must_divide_by_the_devices(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=3")
  done = subprocess.run(TRAIN + [f"--workdir={tmp_path}"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode != 0
  assert "config.train.batch_size=32 does not divide by the 3 devices" in done.stderr
  assert "Traceback" not in done.stderr


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one(one_device, tmp_path):
  address = f"127.0.0.1:{free_port()}"
  processes = [
      run([f"--coordinator_address={address}", "--num_processes=2", f"--process_id={i}"],
          tmp_path, wait=False)
      for i in range(2)]
  for process in processes:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    # Each process read one of the 2 shards of the 1,397 training digits.
    assert "1397 train images (698 read here)" in output
  assert_same_metrics(metric_writers.read_metrics(tmp_path), one_device)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "20"]


def test_the_scaling_guide_shows_the_commands_these_tests_run():
  readme = open(os.path.join(REPO, "docs", "scaling.md")).read()
  train = "python -m " + " ".join(TRAIN[2:])
  for process_id in range(2):
    assert (f"{train} --workdir=runs/tiny_2proc --coordinator_address=HOST0:12345 "
            f"--num_processes=2 --process_id={process_id}") in readme
    assert ("python -m experiments.evaluate --workdir=runs/tiny_2proc --coordinator_address"
            f"=HOST0:12345 --num_processes=2 --process_id={process_id}") in readme
  assert (f"XLA_FLAGS=--xla_force_host_platform_device_count=2 {train} "
          "--workdir=runs/tiny_2dev") in readme


def test_shards_must_divide_by_the_processes(monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert distributed.process_shards(4) == range(2, 4)
  with pytest.raises(ValueError, match=r"config\.data\.num_shards=3 does not divide by the "
                                       r"2 processes.*--config\.data\.num_shards=2"):
    distributed.process_shards(3)


@pytest.mark.parametrize("num, count, parts", [
    (7, 3, [range(0, 3), range(3, 6), range(6, 7)]),
    (1, 2, [range(0, 1), range(1, 1)]),
    (4, 1, [range(0, 4)]),
])
def test_process_rows_cover_the_split(monkeypatch, num, count, parts):
  monkeypatch.setattr(jax, "process_count", lambda: count)
  for index, part in enumerate(parts):
    monkeypatch.setattr(jax, "process_index", lambda index=index: index)
    assert distributed.process_rows(num) == part


def map_batches_in_processes(monkeypatch, num, processes, batch_size):
  """Runs `split_batches.map_batches` as each of `processes` processes would, in turn, with the
  global arrays made by hand from the processes' parts; fn returns its inputs.

  Returns:
    (each process's result, each process's number of calls).
  """
  arrays = (np.arange(num), np.arange(num, dtype=np.float32)[:, None] * 10)
  mesh = distributed.data_mesh()
  monkeypatch.setattr(jax, "process_count", lambda: processes)
  monkeypatch.setattr(distributed, "put_process_rows", lambda rows, sharding: rows)

  def in_process(index, fn):
    monkeypatch.setattr(jax, "process_index", lambda: index)
    return split_batches.map_batches(fn, arrays, batch_size, mesh)

  names = ("indices", "x", "y")
  parts = {index: [] for index in range(processes)}  # every call's inputs, per process
  for index in range(processes):  # first pass: record the parts, return placeholders
    in_process(index, lambda *inputs, index=index: parts[index].append(inputs) or {
        name: np.zeros((batch_size,) + array.shape[1:])
        for name, array in zip(names, (arrays[0],) + arrays)})
  calls = [len(parts[index]) for index in range(processes)]
  global_batches = [{name: np.concatenate([parts[q][k][i] for q in range(processes)])
                     for i, name in enumerate(names)} for k in range(min(calls))]
  results = []
  for index in range(processes):
    batches = iter(global_batches)
    results.append(in_process(index, lambda *_, batches=batches: next(batches)))
  return results, calls


@pytest.mark.parametrize("num, processes, batch_size", [
    (7, 2, 4), (1, 2, 4), (3, 4, 4), (500, 3, 6), (10, 4, 8), (200, 2, 100)])
def test_each_process_reads_its_part_and_gets_every_result(monkeypatch, num, processes,
                                                           batch_size):
  """Uneven and empty parts: every process makes the same number of calls (or they
  would deadlock) and gets every example's result, in split order."""
  results, calls = map_batches_in_processes(monkeypatch, num, processes, batch_size)
  assert len(set(calls)) == 1
  for result in results:
    np.testing.assert_array_equal(result["indices"], np.arange(num))
    np.testing.assert_array_equal(result["x"], np.arange(num))
    np.testing.assert_array_equal(result["y"][:, 0], np.arange(num) * 10)


EVALUATE = [sys.executable, "-m", "experiments.evaluate", "--num_importance_samples=50",
            "--decompose_gap", "--num_examples=3", "--estimator=ais", "--ais_steps=10",
            "--ais_chains=2"]


def evaluate(workdir, env_extra=None, args=(), wait=True):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **(env_extra or {}))
  process = subprocess.Popen(EVALUATE + [f"--workdir={workdir}", *args], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  if not wait:
    return process
  stdout, stderr = process.communicate(timeout=300)
  return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def numbers(tree):
  """The numeric leaves of an evaluation JSON, by path (times and memory left out)."""
  if isinstance(tree, dict):
    return {f"{k}/{p}": v for k, sub in tree.items() if k not in ("seconds", "peak_rss_mib")
            for p, v in numbers(sub).items()}
  return {"": tree} if isinstance(tree, (int, float)) and not isinstance(tree, bool) else {}


@pytest.fixture(scope="module")
def one_device_evaluation(one_device_workdir, tmp_path_factory):
  """The numbers of experiments.evaluate on one device, in one process."""
  workdir = tmp_path_factory.mktemp("evaluated") / "run"
  shutil.copytree(one_device_workdir, workdir)
  done = evaluate(workdir)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "bound gap log p(x) - ELBO" in done.stdout
  return numbers(json.loads((workdir / "eval_test.json").read_text()))


def assert_same_numbers(got, want):
  assert got.keys() == want.keys() and len(want) > 30
  for key, value in want.items():
    assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-4), key


def test_evaluation_on_two_devices_matches_one(one_device_workdir, one_device_evaluation,
                                               tmp_path):
  """experiments.evaluate with its batches split over 2 devices (IWAE, the gap
  decomposition and AIS, whose subset of 3 is padded to fill the devices)."""
  workdir = tmp_path / "run"
  shutil.copytree(one_device_workdir, workdir)
  done = evaluate(workdir, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert done.returncode == 0, done.stderr[-3000:]
  assert "bound gap log p(x) - ELBO" in done.stdout
  assert_same_numbers(numbers(json.loads((workdir / "eval_test.json").read_text())),
                      one_device_evaluation)


def test_evaluation_batch_must_divide_by_the_devices(one_device_workdir):
  done = evaluate(one_device_workdir,
                  {"XLA_FLAGS": "--xla_force_host_platform_device_count=3"},
                  ["--batch_size=100"])
  assert done.returncode != 0
  assert ("batch_size=100 does not divide by the 3 devices of the data-parallel mesh; "
          "use 99 or 102 (config.eval.batch_size, or --batch_size of "
          "experiments.evaluate)") in done.stderr
  assert "Traceback" not in done.stderr


def test_evaluation_on_two_processes_matches_one(one_device_workdir, one_device_evaluation,
                                                 tmp_path):
  """experiments.evaluate in 2 processes, each reading half of the 200 test digits and
  of the subset of 3 (2 and 1), matches one process."""
  workdir = tmp_path / "run"
  shutil.copytree(one_device_workdir, workdir)
  address = f"127.0.0.1:{free_port()}"
  running = [evaluate(workdir, args=[f"--coordinator_address={address}", "--num_processes=2",
                                     f"--process_id={i}"], wait=False) for i in range(2)]
  stdouts = []
  for process in running:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    stdouts.append(stdout)
  # Only process 0 prints the table.
  assert ["bound gap log p(x) - ELBO" in out for out in stdouts] == [True, False]
  assert_same_numbers(numbers(json.loads((workdir / "eval_test.json").read_text())),
                      one_device_evaluation)
