"""The installed package works outside a checkout: its commands, its configs by name."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """The project's wheel installed (without its dependencies, which this environment has)
  into a folder of its own: (that folder, an environment that imports from it)."""
  wheels, target = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("site")

  def pip(*args):
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

  pip("wheel", "--no-deps", "-q", "-w", str(wheels), REPO)
  pip("install", "--no-deps", "-q", "--target", str(target), *map(str, wheels.glob("*.whl")))
  env = {**os.environ, "PYTHONPATH": str(target),
         "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}  # as conftest.py does
  return target, env


def test_vae_train_runs_a_shipped_config_by_name_outside_the_checkout(installed, tmp_path):
  target, env = installed
  done = subprocess.run([str(target / "bin" / "vae-train"), "--config=tiny",
                         "--workdir=run", "--config.train.num_steps=10"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=600, env=env)
  assert done.returncode == 0, done.stderr[-3000:]
  assert (tmp_path / "run" / "checkpoints" / "10").is_dir()
  assert not (tmp_path / "configs").exists()  # nothing of the checkout was needed
  done = subprocess.run([str(target / "bin" / "vae-sweep"), "--sweep=nothing",
                         "--workdir=sweep"], cwd=tmp_path, capture_output=True, text=True,
                        timeout=600, env=env)
  assert done.returncode != 0
  assert done.stderr.strip().splitlines()[-1].startswith(
      "error: --sweep=nothing: no such file and no shipped sweep of that name; the "
      "shipped ones are beta, ")


def test_config_names_resolve_to_the_shipped_files_and_paths_stay_paths():
  from vae.config import files as config_files  # pylint: disable=import-outside-toplevel
  assert config_files.resolve("tiny", "config") == os.path.join(REPO, "configs", "tiny.py")
  assert config_files.resolve("beta", "sweep") == os.path.join(
      REPO, "configs", "sweeps", "beta.py")
  assert config_files.resolve("configs/tiny.py", "config") == "configs/tiny.py"
  assert config_files.resolve_argv(["x", "--config=tiny:arg", "--config.seed=3"],
                                   ["config"])[1:] == [
      "--config=" + os.path.join(REPO, "configs", "tiny.py") + ":arg", "--config.seed=3"]
  with pytest.raises(ValueError, match="the shipped ones are burda_2layer, cifar10_conv"):
    config_files.resolve("base", "config")
