"""JAX's persistent compilation cache, on by default for the apps: a rerun, a resumed run
or the next point of a sweep loads its compiled programs instead of compiling them again.

The folder is $VAE_JAX_CACHE_DIR if set, else $XDG_CACHE_HOME/vae-jax/xla (by default
~/.cache/vae-jax/xla); VAE_JAX_CACHE_DIR=off (or an empty value) turns the cache off. A
folder that cannot be written gives one warning and the run goes on without the cache.
Every program is cached, however short its compilation (short runs are made of them).
The cache is JAX's own: its keys hold the program, the compile options and the versions
of jax and jaxlib, so a cached program is the one the compiler would build.
"""

from __future__ import annotations

import os
import tempfile

import jax
from absl import logging

from vae.common import user_cache

ENV_VAR = "VAE_JAX_CACHE_DIR"
_OFF = ("", "off", "0", "none")


def default_dir() -> str:
  return user_cache.folder("xla")


def enable(path: str | None = None) -> str | None:
  """Turns the cache on in `path` (default: $VAE_JAX_CACHE_DIR, else `default_dir()`);
  returns the folder, or None when it is off or cannot be written (one warning)."""
  path = os.environ.get(ENV_VAR, default_dir()) if path is None else path
  if path.strip().lower() in _OFF:
    return None
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path):
      pass
  except OSError as error:
    logging.warning("The compilation cache folder %s cannot be written (%s): running "
                    "without it. Set %s to a writable folder, or to 'off'.", path,
                    error.strerror or error, ENV_VAR)
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path
