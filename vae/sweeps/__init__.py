"""Sweeps as code: a sweep file's points, expanded into configs, run and summarised.

A sweep file is a config file whose `get_sweep()` returns its points, built with
`axis`, `product` and `zip_points` over dotted config keys (`from vae import sweeps`);
`run_sweep` trains every point in its own sub-workdir, then writes the summary.

Modules:
  points: the sweep-file API (`axis`, `product`, `zip_points`), reading a sweep file's
    points and table, and turning points into named, checked configs.
  run: running a sweep's points (sequential, vectorised, parallel, or as a job array),
    resuming, failed points, their command lines and the wall time saved per point.
  slurm: job arrays through submitit (SLURM or local processes): the checks of the
    cluster options, the task each array index runs, the points' states.
  summary: a finished sweep as a table (summary.csv, summary.md, a paper's layout) and plots.

Floor 2: may import `vae.kernels`, `vae.common`, `vae.models`, `vae.data`, the other
floor-2 packages (`vae.config`, `vae.training`, `vae.evaluation`, `vae.reporting`,
`vae.runtime`) and itself; never `vae.apps` or `vae.configs`.
"""

from vae.sweeps.points import (Point, apply_point, axis, expand, load_points, load_table,
                               point_name, product, zip_points)
from vae.sweeps.run import MODES, TIMES_FILE, point_commands, run_sweep, sweep_status
from vae.sweeps.slurm import SlurmOptions

__all__ = [
    "MODES", "TIMES_FILE", "Point", "SlurmOptions", "apply_point", "axis", "expand",
    "load_points", "load_table", "point_commands", "point_name", "product", "run_sweep",
    "sweep_status", "zip_points",
]
