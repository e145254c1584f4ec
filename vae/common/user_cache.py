"""The user cache folder the project keeps what it can rebuild in: $XDG_CACHE_HOME/vae-jax
(by default ~/.cache/vae-jax), for compiled programs (`vae.runtime.compilation_cache`) and the
embedded data parsed once (`vae.data`)."""

from __future__ import annotations

import os


def folder(*parts: str) -> str:
  """$XDG_CACHE_HOME/vae-jax/<parts...> (not created)."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "vae-jax", *parts)
