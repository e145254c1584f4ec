r"""A real one-node SLURM cluster on this machine, for trying `--mode=slurm` and for the tests.

  python -m scripts.slurm_local start [--folder=/tmp/slurm-local]   # as root
  python -m scripts.slurm_local stop [--folder=/tmp/slurm-local]

Needs Debian's `slurm-wlm` and `munge` (`apt-get install -y slurm-wlm munge`). Writes a
slurm.conf for one node (this host, all its CPUs and memory) and one partition, "debug",
into --folder with the state, spool, log and pid files; creates munge's key if there is
none; starts munged, slurmctld and slurmd and waits until `sinfo` shows the node idle.
`stop` ends them (the pids in the folder). Jobs may be requeued (JobRequeue=1); there is
no accounting (no `sacct`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

from absl import app, flags

PARTITION = "debug"
MAX_ARRAY_SIZE = 1001

_FOLDER = flags.DEFINE_string("folder", "/tmp/slurm-local", "The cluster's files.")


def installed() -> bool:
  return all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch"))


def responds() -> bool:
  """Whether a SLURM controller answers `sinfo`."""
  if not shutil.which("sinfo"):
    return False
  done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                        timeout=30, check=False)
  return done.returncode == 0 and bool(done.stdout.strip())


def _config(folder: str) -> str:
  host = socket.gethostname()
  memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
  paths = {name: os.path.join(folder, name) for name in ("state", "spool", "log")}
  for path in paths.values():
    os.makedirs(path, exist_ok=True)
  return "\n".join([
      "ClusterName=local", f"SlurmctldHost={host}", "SlurmUser=root",
      "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
      "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
      "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2",
      "JobRequeue=1", f"MaxArraySize={MAX_ARRAY_SIZE}", "MpiDefault=none",
      f"StateSaveLocation={paths['state']}", f"SlurmdSpoolDir={paths['spool']}",
      f"SlurmctldLogFile={paths['log']}/slurmctld.log",
      f"SlurmdLogFile={paths['log']}/slurmd.log",
      f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd.pid",
      f"NodeName={host} CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN",
      f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""])


def _start_munge() -> None:
  if subprocess.run(["pgrep", "-x", "munged"], capture_output=True, check=False).returncode == 0:
    return
  key = "/etc/munge/munge.key"
  if not os.path.exists(key):
    subprocess.run(["mungekey", "--create"], check=True)
  shutil.chown(key, "munge", "munge")
  os.chmod(key, 0o400)
  os.makedirs("/run/munge", exist_ok=True)
  shutil.chown("/run/munge", "munge", "munge")
  subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"], check=True)


def start(folder: str, timeout_s: float = 60.0) -> None:
  """Starts the cluster (see the module docstring); returns once the node is idle.

  Raises:
    RuntimeError: SLURM is not installed, or the node is not idle within timeout_s.
  """
  if not installed():
    raise RuntimeError("SLURM is not installed: apt-get install -y slurm-wlm munge")
  os.makedirs(folder, exist_ok=True)
  with open("/etc/slurm/slurm.conf", "w") as f:
    f.write(_config(folder))
  _start_munge()
  subprocess.run(["/usr/sbin/slurmctld"], check=True)
  subprocess.run(["/usr/sbin/slurmd"], check=True)
  deadline = time.time() + timeout_s
  while time.time() < deadline:
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                          check=False)
    if done.stdout.strip() == "idle":
      return
    time.sleep(0.5)
  raise RuntimeError(f"The SLURM node is not idle after {timeout_s:.0f} s; see {folder}/log.")


def stop(folder: str) -> None:
  """Ends slurmd and slurmctld (munged stays, harmless)."""
  for name in ("slurmd", "slurmctld"):
    try:
      with open(os.path.join(folder, f"{name}.pid")) as f:
        os.kill(int(f.read().strip()), signal.SIGTERM)
    except (OSError, ValueError):
      pass


def main(argv):
  if len(argv) != 2 or argv[1] not in ("start", "stop"):
    raise app.UsageError("usage: python -m scripts.slurm_local start|stop [--folder=...]")
  (start if argv[1] == "start" else stop)(_FOLDER.value)


if __name__ == "__main__":
  app.run(main)
