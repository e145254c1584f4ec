"""A run's folder: created with a plain error, and held by one trainer at a time.

`WorkdirLock` keeps a second trainer out of a workdir that one is training in (the same
command launched twice, a requeued job while the old one still runs), which would
otherwise delete the first one's checkpoints. It is an advisory `flock` on
`workdir/.lock`, which the kernel releases when its process ends however it ends, so a
lock left by a killed process (kill -9, a crashed node on a local disk) is simply
taken over. The file names the holder for the message of whoever is kept out. Several
processes of one job share the workdir: only process 0 takes the lock. On network file
systems `flock` works across hosts where the file system supports it (NFSv4, Lustre with
`flock`); elsewhere it guards against the same host only.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket

LOCK_FILE = ".lock"


def make_workdir(workdir: str) -> None:
  """Creates `workdir` (and its parents) unless it exists.

  Raises:
    ValueError: it is a file, or cannot be created, naming the cause.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"--workdir={workdir} is a file, not a folder. Use another --workdir.")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as error:
    raise ValueError(f"--workdir={workdir} cannot be created ({error.strerror or error}). "
                     "Use a folder in a place you can write to.") from None


class WorkdirLock:
  """Holds `workdir/.lock` until `close()`.

  Raises (on creation):
    ValueError: another process holds it, naming that process and its host.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._file = open(self.path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      self._file.seek(0)
      holder = self._file.read().strip() or "another process"
      self._file.close()
      raise ValueError(
          f"{workdir} is in use by {holder}, which trains in it (lock file {self.path}). "
          "Wait for that run to end or stop it, or use another --workdir.") from None
    self._file.seek(0)
    self._file.truncate()
    self._file.write(f"process {os.getpid()} on {socket.gethostname()}\n")
    self._file.flush()

  def close(self) -> None:
    if not self._file.closed:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()


FAILED_FILE = "failed.json"
"""`{"step": N, "reason": "..."}` in a workdir whose run stopped (or, in a vectorised
group, froze) because its loss went non-finite. A new attempt from a checkpoint up to
step N removes it; one after it (which holds the frozen state) keeps it."""


def write_json(path: str, record: dict) -> None:
  """Writes `record` to the JSON file `path` whole or not at all (a stop mid-write leaves
  the file as it was)."""
  partial = path + ".tmp"
  with open(partial, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2)
  os.replace(partial, path)


def read_json(path: str, fields: dict[str, type | tuple[type, ...]], fix: str
              ) -> dict | None:
  """The record in the JSON file `path` (a JSON object with `fields`, {key: type}), or
  None where the file is missing.

  Raises:
    ValueError: one line: the file is damaged (not such a record), naming it and `fix`.
  """
  try:
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
  except FileNotFoundError:
    return None
  except ValueError:  # not JSON, or not text
    record = None
  if not (isinstance(record, dict) and all(
      isinstance(record.get(key), kind) and not isinstance(record[key], bool)
      for key, kind in fields.items())):
    raise ValueError(f"{path} is damaged (not a JSON object with {', '.join(fields)}): "
                     f"{fix}")
  return record


def write_failure(workdir: str, failure: dict) -> None:
  write_json(os.path.join(workdir, FAILED_FILE), failure)


def read_failure(workdir: str) -> dict | None:
  """The run's FAILED_FILE, or None.

  Raises:
    ValueError: one line: the file is damaged.
  """
  return read_json(os.path.join(workdir, FAILED_FILE), {"step": int, "reason": str},
                   "restore it, or delete it to let the run train on from its latest "
                   "checkpoint.")


def clear_failure(workdir: str) -> None:
  try:
    os.remove(os.path.join(workdir, FAILED_FILE))
  except FileNotFoundError:
    pass


def is_locked(workdir: str) -> bool:
  """Whether a trainer holds `workdir` (its WorkdirLock), without taking it."""
  path = os.path.join(workdir, LOCK_FILE)
  if not os.path.exists(path):
    return False
  with open(path, "a+", encoding="utf-8") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      return True
    fcntl.flock(f, fcntl.LOCK_UN)
    return False
