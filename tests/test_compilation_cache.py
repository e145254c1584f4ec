"""The persistent compilation cache the apps turn on (`vae.runtime.compilation_cache`)."""

import os
import subprocess
import sys

from absl import logging

from vae.runtime import compilation_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_program_compiled_once_is_stored_in_the_cache(tmp_path):
  folder = tmp_path / "cache"
  code = ("import sys, jax; from vae.runtime import compilation_cache as c; "
          "assert c.enable(sys.argv[1]) == sys.argv[1]; jax.jit(lambda x: x * 3 + 1)(2.0)")
  done = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert any(folder.iterdir())


def test_off_and_an_unwritable_folder_run_without_the_cache(tmp_path, monkeypatch):
  monkeypatch.setenv(compilation_cache.ENV_VAR, "off")
  assert compilation_cache.enable() is None
  not_a_folder = tmp_path / "file"
  not_a_folder.write_text("")
  warnings = []
  monkeypatch.setattr(logging, "warning", lambda *args: warnings.append(args[0] % args[1:]))
  assert compilation_cache.enable(str(not_a_folder / "xla")) is None
  (warning,) = warnings
  assert "cannot be written" in warning and compilation_cache.ENV_VAR in warning


def test_the_default_folder_is_the_user_cache(monkeypatch, tmp_path):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compilation_cache.default_dir() == str(tmp_path / "vae-jax" / "xla")
