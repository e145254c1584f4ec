"""Console logging for the command-line apps: our progress lines, not our dependencies'."""

import logging as std_logging

from absl import logging

_CHATTY_PACKAGES = ("/orbax/", "/tensorflow_datasets/", "/etils/")


def _is_ours_or_important(record: std_logging.LogRecord) -> bool:
  if record.levelno >= std_logging.WARNING and "/tensorflow_datasets/" not in record.pathname:
    return True
  return not any(package in record.pathname for package in _CHATTY_PACKAGES)


def quiet_dependency_logs() -> None:
  """Drops orbax's, tfds's and etils's routine messages from the absl log handler."""
  logging.get_absl_handler().addFilter(_is_ours_or_important)
