"""What every command-line app shares: quiet dependency logs and plain error messages."""

from __future__ import annotations

import logging as std_logging
from typing import Any, Callable

from absl import flags, logging

from vae import distributed

_CHATTY_PACKAGES = ("/orbax/", "/tensorflow_datasets/", "/etils/")

# Errors that mean "the input is wrong" (config, data, checkpoint, flags) or "the run
# diverged": shown as one line, their traceback only at --verbosity=1.
USER_ERRORS = (ValueError, ImportError, ConnectionError, RuntimeError)


def _is_ours_or_important(record: std_logging.LogRecord) -> bool:
  if record.levelno >= std_logging.WARNING and "/tensorflow_datasets/" not in record.pathname:
    return True
  return not any(package in record.pathname for package in _CHATTY_PACKAGES)


def quiet_dependency_logs() -> None:
  """Drops orbax's, tfds's and etils's routine messages from the absl log handler."""
  logging.get_absl_handler().addFilter(_is_ours_or_important)


def run(fn: Callable[..., Any], *args, **kwargs) -> Any:
  """Calls fn with quiet logs; a user error or Ctrl-C exits with one plain message."""
  quiet_dependency_logs()
  try:
    return fn(*args, **kwargs)
  except USER_ERRORS as error:
    logging.debug("Stopped by:", exc_info=True)
    raise SystemExit(f"error: {error}") from None
  except KeyboardInterrupt as interrupt:
    raise SystemExit(str(interrupt) or "Interrupted.") from None


def define_distributed_flags() -> Callable[[], None]:
  """Defines --coordinator_address, --num_processes and --process_id.

  Returns:
    A function that joins this process to the others as the flags say (or as SLURM's
    environment says, or not at all); see `vae.distributed.initialize`.
  """
  coordinator = flags.DEFINE_string(
      "coordinator_address", None, "host:port of process 0, to join several processes.")
  num_processes = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
  process_id = flags.DEFINE_integer("process_id", None, "This process's index, from 0.")
  return lambda: distributed.initialize(coordinator.value, num_processes.value,
                                        process_id.value)
