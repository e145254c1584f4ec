"""Sweeps as job arrays through submitit: every point, or every vectorised group of points,
is one task of one array, on SLURM (`cluster="slurm"`) or as local processes
(`cluster="local"`, submitit's local executor, for a machine without a cluster).

A task (`run_task`) trains its points exactly as a local sweep does and resumes them from
their workdirs, so a task that is preempted or requeued (SIGTERM, then a restart) ends
with the numbers of an uninterrupted run: on SIGTERM the trainer saves a checkpoint of
every point and the task asks SLURM to requeue it (`scontrol requeue`). A point of several
nodes runs one process per node under `jax.distributed` (`vae.runtime.distributed`).

What the array is made of is written in the sweep's folder (`TASKS_FILE`, read by each
task; `JOB_FILE`, the job id and log folder), so a later call can say each point's state
(`point_states`: finished, failed with its reason, running, pending or stopped) from the
workdirs and `squeue`, with no accounting (`sacct`) needed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from typing import Any

import ml_collections

from vae.common import errors
from vae.config import migration
from vae.runtime import distributed
from vae.training import checkpoints, train, workdirs

TASKS_FILE = "slurm_tasks.json"
JOB_FILE = "slurm_job.json"
TASK_SECONDS_FILE = "task_seconds.json"  # in a point's workdir: its tasks' wall time
CLUSTERS = ("slurm", "local")
# SLURM's time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds.
_TIME = re.compile(r"^(\d+)(:\d{1,2}){0,2}$|^\d+-\d{1,2}(:\d{1,2}){0,2}$")


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
  """What a cluster needs of each task (the sweep app's --slurm_* flags).

  Attributes:
    partition: the partition; None for the cluster's default.
    time: the time limit in one of SLURM's formats ("90", "1:30:00", "2-00:00:00").
    cpus_per_task, gpus_per_task, nodes: per task (a point of several nodes runs one
      process per node).
    mem: memory per node in sbatch's syntax ("16G"); None for the partition's default.
    array_parallelism: at most this many tasks run at once.
    additional: further sbatch options, {"name": "value"} (e.g. {"qos": "high"}).
    folder: submitit's folder of logs and pickles; None for <sweep>/slurm.
    vectorize: one task per vectorised group of points (`vae.sweeps.run`), else one per
      point.
  """

  partition: str | None = None
  time: str = "60"
  cpus_per_task: int = 2
  gpus_per_task: int = 0
  nodes: int = 1
  mem: str | None = None
  array_parallelism: int = 64
  additional: tuple[tuple[str, str], ...] = ()
  folder: str | None = None
  vectorize: bool = False


def check_options(options: SlurmOptions, num_tasks: int, cluster: str = "slurm") -> None:
  """Every check that needs no submission, each a ValueError of one line.

  Raises:
    ValueError: sbatch is not on PATH, an unknown partition, a malformed time limit,
      GPUs on a partition without any, or more tasks than the cluster's MaxArraySize.
  """
  if not _TIME.match(options.time):
    raise ValueError(f"--slurm_time={options.time!r} is not a SLURM time limit: use minutes "
                     "('90'), 'HH:MM:SS' ('1:30:00') or 'D-HH:MM:SS' ('2-00:00:00').")
  for name in ("cpus_per_task", "nodes", "array_parallelism"):
    if getattr(options, name) < 1:
      raise ValueError(f"--slurm_{name}={getattr(options, name)} must be >= 1.")
  if options.gpus_per_task < 0:
    raise ValueError(f"--slurm_gpus_per_task={options.gpus_per_task} must be >= 0.")
  if cluster == "local":
    return
  if not shutil.which("sbatch"):
    raise ValueError("--mode=slurm needs SLURM's sbatch on PATH, and it is not: load it "
                     "(e.g. `module load slurm`) or install it (`apt-get install slurm-wlm`); "
                     "without a cluster use --mode=submitit_local or --mode=parallel.")
  partitions = _command(["sinfo", "-h", "-o", "%P"]).split()
  default = next((p[:-1] for p in partitions if p.endswith("*")), None)
  names = [p.rstrip("*") for p in partitions]
  partition = options.partition or default
  if options.partition is not None and options.partition not in names:
    raise ValueError(f"--slurm_partition={options.partition!r} is not a partition of this "
                     f"cluster; `sinfo` lists {', '.join(names) or 'none'}.")
  if options.gpus_per_task and partition is not None:
    gres = _command(["sinfo", "-h", "-p", partition, "-o", "%G"]).split()
    if not any("gpu" in g for g in gres):
      raise ValueError(f"--slurm_gpus_per_task={options.gpus_per_task} on partition "
                       f"{partition!r}, whose nodes have no GPUs (sinfo: {' '.join(gres)}); "
                       "choose a GPU partition or --slurm_gpus_per_task=0.")
  limit = re.search(r"MaxArraySize\s*=\s*(\d+)", _command(["scontrol", "show", "config"]))
  if limit and num_tasks > int(limit.group(1)) - 1:
    raise ValueError(f"The sweep needs {num_tasks} array tasks, more than this cluster's "
                     f"MaxArraySize={limit.group(1)} allows (indices 0..MaxArraySize-1); split "
                     "the sweep or use vectorised groups of points.")


def _command(argv: list[str]) -> str:
  done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
  if done.returncode:
    raise ValueError(f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.returncode}; "
                     "is the SLURM controller up?")
  return done.stdout


def submit(groups: list[list[tuple[str, ml_collections.ConfigDict]]], workdir: str,
           options: SlurmOptions, cluster: str = "slurm") -> tuple[dict[str, Any], list]:
  """Writes TASKS_FILE and submits one array of len(groups) tasks; returns JOB_FILE's
  contents ({"job_id", "cluster", "folder", "tasks"}, also written) and submitit's jobs."""
  import submitit  # pylint: disable=import-outside-toplevel

  tasks = [{"points": [name for name, _ in group],
            "configs": [checkpoints.config_to_dict(config) for _, config in group]}
           for group in groups]
  with open(os.path.join(workdir, TASKS_FILE), "w") as f:
    json.dump(tasks, f, indent=1)
  folder = options.folder or os.path.join(workdir, "slurm")
  executor = submitit.AutoExecutor(folder=os.path.join(folder, "%j"), cluster=cluster)
  executor.update_parameters(
      timeout_min=_minutes(options.time), cpus_per_task=options.cpus_per_task,
      nodes=options.nodes, tasks_per_node=1, name=f"sweep:{os.path.basename(workdir)}")
  if cluster == "slurm":
    extra = dict(options.additional)
    if options.mem:
      extra["mem"] = options.mem
    executor.update_parameters(
        slurm_partition=options.partition, slurm_array_parallelism=options.array_parallelism,
        slurm_gpus_per_task=options.gpus_per_task or None,
        slurm_additional_parameters=extra)
  jobs = executor.map_array(run_task, [os.path.abspath(workdir)] * len(tasks),
                            list(range(len(tasks))))
  job = {"job_id": jobs[0].job_id.split("_")[0], "cluster": cluster, "folder": folder,
         "tasks": len(tasks)}
  with open(os.path.join(workdir, JOB_FILE), "w") as f:
    json.dump(job, f)
  return job, jobs


def tasks_alive(workdir: str, jobs: list) -> bool:
  """Whether a task of the array may still run: queued or running on SLURM (`squeue`;
  a requeued task is queued again), not yet done as a local process."""
  job = read_job(workdir)
  if job is not None and job["cluster"] == "slurm":
    return bool(queued_tasks(workdir))
  return any(not j.done() for j in jobs)


def _minutes(time: str) -> int:
  """A SLURM time limit in whole minutes (rounded up)."""
  days, _, clock = time.rpartition("-")
  parts = [int(p) for p in clock.split(":")]
  if days:  # D-HH[:MM[:SS]]
    parts += [0] * (3 - len(parts))
    seconds = int(days) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
  else:  # MM, MM:SS, HH:MM:SS
    seconds = {1: lambda p: p[0] * 60, 2: lambda p: p[0] * 60 + p[1],
               3: lambda p: p[0] * 3600 + p[1] * 60 + p[2]}[len(parts)](parts)
  return max(1, -(-seconds // 60))


def run_task(workdir: str, index: int) -> str:
  """Task `index` of the array: trains its points (together when several) in their
  workdirs, resuming them. Returns "finished", "failed" (recorded in the points'
  workdirs) or "requeued" (after SIGTERM: checkpoints saved, the task requeued)."""
  with open(os.path.join(workdir, TASKS_FILE)) as f:
    task = json.load(f)[index]
  configs = [ml_collections.ConfigDict(migration.migrate(c)) for c in task["configs"]]
  point_workdirs = [os.path.join(workdir, name) for name in task["points"]]
  distributed.initialize()  # several nodes: one process each, from SLURM's environment
  start = time.perf_counter()
  try:
    train.train_vectorized(configs, point_workdirs)
  except errors.NonFiniteLossError:
    return "failed"
  except KeyboardInterrupt:
    job_id = _own_job_id()
    if job_id and distributed.is_primary():
      subprocess.run(["scontrol", "requeue", job_id], check=False)
    return "requeued"
  finally:
    if distributed.is_primary():
      _charge_seconds(point_workdirs, time.perf_counter() - start)
  return "finished"


def task_seconds(point_workdir: str) -> float | None:
  """The wall time the array's tasks have spent on a point, summed over its attempts (a
  task of several points charges each an equal share); None if no task ran it."""
  try:
    with open(os.path.join(point_workdir, TASK_SECONDS_FILE)) as f:
      return float(json.load(f)["seconds"])
  except (OSError, ValueError, KeyError):
    return None


def _charge_seconds(point_workdirs: list[str], seconds: float) -> None:
  for point_workdir in point_workdirs:
    total = (task_seconds(point_workdir) or 0.0) + seconds / len(point_workdirs)
    with open(os.path.join(point_workdir, TASK_SECONDS_FILE), "w") as f:
      json.dump({"seconds": total}, f)


def _own_job_id() -> str | None:
  """This task's id for scontrol ("<array job>_<task>" in an array), None outside SLURM."""
  array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
  return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def read_job(workdir: str) -> dict[str, Any] | None:
  try:
    with open(os.path.join(workdir, JOB_FILE)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def queued_tasks(workdir: str) -> dict[int, str]:
  """{array task index: SLURM state} of the sweep's array tasks still in the queue."""
  job = read_job(workdir)
  if job is None or job["cluster"] != "slurm" or not shutil.which("squeue"):
    return {}
  done = subprocess.run(["squeue", "-h", "-r", "-j", job["job_id"], "-o", "%K %T"],
                        capture_output=True, text=True, timeout=60, check=False)
  states = {}
  for line in done.stdout.splitlines():
    index, _, state = line.partition(" ")
    if index.isdigit():
      states[int(index)] = state
  return states


def point_states(named: list[tuple[str, ml_collections.ConfigDict]], workdir: str,
                 is_finished, jobs: list | None = None) -> dict[str, tuple[str, str]]:
  """{point: (state, detail)}: "finished", "failed" (detail: its reason), "running" (its
  workdir is held by a trainer), "pending" (its task is queued, or, with this process's
  submitit `jobs` of the array, one of them not done) or "stopped" (neither: not
  submitted, or ended before finishing; rerun to resume)."""
  tasks_path = os.path.join(workdir, TASKS_FILE)
  task_of = {}
  if os.path.exists(tasks_path):
    with open(tasks_path) as f:
      task_of = {name: i for i, task in enumerate(json.load(f)) for name in task["points"]}
  array = read_job(workdir)
  if array is not None and array["cluster"] == "slurm":
    queued = queued_tasks(workdir)
  else:  # submitit's local executor: its processes of this sweep not done yet
    queued = {i: "waiting" for i, job in enumerate(jobs or ()) if not job.done()}
  states = {}
  for name, config in named:
    point_workdir = os.path.join(workdir, name)
    failure = workdirs.read_failure(point_workdir)
    step = checkpoints.latest_step(point_workdir) or 0
    if is_finished(config, point_workdir):
      states[name] = ("finished", f"step {step}")
    elif failure:
      states[name] = ("failed", f"step {failure['step']}: {failure['reason']}")
    elif os.path.isdir(point_workdir) and workdirs.is_locked(point_workdir):
      states[name] = ("running", f"checkpoint of step {step}")
    elif task_of.get(name) in queued:
      states[name] = ("pending", f"task {task_of[name]} {queued[task_of[name]].lower()}")
    else:
      states[name] = ("stopped", f"checkpoint of step {step}" if step else "not started")
  return states
