"""Sweeps as job arrays (issue 31) against a real one-node SLURM (scripts/slurm_local.py,
started here when installed; `.ci/run` installs it) and submitit's local executor."""

import csv
import json
import os
import subprocess
import sys
import time

import pytest

from scripts import slurm_local
from vae.config import files as config_files
from vae.reporting import metric_writers
from vae.sweeps import slurm
from vae.training import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every test of this module in one test process (pyproject's --dist loadgroup): the
# cluster a process starts it also stops, which must not happen under another's test.
pytestmark = pytest.mark.xdist_group("slurm")

SWEEP = """
from vae.configs import tiny
from vae import sweeps

def get_config():
  config = tiny.get_config()
  config.train.update(num_steps={steps}, log_every=10, checkpoint_every={every},
                      eval_every={every})
  return config

def get_sweep():
  return sweeps.axis("seed", {seeds})
"""


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
  """A SLURM controller that answers: the running one, or one started here."""
  if slurm_local.responds():
    yield
    return
  if not slurm_local.installed() or os.geteuid() != 0:
    pytest.skip("SLURM is not installed (apt-get install slurm-wlm munge, as root)")
  folder = str(tmp_path_factory.mktemp("slurm"))
  slurm_local.start(folder)
  yield
  slurm_local.stop(folder)


def sweep_file(tmp_path, steps, every, seeds):
  path = tmp_path / "sweep.py"
  path.write_text(SWEEP.format(steps=steps, every=every, seeds=list(seeds)))
  return str(path)


def sweep_app(*flags, check=True):
  """The sweep app, its tasks compiled as this process compiles (conftest's environment:
  XLA's optimisations off; sbatch and submitit pass it on), so that their numbers match
  the runs trained here."""
  done = subprocess.run([sys.executable, "-m", "experiments.sweep", *flags], cwd=REPO,
                        capture_output=True, text=True, check=False, timeout=600)
  assert not check or done.returncode == 0, done.stderr[-3000:]
  return done


def final_test(workdir):
  return [r for r in metric_writers.read_metrics(workdir) if r["split"] == "test"][-1]


def alone(tmp_path, path, seed):
  """The test metrics of the sweep file's point `seed` trained here, in this process."""
  config = config_files.load_config(path)
  config.seed = seed
  return train.train_and_evaluate(config, str(tmp_path / f"alone{seed}"))["test"]


def wait_until(condition, timeout_s, what):
  deadline = time.time() + timeout_s
  while not condition():
    assert time.time() < deadline, f"timed out waiting for {what}"
    time.sleep(0.1)


def test_a_requeued_task_resumes_and_every_point_ends_as_run_locally(tmp_path, slurm_cluster):
  path = sweep_file(tmp_path, 3000, 1500, (3, 4, 5))
  workdir = tmp_path / "sweep"
  flags = [f"--sweep={path}", f"--workdir={workdir}", "--mode=slurm",
           "--slurm_cpus_per_task=1", "--slurm_time=15"]
  submitted = sweep_app(*flags, "--nowait")
  job = json.loads((workdir / slurm.JOB_FILE).read_text())
  assert f"Submitted job array {job['job_id']}: 3 tasks; logs in {workdir}/slurm" in (
      submitted.stderr)
  # Task 1 (seed 4) is preempted mid-run: SIGTERM, as SLURM sends it.
  metrics = workdir / "seed=4" / metric_writers.METRICS_FILE
  wait_until(lambda: metrics.exists() and metrics.stat().st_size, 240, "seed 4 to train")
  task = f"{job['job_id']}_1"
  subprocess.run(["scancel", "--signal=TERM", task], check=True)
  queued = lambda: subprocess.run(["squeue", "-h", "-j", task, "-o", "%T"], capture_output=True,
                                  text=True, check=False).stdout.strip()
  wait_until(lambda: queued() == "PENDING", 120, "the task to requeue itself")
  # SLURM holds a requeued job for a while (BeginTime); let it start now.
  subprocess.run(["scontrol", "update", f"jobid={task}", "StartTime=now"], check=True)
  done = sweep_app(*flags)  # waits for the array, submits nothing new, writes the summary
  assert "0 to run" in done.stderr
  steps = sorted(int(s) for s in os.listdir(workdir / "seed=4" / "checkpoints"))
  assert steps[-1] == 3000 and any(s % 1500 for s in steps), steps  # saved on SIGTERM
  for seed in (3, 4, 5):
    expected = alone(tmp_path, path, seed)
    final = final_test(workdir / f"seed={seed}")
    for metric in ("elbo", "log_px"):
      assert final[metric] == pytest.approx(expected[metric], rel=1e-5), (seed, metric)
  status = sweep_app(f"--sweep={path}", f"--workdir={workdir}", "--status")
  assert status.stderr.count("finished  seed=") == 3
  assert (workdir / "summary.md").exists()


def test_submitit_local_runs_the_array_without_a_cluster(tmp_path):
  path = sweep_file(tmp_path, 20, 10, (4,))
  workdir = tmp_path / "sweep"
  done = sweep_app(f"--sweep={path}", f"--workdir={workdir}", "--mode=submitit_local")
  assert "1 pending" in done.stderr and "1 stopped" not in done.stderr  # before it starts
  rows = list(csv.DictReader(open(workdir / "summary.csv")))
  assert len(rows) == 1 and float(rows[0]["wall_time_s"]) > 0  # the task's time
  expected = alone(tmp_path, path, 4)
  assert final_test(workdir / "seed=4")["elbo"] == pytest.approx(expected["elbo"], rel=1e-5)


def test_no_sbatch_is_one_clear_line_before_anything_is_submitted(tmp_path, monkeypatch):
  monkeypatch.setenv("PATH", "/nonexistent")
  with pytest.raises(ValueError, match=r"--mode=slurm needs SLURM's sbatch on PATH.*"
                                       r"apt-get install slurm-wlm.*--mode=submitit_local"):
    slurm.check_options(slurm.SlurmOptions(), 3)


@pytest.mark.parametrize("options,tasks,message", [
    (dict(time="1h"), 3, r"--slurm_time='1h' is not a SLURM time limit"),
    (dict(partition="gpu-large"), 3, r"--slurm_partition='gpu-large' is not a partition.*"
                                     r"lists debug"),
    (dict(gpus_per_task=1), 3, r"--slurm_gpus_per_task=1 on partition 'debug', whose nodes "
                               r"have no GPUs"),
    (dict(), 5000, r"needs 5000 array tasks, more than this cluster's MaxArraySize=1001"),
])
def test_bad_cluster_options_are_one_clear_line(options, tasks, message, slurm_cluster):
  with pytest.raises(ValueError, match=message):
    slurm.check_options(slurm.SlurmOptions(**options), tasks)


@pytest.mark.parametrize("time_limit,minutes", [("90", 90), ("1:30", 2), ("1:30:00", 90),
                                                ("2-00", 2880), ("1-02:03:04", 1564)])
def test_slurm_time_limits_in_minutes(time_limit, minutes):
  slurm.check_options(slurm.SlurmOptions(time=time_limit), 1, cluster="local")
  assert slurm._minutes(time_limit) == minutes  # pylint: disable=protected-access
