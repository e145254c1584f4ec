"""How a config field is checked and named: one message style for every module.

Each failed check raises one ValueError, "config.<field>=<value> is invalid: it must be
<what>. <fix>", so a bad `--config.x=y` flag stops at once with a plain message that
names the field, the value, what it must be and how to fix it. `config` here is the
ConfigDict a field's dotted name is relative to (e.g. the whole run config for
"model.latent_dim").
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Iterable

import ml_collections


def fail(field: str, value: Any, must: str, fix: str = "") -> None:
  """Raises the ValueError of an invalid field."""
  message = f"config.{field}={value!r} is invalid: it must be {must}."
  raise ValueError(message + (f" {fix}" if fix else ""))


def get_field(config: ml_collections.ConfigDict, field: str) -> Any:
  """`config['a']['b']` for field `'a.b'`."""
  node = config
  for part in field.split("."):
    node = node[part]
  return node


def int_at_least(config: ml_collections.ConfigDict, field: str, minimum: int = 1) -> None:
  value = get_field(config, field)
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    fail(field, value, f"an integer >= {minimum}")


def finite_at_least(config: ml_collections.ConfigDict, field: str, minimum: float,
                    strict: bool = False, fix: str = "") -> None:
  """The field is a finite number >= minimum (> minimum when `strict`)."""
  value = get_field(config, field)
  if (isinstance(value, bool) or not isinstance(value, (int, float))
      or not math.isfinite(value) or value < minimum or (strict and value == minimum)):
    fail(field, value, f"a finite number {'>' if strict else '>='} {minimum:g}", fix)


def one_of(config: ml_collections.ConfigDict, field: str, valid: Iterable[str]) -> None:
  value = get_field(config, field)
  if value not in valid:
    fail(field, value, f"one of {sorted(valid)}")


def sizes(config: ml_collections.ConfigDict, field: str) -> None:
  """The field is a sequence of integers >= 1 (layer widths, channels)."""
  value = get_field(config, field)
  if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in value):
    fail(field, value, "a sequence of integers >= 1")


def dotted_fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every leaf field of config as a dotted name ('loss.beta', ...)."""
  names = []
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      names += dotted_fields(value, f"{prefix}{key}.")
    else:
      names.append(f"{prefix}{key}")
  return names


def did_you_mean(field: str, config: ml_collections.ConfigDict) -> str:
  """"; did you mean 'a' or 'b'?" for the fields of config nearest to `field`, or "":
  the leaves of the same section nearest to its last part, else the nearest dotted
  names of all fields."""
  parent, _, leaf = field.rpartition(".")
  try:
    section = get_field(config, parent) if parent else config
  except (KeyError, AttributeError):
    section = None
  if isinstance(section, ml_collections.ConfigDict):
    close = difflib.get_close_matches(leaf, list(section.keys()), n=3, cutoff=0.6)
    close = [f"{parent}.{name}" if parent else name for name in close]
  else:
    close = difflib.get_close_matches(field, dotted_fields(config), n=3, cutoff=0.6)
  return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
