"""Faults and bad input, as a user and a cluster job meet them: each one plain line, and
nothing lost (config files and fields, workdirs, SIGTERM, two trainers, kill -9, a
damaged checkpoint, a full disk, warm-up and schedule settings, the order of checks)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from vae.common import errors
from vae.config import checks as config_checks
from vae.configs import tiny
from vae.reporting import metric_writers
from vae.training import checkpoints, runs, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, JAX_PLATFORMS="cpu")
TRAIN = [sys.executable, "-m", "experiments.train"]


def app(*args, module="experiments.train"):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=ENV,
                        capture_output=True, text=True, timeout=300)


def assert_one_plain_line(done, message):
  """A non-zero exit whose stderr ends in `message` with no traceback before it."""
  assert done.returncode != 0, done.stderr[-3000:]
  assert re.search(message, done.stderr), done.stderr[-3000:]
  assert "Traceback" not in done.stderr and "Event loop is closed" not in done.stderr


def comparable(workdir):
  return [{k: v for k, v in r.items() if k != "steps_per_sec"}
          for r in metric_writers.read_metrics(workdir)]


# Every test of this module in one test process (pyproject's --dist loadgroup), so that
# its module fixtures (the reference run) are made once, not once per process.
pytestmark = pytest.mark.xdist_group("faults")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted run of the tiny config through the app (read-only)."""
  workdir = tmp_path_factory.mktemp("reference")
  done = app("--config=configs/tiny.py", f"--workdir={workdir}")
  assert done.returncode == 0, done.stderr[-3000:]
  return workdir


# ------------------------------------------------------------------ config files and fields


def write(path, text):
  path.write_text(text)
  return str(path)


@pytest.mark.parametrize("case", ["misspelt field", "unknown field", "missing file",
                                  "syntax error", "no get_config", "sweep syntax error"])
def test_config_file_and_field_errors_are_one_line(tmp_path, case):
  workdir = f"--workdir={tmp_path / 'run'}"
  sweep_file = write(tmp_path / "s.py", "def get_config():\n  pass\ndef get_sweep(:")
  args, message, module = {
      "misspelt field": (["--config=configs/tiny.py", "--config.model.latent_dims=8"],
                         r"error: --config\.model\.latent_dims: the config has no field "
                         r"'model\.latent_dims'; did you mean 'model\.latent_dim' or "
                         r"'model\.upper_latent_dims'\?",
                         "experiments.train"),
      "unknown field": (["--config=configs/tiny.py", "--config.no_such=1"],
                        r"error: --config\.no_such: the config has no field 'no_such'",
                        "experiments.train"),
      "missing file": (["--config=configs/no_such.py"],
                       r"error: configs/no_such\.py: no such file", "experiments.train"),
      "syntax error": ([f"--config={write(tmp_path / 'bad.py', 'def get_config(:')}"],
                       r"error: .*bad\.py:1: syntax error", "experiments.train"),
      "no get_config": ([f"--config={write(tmp_path / 'none.py', 'x = 1')}"],
                        r"error: .*none\.py has no get_config\(\)", "experiments.train"),
      "sweep syntax error": (
          [f"--sweep={sweep_file}"],
          r"error: .*s\.py:3: syntax error", "experiments.sweep"),
  }[case]
  assert_one_plain_line(app(*args, workdir, module=module), message)
  assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("make_workdir, message", [
    (lambda tmp: (tmp / "file").write_text("x") and str(tmp / "file"),
     r"error: --workdir=.*file is a file, not a folder"),
    (lambda tmp: "/proc/no_such/run", r"error: --workdir=/proc/no_such/run cannot be created"),
])
def test_bad_workdir_is_one_line(tmp_path, make_workdir, message):
  done = app("--config=configs/tiny.py", f"--workdir={make_workdir(tmp_path)}")
  assert_one_plain_line(done, message)


# ------------------------------------------------------------------ preemption and locks


def start(workdir, *args):
  return subprocess.Popen(TRAIN + ["--config=configs/tiny.py", f"--workdir={workdir}", *args],
                          cwd=REPO, env=ENV, stderr=subprocess.PIPE, text=True)


def wait_for(process, pattern):
  """Reads the process's stderr until a line matches; returns the lines read."""
  lines = []
  for line in process.stderr:
    lines.append(line)
    if re.search(pattern, line):
      return lines
  raise AssertionError("".join(lines)[-3000:])


LONG = ["--config.train.num_steps=100000", "--config.train.eval_every=100000",
        "--config.train.checkpoint_every=100000"]


def test_sigterm_saves_a_checkpoint_and_exits_like_ctrl_c(tmp_path):
  process = start(tmp_path, *LONG)
  lines = wait_for(process, r"step 20/100000")
  process.send_signal(signal.SIGTERM)
  stderr = "".join(lines) + process.communicate(timeout=300)[1]
  done = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
  assert_one_plain_line(done, r"Interrupted: saved a checkpoint of step \d+ in ")
  assert "SIGTERM: saving a checkpoint" in stderr
  assert checkpoints.latest_step(str(tmp_path)) >= 20


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_then_rerun_ends_with_the_uninterrupted_numbers(reference, tmp_path,
                                                               monkeypatch, signum):
  original = runs.prefetch_to_device

  def signal_after_two_blocks(blocks, *args):
    for i, block in enumerate(original(blocks, *args)):
      if i == 2:  # the signal arrives while the third block is being prepared
        signal.raise_signal(signum)
      yield block

  monkeypatch.setattr(runs, "prefetch_to_device", signal_after_two_blocks)
  with pytest.raises(KeyboardInterrupt, match="checkpoint of step 15"):
    train.train_and_evaluate(tiny.get_config(), str(tmp_path))
  monkeypatch.setattr(runs, "prefetch_to_device", original)
  train.train_and_evaluate(tiny.get_config(), str(tmp_path))
  assert comparable(tmp_path) == comparable(reference)


def test_second_trainer_on_a_workdir_in_use_refuses_at_once(tmp_path):
  first = start(tmp_path, *LONG)
  try:
    lines = wait_for(first, r"step 10/100000")
    done = app("--config=configs/tiny.py", f"--workdir={tmp_path}", *LONG)
    assert_one_plain_line(done, rf"error: {re.escape(str(tmp_path))} is in use by process "
                                rf"{first.pid} on \S+, which trains in it")
    assert first.poll() is None  # the first one trains on
  finally:
    first.send_signal(signal.SIGINT)
    lines += first.communicate(timeout=300)[1].splitlines(keepends=True)
  assert "Interrupted: saved a checkpoint" in "".join(lines)


def test_kill_9_then_rerun_ends_with_the_uninterrupted_numbers(reference, tmp_path):
  """The killed process's lock is stale and taken over; however far it got, the rerun
  resumes from its last checkpoint and ends with the numbers of the uninterrupted run."""
  process = start(tmp_path)
  wait_for(process, r"step 10/20")
  process.kill()
  process.communicate(timeout=300)
  done = app("--config=configs/tiny.py", f"--workdir={tmp_path}")
  assert done.returncode == 0, done.stderr[-3000:]
  assert comparable(tmp_path) == comparable(reference)


# ------------------------------------------------------------------ damaged checkpoints


def truncate_arrays(step_dir):
  """Cuts every array data file of a checkpoint to 10 bytes (a crash mid-write)."""
  cut = 0
  for path in step_dir.rglob("*"):
    if path.is_file() and path.parent.name == "d":
      path.write_bytes(path.read_bytes()[:10])
      cut += 1
  assert cut


def test_damaged_latest_checkpoint_falls_back_and_ends_with_the_same_numbers(reference,
                                                                             tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)  # with the lock file its finished process left
  truncate_arrays(workdir / "checkpoints" / "20")
  done = app("--config=configs/tiny.py", f"--workdir={workdir}")
  assert done.returncode == 0, done.stderr[-3000:]
  assert re.search(r"The checkpoint of step 20 in \S+ is damaged .*Moved it to "
                   r"\S+damaged_checkpoints/20; resuming from the checkpoint before it",
                   done.stderr), done.stderr[-3000:]
  assert "does not fit" not in done.stderr and "Traceback" not in done.stderr
  assert "Event loop is closed" not in done.stderr
  assert comparable(workdir) == comparable(reference)
  assert (workdir / "damaged_checkpoints" / "20").is_dir()
  assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "20"]


def test_a_frozen_run_whose_checkpoints_after_its_failure_are_damaged_is_a_new_attempt(
    reference, tmp_path):
  """The checkpoints after a failure hold the frozen state; damaged, they are set aside
  and the run resumes from one up to the failure: a new attempt, not a frozen run."""
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  (workdir / "failed.json").write_text(json.dumps({"step": 10, "reason": "non-finite"}))
  truncate_arrays(workdir / "checkpoints" / "20")
  done = app("--config=configs/tiny.py", f"--workdir={workdir}")
  assert done.returncode == 0, done.stderr[-3000:]
  assert not (workdir / "failed.json").exists()
  assert comparable(workdir) == comparable(reference)


def test_a_metrics_line_cut_short_is_dropped_and_the_rerun_ends_with_the_same_numbers(
    reference, tmp_path):
  """A machine lost during a write to metrics.jsonl: its last line is half a record. The
  rerun resumes from the checkpoint before it and drops that line."""
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  shutil.rmtree(workdir / "checkpoints" / "20")  # lost before the checkpoint of step 20
  metrics = workdir / metric_writers.METRICS_FILE
  text = metrics.read_text()
  metrics.write_text(text[:len(text) - len(text.splitlines()[-1]) // 2 - 1])
  assert len(metric_writers.read_metrics(str(workdir))) == len(text.splitlines()) - 1
  done = app("--config=configs/tiny.py", f"--workdir={workdir}")
  assert done.returncode == 0, done.stderr[-3000:]
  assert comparable(workdir) == comparable(reference)


def test_a_last_record_whose_newline_was_cut_off_stays_one_record(tmp_path):
  writer = metric_writers.MetricWriter(str(tmp_path))
  writer.write_metrics(10, "train", {"elbo": -1.0})
  writer.close()
  metrics = tmp_path / metric_writers.METRICS_FILE
  metrics.write_text(metrics.read_text().rstrip("\n"))
  writer = metric_writers.MetricWriter(str(tmp_path))
  writer.truncate_after(10)  # as a resume does
  writer.write_metrics(20, "train", {"elbo": -0.5})
  writer.close()
  assert [(r["step"], r["elbo"]) for r in metric_writers.read_metrics(str(tmp_path))] == [
      (10, -1.0), (20, -0.5)]


@pytest.mark.parametrize("line", ["42", "null", '{"split": "train", "elbo": -1.0}',
                                  '{"step": "ten", "split": "train"}'])
def test_a_metrics_line_that_is_json_but_not_a_record_is_damaged(tmp_path, line):
  record = json.dumps({"step": 10, "split": "train", "elbo": -1.0})
  (tmp_path / metric_writers.METRICS_FILE).write_text(f"{record}\n{line}\n{record}\n")
  with pytest.raises(ValueError, match=r"metrics.jsonl, line 2, is not a JSON record"):
    metric_writers.read_metrics(str(tmp_path))


def test_a_damaged_metrics_line_is_one_line_naming_it(reference, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  metrics = workdir / metric_writers.METRICS_FILE
  lines = metrics.read_text().splitlines(keepends=True)
  metrics.write_text("".join(lines[:1] + ["{not json\n"] + lines[1:]))
  before = metrics.read_text()
  done = app("--config=configs/tiny.py", f"--workdir={workdir}")
  assert_one_plain_line(done, r"metrics.jsonl, line 2, is not a JSON record: the file is "
                              r"damaged; delete that line")
  assert metrics.read_text() == before  # nothing rewritten


def test_a_checkpoint_of_another_model_does_not_fit(reference, tmp_path):
  checkpointer = checkpoints.Checkpointer(str(tmp_path), 3)
  checkpointer.save(5, {"w": np.zeros((3, 4), np.float32)})
  with pytest.raises(ValueError, match=r"step 5 .* does not fit the model"):
    checkpointer.restore(5, {"w": np.zeros((4, 4), np.float32)})
  checkpointer.close()


# ------------------------------------------------------------------ a full disk


def test_out_of_space_save_is_one_error_and_keeps_the_earlier_checkpoint(tmp_path,
                                                                         monkeypatch):
  checkpointer = checkpoints.Checkpointer(str(tmp_path), 3)
  checkpointer.save(10, {"w": np.ones(3, np.float32)})
  manager = checkpointer._manager  # pylint: disable=protected-access

  def full(step, args):
    os.makedirs(os.path.join(checkpointer.directory, f"{step}.orbax-checkpoint-tmp"))
    raise ValueError("RESOURCE_EXHAUSTED: Error writing \"w/0\": Failed to write 12 bytes "
                     "to file 11: No space left on device [os_error_code='28']")

  monkeypatch.setattr(manager, "save", full)
  with pytest.raises(errors.DiskFullError,
                     match=r"No space left on the disk of .* step 20.*from step 10"):
    checkpointer.save(20, {"w": np.zeros(3, np.float32)})
  assert sorted(os.listdir(checkpointer.directory)) == ["10"]
  np.testing.assert_array_equal(checkpointer.restore(10)["w"], np.ones(3, np.float32))
  checkpointer.close()


def test_the_app_on_a_full_disk_says_so_in_one_line(tmp_path):
  """On a tmpfs with room for one checkpoint of the tiny run but not two."""
  disk = tmp_path / "disk"
  disk.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)],
                    capture_output=True).returncode:
    pytest.skip("cannot mount a tmpfs here (needs root); the test above patches the save")
  try:
    done = app("--config=configs/tiny.py", f"--workdir={disk / 'run'}")
    assert_one_plain_line(done, r"error: No space left on the disk of \S+ to save the "
                                r"checkpoint of step 20\. .*resume from step 10\.")
    checkpointer = checkpoints.Checkpointer(str(disk / "run"), 3)
    assert checkpointer.all_steps() == [10]
    checkpointer.restore(10)
    checkpointer.close()
  finally:
    subprocess.run(["umount", str(disk)], check=True)


# ------------------------------------------------------------------ schedules and checks


def test_warmup_longer_than_the_run_trains_with_one_warning(tmp_path, caplog):
  config = tiny.get_config()
  config.optimizer.warmup_steps = 100
  train.train_and_evaluate(config, str(tmp_path))
  warnings = [r.getMessage() for r in caplog.records if "whole run is warm-up" in r.getMessage()]
  assert len(warnings) == 1 and "ends at 20% of" in warnings[0]
  logged = [r for r in metric_writers.read_metrics(str(tmp_path)) if r["split"] == "train"]
  peak = config.optimizer.learning_rate
  assert logged[-1]["learning_rate"] == pytest.approx(peak * 19 / 100)  # the last update's


def test_extending_a_cosine_run_says_how_the_rate_jumps(reference, tmp_path, caplog):
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)  # with the lock file its finished process left
  config = tiny.get_config()
  config.train.num_steps = 40
  train.train_and_evaluate(config, str(workdir))
  (message,) = [r.getMessage() for r in caplog.records if "num_steps changed" in r.getMessage()]
  half_the_peak = f"{config.optimizer.learning_rate / 2:.3g}"  # cos(pi / 2) of 40 steps
  assert re.search(r"from 20 to 40, and the cosine schedule .* at step 20 jumps from 0 to "
                   + re.escape(half_the_peak), message), message
  with open(workdir / "config.json") as f:
    assert json.load(f)["train"]["num_steps"] == 40


def test_config_errors_come_before_missing_data(tmp_path):
  config = tiny.get_config()
  config.data.name, config.data.data_dir, config.data.binarize = "cifar10", str(tmp_path), "none"
  with pytest.raises(ValueError, match=r"likelihood='bernoulli'.*colour values"):
    config_checks.check_config(config)
  config.model.likelihood = "gaussian"
  with pytest.raises(ValueError, match=r"no prepared data"):
    config_checks.check_config(config)


def test_stray_reads_of_a_failed_restore_are_not_printed():
  """asyncio's reports of the tensorstore reads still in flight after a restore failed
  (seen now and then on a damaged checkpoint) are dropped; its other errors are kept."""
  import logging  # pylint: disable=import-outside-toplevel

  from vae.runtime import cli  # pylint: disable=import-outside-toplevel
  stray = ValueError("OUT_OF_RANGE: Error reading ... [tensorstore_spec='{}']")

  def record(error):
    return logging.LogRecord("asyncio", logging.ERROR, "/asyncio/base_events.py", 1,
                             "Future exception was never retrieved", None,
                             (ValueError, error, None))
  assert not cli._is_ours_or_important(record(stray))  # pylint: disable=protected-access
  assert cli._is_ours_or_important(record(ValueError("a bug")))  # pylint: disable=protected-access


def test_orbax_threads_reports_of_a_full_disk_are_not_printed():
  """A full disk is reported once, by the app (`DiskFullError`): orbax's background
  threads' and asyncio's reports of it are dropped, a thread's other errors kept."""
  import errno  # pylint: disable=import-outside-toplevel
  import logging  # pylint: disable=import-outside-toplevel
  import threading  # pylint: disable=import-outside-toplevel

  from vae.runtime import cli  # pylint: disable=import-outside-toplevel
  def disk_full():
    error = ValueError("RESOURCE_EXHAUSTED: writing ...")
    error.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    return error
  assert errors.is_out_of_space(ValueError("wrapped")) is False
  chained = RuntimeError("commit failed")
  chained.__context__ = OSError(errno.ENOSPC, "disk")
  assert errors.is_out_of_space(chained)
  record = logging.LogRecord("asyncio", logging.ERROR, "/asyncio/base_events.py", 1,
                             "Future exception was never retrieved", None,
                             (ValueError, disk_full(), None))
  assert not cli._is_ours_or_important(record)  # pylint: disable=protected-access

  printed = []
  hook = cli._drop_thread_errors_reported_by_us(printed.append)  # pylint: disable=protected-access

  def fail_in(filename, error):
    code = compile("raise error", filename, "exec")
    try:
      exec(code, {"error": error})  # pylint: disable=exec-used
    except Exception as raised:  # pylint: disable=broad-exception-caught
      return threading.ExceptHookArgs((type(raised), raised, raised.__traceback__, None))
  hook(fail_in("/site-packages/orbax/checkpoint/async_checkpointer.py", disk_full()))
  assert printed == []
  for kept in (fail_in("/site-packages/tensorboardX/event_file_writer.py", disk_full()),
               fail_in("/site-packages/orbax/checkpoint/async_checkpointer.py",
                       ValueError("a bug"))):
    hook(kept)
  assert len(printed) == 2
