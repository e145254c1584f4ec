"""What every command-line app shares: quiet dependency logs, plain error messages and the
persistent compilation cache (`vae.runtime.compilation_cache`)."""

from __future__ import annotations

import logging as std_logging
import sys
import threading
import traceback
from typing import Any, Callable

import ml_collections
from absl import app, flags, logging

from vae.common import errors
from vae.config import files as config_files
from vae.runtime import compilation_cache, distributed

_CHATTY_PACKAGES = ("/orbax/", "/tensorflow_datasets/", "/etils/")


def _is_stray_read_error(error: BaseException | None) -> bool:
  """A tensorstore read that failed after an orbax restore had already failed (a
  damaged checkpoint, which the run reports in one line): one of the other reads of the
  same checkpoint still in flight."""
  return error is not None and "tensorstore_spec" in str(error)


def _is_reported_by_us(error: BaseException | None) -> bool:
  """An error a dependency's thread or event loop reports on its own, which the app also
  reports in one line: a stray read (`_is_stray_read_error`) or a full disk (the
  checkpoint's `vae.common.errors.DiskFullError`)."""
  return _is_stray_read_error(error) or errors.is_out_of_space(error)


def _is_ours_or_important(record: std_logging.LogRecord) -> bool:
  if "/orbax/" in record.pathname and record.exc_info:
    return False  # orbax raises the same error to us, which reports it in one line
  if record.name == "asyncio" and record.exc_info and _is_reported_by_us(record.exc_info[1]):
    return False  # "... exception was never retrieved"
  if record.levelno >= std_logging.WARNING and "/tensorflow_datasets/" not in record.pathname:
    return True
  return not any(package in record.pathname for package in _CHATTY_PACKAGES)


def quiet_dependency_logs() -> None:
  """Drops orbax's, tfds's and etils's routine messages from the absl log handler,
  orbax's tracebacks of errors it raises to us, and asyncio's of the reads still in
  flight when such an error was raised or of writes that found the disk full."""
  logging.get_absl_handler().addFilter(_is_ours_or_important)


def _drop_closed_loop_errors(default_hook: Callable[[Any], None]) -> Callable[[Any], None]:
  """An unraisable-exception hook that drops asyncio's "Event loop is closed" and the
  errors the app reports itself (`_is_reported_by_us`).

  When an orbax restore fails (a damaged or mismatched checkpoint), tensorstore reads
  still in flight finish afterwards on orbax's closed event loop, and each prints such
  an error: dozens of tracebacks that say nothing about the cause. Everything else goes
  to `default_hook`.
  """

  def hook(unraisable) -> None:
    closed_loop = (unraisable.exc_type is RuntimeError
                   and str(unraisable.exc_value) == "Event loop is closed")
    if not (closed_loop or _is_reported_by_us(unraisable.exc_value)):
      default_hook(unraisable)

  return hook


def _drop_thread_errors_reported_by_us(
    default_hook: Callable[[Any], None]) -> Callable[[Any], None]:
  """A threading.excepthook that drops the error of an orbax background thread when the
  app reports it in one line (`_is_reported_by_us`: its writers on a full disk);
  everything else goes to `default_hook`."""

  def hook(args) -> None:
    in_orbax = any("/orbax/" in frame.filename
                   for frame in traceback.extract_tb(args.exc_traceback))
    if not (in_orbax and _is_reported_by_us(args.exc_value)):
      default_hook(args)

  return hook


def run(fn: Callable[..., Any], *args, **kwargs) -> Any:
  """Calls fn with quiet logs and the compilation cache on; a user error
  (`vae.common.errors.USER_ERRORS`) or Ctrl-C exits with one plain message, its traceback only
  at --verbosity=1. Any other error, JAX's and XLA's among them, keeps its traceback."""
  quiet_dependency_logs()
  sys.unraisablehook = _drop_closed_loop_errors(sys.unraisablehook)
  threading.excepthook = _drop_thread_errors_reported_by_us(threading.excepthook)
  compilation_cache.enable()
  try:
    return fn(*args, **kwargs)
  except errors.USER_ERRORS as error:
    logging.debug("Stopped by:", exc_info=True)
    raise SystemExit(f"error: {error}") from None
  except KeyboardInterrupt as interrupt:
    raise SystemExit(str(interrupt) or "Interrupted.") from None


def flags_parser(*config_flag_names: str) -> Callable[[list[str]], list[str]]:
  """absl's flag parsing, for `app.run(main, flags_parser=cli.flags_parser("config"))`.

  A config flag's value may name a shipped file (`--config=tiny`, `--sweep=beta`;
  `vae.config.files.resolve`) instead of giving its path.

  A file of the named config flags that is missing, does not run or has no
  get_config(), and an override of a field its config does not have, stop with one
  plain line naming the file or the field (and the nearest fields) instead of a
  traceback. A bad flag value stops as absl says it.
  """

  def parse(argv: list[str]) -> list[str]:
    try:
      argv = config_files.resolve_argv(argv, list(config_flag_names))
    except ValueError as error:
      raise SystemExit(f"error: {error}") from None
    try:
      remaining = app.parse_flags_with_usage(argv)
      for name in config_flag_names:  # a missing file shows only when its value is read
        if not isinstance(flags.FLAGS[name].value, (ml_collections.ConfigDict, type(None))):
          raise ValueError(f"--{name} holds no config")
      return remaining
    except Exception as error:  # raised while a config flag read its file or overrides
      message = config_files.describe_error(error, argv, list(config_flag_names))
      raise SystemExit(f"error: {message}") from None

  return parse


def define_distributed_flags() -> Callable[[], None]:
  """Defines --coordinator_address, --num_processes and --process_id.

  Returns:
    A function that joins this process to the others as the flags say (or as SLURM's
    environment says, or not at all); see `vae.runtime.distributed.initialize`.
  """
  coordinator = flags.DEFINE_string(
      "coordinator_address", None, "host:port of process 0, to join several processes.")
  num_processes = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
  process_id = flags.DEFINE_integer("process_id", None, "This process's index, from 0.")
  return lambda: distributed.initialize(coordinator.value, num_processes.value,
                                        process_id.value)
