"""Checks of the `config.data` fields every source shares, made without touching any data
(a source checks its own fields, e.g. config.data.path, in its `for_config`)."""

from __future__ import annotations

import numpy as np

from vae.data import binarization, registry, source


def check_fields(data_config) -> None:
  """Checks name, binarize, validation_size, num_shards and download; raises ValueError
  naming the offending field and the fix."""
  name = data_config.name
  if name not in registry.DATASET_NAMES:
    raise ValueError(f"config.data.name={name!r} is unknown; use one of "
                     f"{', '.join(registry.DATASET_NAMES)}.")
  if data_config.binarize not in binarization.BINARIZE_MODES:
    raise ValueError(f"config.data.binarize={data_config.binarize!r} is invalid; use one "
                     f"of {', '.join(binarization.BINARIZE_MODES)}.")
  size = data_config.validation_size
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
    raise ValueError(f"config.data.validation_size={size!r} must be an integer >= 0.")
  seed = data_config.get("validation_shuffle_seed")
  if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                           or seed < 0):
    raise ValueError(f"config.data.validation_shuffle_seed={seed!r} must be None (hold out "
                     "the last rows) or an integer >= 0.")
  shards = data_config.get("num_shards", 1)  # runs saved before the field: 1
  if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
    raise ValueError(f"config.data.num_shards={shards!r} must be an integer >= 1.")
  if not isinstance(data_config.download, bool):
    raise ValueError(f"config.data.download={data_config.download!r} must be True or "
                     "False.")


def check_split(split: str) -> None:
  """Raises ValueError unless `split` is one of `source.SPLITS`."""
  if split not in source.SPLITS:
    raise ValueError(f"split={split!r} is not one of {source.SPLITS}.")
