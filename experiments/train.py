r"""Trains a VAE: parses flags and calls `vae.training.train.train_and_evaluate`.

  python -m experiments.train --config=configs/default.py --workdir=runs/default \
      [--config.model.latent_dim=8 --config.loss.beta=2 ...]

Rerunning the same command with the same --workdir resumes from the latest checkpoint.
Several hosts: run the same command on each, adding --coordinator_address=HOST0:PORT
--num_processes=N --process_id=I (or nothing under SLURM; see README "Scaling out").
"""

from absl import app, flags
from ml_collections import config_flags

from vae.runtime import cli
from vae.training import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file, e.g. configs/default.py.", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Folder for checkpoints, metrics, TensorBoard events and images.")
_INITIALIZE_DISTRIBUTED = cli.define_distributed_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")

  def initialize_and_train():
    _INITIALIZE_DISTRIBUTED()
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)

  cli.run(initialize_and_train)


def run():
  """The `vae-train` command."""
  app.run(main, flags_parser=cli.flags_parser("config"))


if __name__ == "__main__":
  run()
