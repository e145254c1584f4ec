"""The project's own errors for what a user can fix: the apps print them as one line.

Bad input (a config value, a file, a checkpoint that does not fit) raises ValueError with
a message naming the setting and the fix; a missing optional package, ImportError; an
unreachable download host, ConnectionError. Errors from JAX or XLA (device memory, a
failed compilation) are none of these and keep their traceback.
"""

import errno


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or infinite; the message names the step and the last checkpoint."""


class PointFailedError(RuntimeError):
  """A sweep point's training process failed; the message names its log."""


class DiskFullError(OSError):
  """A checkpoint could not be written for lack of disk space; nothing was half-written."""


USER_ERRORS = (ValueError, ImportError, ConnectionError, NonFiniteLossError,
               PointFailedError, DiskFullError)


def is_out_of_space(error: BaseException | None) -> bool:
  """Whether `error`, or an error it was raised from, is a write that found the disk full
  (tensorstore says RESOURCE_EXHAUSTED or "No space left on device"; Python, ENOSPC)."""
  while error is not None:
    text = str(error)
    if (getattr(error, "errno", None) == errno.ENOSPC or "RESOURCE_EXHAUSTED" in text
        or "No space left on device" in text):
      return True
    error = error.__cause__ or error.__context__
  return False
