"""A sweep file's points: built as code, read from the file, turned into named configs.

A sweep file is a config file with one more function:

  def get_config():            # the base config every point starts from
    return default.get_config()

  def get_sweep():             # the points: a list of {dotted config key: value}
    return sweeps.product(sweeps.axis("loss.beta", [0.5, 1, 2]),
                          sweeps.axis("seed", [0, 1]))

and may define `get_table()`, a `vae.sweeps.summary.Table` that lays its summary out
as a paper's table does (configs/sweeps/burda_table1.py).

A point is named after its overrides, e.g. `loss.beta=0.5_seed=1`: the name of its
sub-workdir.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any, Sequence

import ml_collections

from vae.config import checks as config_checks
from vae.config import files as config_files
from vae.sweeps import summary as sweep_summary

Point = dict[str, Any]


# ------------------------------------------------------------------ sweep algebra


def axis(key: str, values: Sequence[Any]) -> list[Point]:
  """One swept key: [{key: v} for v in values]."""
  return [{key: value} for value in values]


def product(*axes: list[Point]) -> list[Point]:
  """Every combination of the axes' points (the first axis varies slowest)."""
  return [dict(itertools.chain.from_iterable(p.items() for p in combo))
          for combo in itertools.product(*axes)]


def zip_points(*axes: list[Point]) -> list[Point]:
  """Points taken side by side from axes of equal length."""
  lengths = {len(a) for a in axes}
  if len(lengths) > 1:
    raise ValueError(f"zip_points needs axes of equal length, got {sorted(lengths)}.")
  return [dict(itertools.chain.from_iterable(p.items() for p in combo))
          for combo in zip(*axes)]


# ------------------------------------------------------------------ expansion


def load_points(sweep_file: str) -> list[Point]:
  """The points of a sweep file: its get_sweep().

  Raises:
    ValueError: the file is missing, does not run, or has no get_sweep().
  """
  module = config_files.load_module(sweep_file)
  if not callable(getattr(module, "get_sweep", None)):
    raise ValueError(f"{sweep_file} has no get_sweep(); a sweep file defines get_config() "
                     "and get_sweep() (see configs/sweeps/beta.py).")
  return list(module.get_sweep())


def load_table(sweep_file: str) -> sweep_summary.Table | None:
  """The sweep file's own summary layout, its get_table(), or None where it has none.

  Raises:
    ValueError: get_table() fails or returns something else than a Table.
  """
  get_table = getattr(config_files.load_module(sweep_file), "get_table", None)
  if not callable(get_table):
    return None
  try:
    table = get_table()
  except Exception as e:  # pylint: disable=broad-except  (the user's code, named below)
    raise ValueError(f"{sweep_file}: get_table() failed: {type(e).__name__}: {e}") from e
  if not isinstance(table, sweep_summary.Table):
    raise ValueError(f"{sweep_file}: get_table() returned {type(table).__name__}, not a "
                     "vae.sweeps.summary.Table.")
  return table


def point_name(point: Point) -> str:
  """A folder name for a point: 'loss.beta=0.5_seed=1' (sorted keys)."""
  return "_".join(f"{key}={point[key]}" for key in sorted(point)) or "base"


def apply_point(base: ml_collections.ConfigDict, point: Point) -> ml_collections.ConfigDict:
  """A copy of base with the point's overrides; unknown keys raise a clear ValueError."""
  config = copy.deepcopy(base)
  with config.unlocked():
    for key, value in point.items():
      *parents, leaf = key.split(".")
      node = config
      try:
        for part in parents:
          node = node[part]
        current = node[leaf]
      except (KeyError, AttributeError, TypeError):
        raise ValueError(
            f"Sweep key {key!r} is not a config field. Valid keys are dotted paths like "
            "'loss.beta' or 'model.latent_dim' (see configs/default.py).") from None
      if isinstance(current, float) and isinstance(value, int):
        value = float(value)
      node[leaf] = value
  return config


def expand(base: ml_collections.ConfigDict, points: list[Point]
           ) -> list[tuple[str, ml_collections.ConfigDict]]:
  """(name, config) for every point; checks names are unique and configs valid."""
  named = [(point_name(p), apply_point(base, p)) for p in points]
  names = [name for name, _ in named]
  if len(set(names)) != len(names):
    raise ValueError(f"The sweep repeats points: {sorted(n for n in names if names.count(n) > 1)}.")
  for name, config in named:
    try:
      config_checks.check_config(config)
    except ValueError as error:
      raise ValueError(f"Sweep point {name}: {error}") from None
  return named
