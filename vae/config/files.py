"""Config and sweep files as Python modules, and what is wrong with one, in one line.

A config file defines `get_config()` returning an `ml_collections.ConfigDict` (a sweep
file also `get_sweep()`); the apps read them through `ml_collections.config_flags`,
whose errors are tracebacks. `describe_error` turns them into one line naming the file
or the field and the fix.
"""

from __future__ import annotations

import importlib.util
import os
import traceback
import types

import ml_collections

from vae.common import field_checks


def load_module(path: str) -> types.ModuleType:
  """Runs the Python file `path` as a module.

  Raises:
    ValueError: no such file, a syntax error, or an error while it runs, naming the file
      and line.
  """
  if not os.path.isfile(path):
    raise ValueError(f"{path}: no such file. Give the path of a config file, e.g. "
                     "--config=configs/default.py, and run from the repository root.")
  spec = importlib.util.spec_from_file_location(
      os.path.splitext(os.path.basename(path))[0] + "_file", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as error:
    raise ValueError(f"{error.filename}:{error.lineno}: syntax error: {error.msg}. Fix the "
                     "file.") from None
  except Exception as error:  # the file's own code failed: say where, not how
    raise ValueError(f"{_where(error, path)}: {type(error).__name__}: {error}. Fix the "
                     "file.") from None
  return module


def load_config(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of the config file `path` (the part before a ':' argument).

  Raises:
    ValueError: the file cannot be run (see `load_module`), has no get_config(), or its
      get_config() fails.
  """
  path, *argument = path.split(":", 1)
  module = load_module(path)
  if not callable(getattr(module, "get_config", None)):
    raise ValueError(f"{path} has no get_config(): a config file defines get_config() "
                     "returning an ml_collections.ConfigDict (see configs/default.py).")
  try:
    config = module.get_config(*argument)
  except Exception as error:  # the file's own code failed: say where, not how
    raise ValueError(f"{_where(error, path)}: {type(error).__name__} in get_config(): "
                     f"{error}. Fix the file.") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f"{path}: get_config() returned {type(config).__name__}, not an "
                     "ml_collections.ConfigDict. Fix the file.")
  return config


# Where the shipped files of each config flag live, as packages: `--config=tiny` and
# `--sweep=beta` name them from any folder (in a checkout and in an installed copy).
SHIPPED = {"config": "vae.configs", "sweep": "vae.configs.sweeps"}
_NOT_SHIPPED = ("__init__", "base")


def shipped_names(flag: str) -> list[str]:
  """The names of the shipped files that --flag accepts, e.g. ["burda_2layer", ...]."""
  spec = importlib.util.find_spec(SHIPPED[flag])
  folder = os.path.dirname(spec.origin)
  return sorted(os.path.splitext(name)[0] for name in os.listdir(folder)
                if name.endswith(".py") and os.path.splitext(name)[0] not in _NOT_SHIPPED)


def resolve(value: str, flag: str) -> str:
  """The file that --flag=value means: a path as given, or the path of a shipped file
  named `value` (its ':argument' kept).

  Raises:
    ValueError: a bare name that no shipped file has (the shipped names are listed).
  """
  name, colon, argument = value.partition(":")
  if os.path.exists(name) or not name.isidentifier():
    return value
  try:
    spec = importlib.util.find_spec(f"{SHIPPED[flag]}.{name}")
  except ImportError:
    spec = None
  if spec is None or name in _NOT_SHIPPED:
    raise ValueError(f"--{flag}={name}: no such file and no shipped {flag} of that name; "
                     f"the shipped ones are {', '.join(shipped_names(flag))} (or give a "
                     "path).")
  return os.path.realpath(spec.origin) + colon + argument


def resolve_argv(argv: list[str], flags: list[str]) -> list[str]:
  """argv with every --flag=NAME of `flags` replaced by the shipped file's path."""
  resolved = []
  for arg in argv:
    for flag in flags:
      if arg.startswith(f"--{flag}="):
        arg = f"--{flag}=" + resolve(arg.split("=", 1)[1], flag)
    resolved.append(arg)
  return resolved


def check_override_fields(config: ml_collections.ConfigDict, fields: list[str],
                          flag: str) -> None:
  """Raises ValueError for the first of `fields` (dotted) that config does not have,
  naming the flag `--<flag>.<field>` and the nearest fields."""
  for field in fields:
    try:
      field_checks.get_field(config, field)
    except (KeyError, AttributeError):
      hint = field_checks.did_you_mean(field, config)
      raise ValueError(f"--{flag}.{field}: the config has no field {field!r}"
                       f"{hint or '; see the config file for its fields.'}") from None


def describe_error(error: BaseException, argv: list[str], config_flags: list[str]) -> str:
  """One line for an error raised while absl parsed `argv`: which config file or field
  (of the config flags named in `config_flags`, e.g. ["config"]) is wrong, and the fix."""
  for flag in config_flags:
    path = _flag_value(argv, flag)
    if path is None:
      continue
    try:
      config = load_config(path)
      check_override_fields(config, _override_fields(argv, flag), flag)
    except ValueError as problem:
      return str(problem)
  return f"{type(error).__name__}: {error}"


def _flag_value(argv: list[str], name: str) -> str | None:
  """The value of --name=VALUE (or --name VALUE) in argv, the last one given."""
  value = None
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
    elif arg == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def _override_fields(argv: list[str], name: str) -> list[str]:
  """The dotted fields of the --name.FIELD=VALUE overrides in argv."""
  prefix = f"--{name}."
  return [arg[len(prefix):].split("=", 1)[0] for arg in argv if arg.startswith(prefix)]


def _where(error: BaseException, path: str) -> str:
  """'path:line' of the innermost frame of the error's traceback inside `path`."""
  frames = [f for f in traceback.extract_tb(error.__traceback__)
            if os.path.abspath(f.filename) == os.path.abspath(path)]
  return f"{path}:{frames[-1].lineno}" if frames else path

