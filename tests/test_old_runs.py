"""A run written before the package was split into floors (issue 29) still evaluates to the
same numbers and resumes.

tests/data/run_before_layout is a tiny run (configs/tiny.py, 10 steps, params' average kept,
best checkpoint kept) written by the code of commit 7ba8166, the last one before the
layout change; expected_eval_test.json holds what that code's `experiments.evaluate
--split=test --num_importance_samples=50` wrote for it (with JAX_DISABLE_MOST_OPTIMIZATIONS=1,
as tests/conftest.py sets). Images and TensorBoard files were left out of the copy.
"""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from vae.configs import tiny
from vae.training import train

REPO = pathlib.Path(__file__).resolve().parents[1]
OLD_RUN = REPO / "tests" / "data" / "run_before_layout"


def run(*args):
  done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return done


def test_a_run_saved_before_the_layout_evaluates_to_its_numbers_and_resumes(tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(OLD_RUN, workdir)
  run("experiments.evaluate", f"--workdir={workdir}", "--split=test",
      "--num_importance_samples=50")
  results = json.loads((workdir / "eval_test.json").read_text())
  expected = json.loads((OLD_RUN / "expected_eval_test.json").read_text())
  # The same numbers up to float32 rounding, which differs between CPUs (AMD and Intel
  # kernels): the bound gap of 0.2366 nats agrees to 3e-7 relative across them.
  assert {name: results[name] for name in expected} == pytest.approx(expected, rel=1e-5)

  config = tiny.get_config()  # as `experiments.train --config=configs/tiny.py` builds it
  config.train.ema_decay, config.train.keep_best = 0.9, "elbo"
  train.train_and_evaluate(config, str(workdir))
  assert (workdir / "checkpoints" / "20").is_dir()
  records = (workdir / "metrics.jsonl").read_text().splitlines()
  steps = [json.loads(line)["step"] for line in records]
  assert max(steps) == 20 and 10 in steps  # the old run's records kept, the new ones after


def test_the_old_run_evaluates_from_python_without_defaults():
  """`evaluate_run` without `defaults` (a user's script): the fields of config.eval the
  run predates, nested ones too (eval.gap.family_examples), come from the migration."""
  from vae import evaluation  # pylint: disable=import-outside-toplevel
  from vae.config import migration  # pylint: disable=import-outside-toplevel
  saved = json.loads((OLD_RUN / "config.json").read_text())
  assert "family_examples" not in saved["eval"]["gap"]
  migrated = migration.migrate(saved)
  assert migrated["eval"]["gap"] == {**saved["eval"]["gap"], "family_examples": 0}
  results = evaluation.evaluate_run(str(OLD_RUN), "test", write=False, progress=False,
                                    overrides={"num_importance_samples": 50})
  expected = json.loads((OLD_RUN / "expected_eval_test.json").read_text())
  assert results["log_px"] == pytest.approx(expected["log_px"], rel=1e-5)
