"""The installed package works outside a checkout: its commands, its configs by name."""

import os
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Every test of this module in one test process (pyproject's --dist loadgroup), so that
# its module fixtures (the wheel and its installs) are made once, not once per process.
pytestmark = pytest.mark.xdist_group("install")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  """The project's wheel, built without its dependencies."""
  wheels = tmp_path_factory.mktemp("wheel")
  pip("wheel", "--no-deps", "-q", "-w", str(wheels), REPO)
  return next(wheels.glob("*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
  """The wheel installed (without its dependencies, which this environment has) into a
  folder of its own: (that folder, an environment that imports from it)."""
  target = tmp_path_factory.mktemp("site")
  pip("install", "--no-deps", "--no-compile", "-q", "--target", str(target), str(wheel))
  env = {**os.environ, "PYTHONPATH": str(target)}
  return target, env


def pip(*args):
  done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                        timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]


def readme_kernel_example() -> str:
  """The README's first Python block: the kernels used from a project of one's own."""
  readme = open(os.path.join(REPO, "README.md")).read()
  return readme.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_wheel_installs_one_top_level_package(wheel):
  with zipfile.ZipFile(wheel) as archive:
    tops = {name.split("/")[0] for name in archive.namelist()}
  assert {top for top in tops if not top.endswith(".dist-info")} == {"vae"}
  assert {"vae/configs/default.py", "vae/apps/train.py", "vae/kernels/bounds.py"} <= set(
      archive.namelist())


def test_the_readme_kernel_example_runs_with_the_light_install(wheel, tmp_path):
  """`pip install vae-jax` without extras: jax, numpy and optax, and the kernels work."""
  venv = tmp_path / "venv"  # filled by this interpreter's pip, without byte-compiling (faster)
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                 timeout=300)
  python = str(venv / "bin" / "python")
  pip("--python", python, "install", "-q", "--no-compile", str(wheel))
  script = tmp_path / "example.py"
  script.write_text(readme_kernel_example())
  done = subprocess.run([python, str(script)], cwd=tmp_path, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  elbo, log_px, gap = map(float, done.stdout.split()[-3:])
  assert elbo < log_px < 0 and gap > 0, done.stdout  # nats per example
  done = subprocess.run([python, "-c", "import flax"], capture_output=True, text=True)
  assert done.returncode != 0  # the light install has no trainer dependency


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
