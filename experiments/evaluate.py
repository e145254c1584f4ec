r"""Evaluates a trained run: parses flags and calls `vae.evaluate.evaluate_run`.

  python -m experiments.evaluate --workdir=runs/default [--split=test] \
      [--num_importance_samples=5000] [--decompose_gap --num_examples=100] \
      [--estimator=ais]

Reads the run's config.json and latest checkpoint, prints a table of the ELBO, its terms,
log p(x) (IWAE, K samples), the bound gap and the active units (nats per example, mean
and standard error over the split), and writes them to <workdir>/eval_<split>.json (and
the per-example values to eval_<split>.npz). See the README, "Evaluating a run".
Batches are split over every device; several hosts: run the same command on each, adding
--coordinator_address=HOST0:PORT --num_processes=N --process_id=I (see README "Scaling out").
"""

from absl import app, flags

from vae import cli, distributed, evaluate

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's folder (config and checkpoints).")
_SPLIT = flags.DEFINE_string("split", "test", "train, validation or test.")
_NUM_IMPORTANCE_SAMPLES = flags.DEFINE_integer(
    "num_importance_samples", 5000, "K of the IWAE estimate of log p(x).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate; default the latest.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Examples evaluated at once; default the run's config.eval.batch_size.")
_CHUNK_SIZE = flags.DEFINE_integer(
    "chunk_size", None, "Importance samples per example evaluated at once; default the "
    "run's config.eval.chunk_size. Memory grows with batch_size * chunk_size, not K.")
_NUM_ELBO_SAMPLES = flags.DEFINE_integer(
    "num_elbo_samples", None, "Samples of the ELBO's reconstruction term; default the "
    "run's config.eval.num_elbo_samples.")
_DECOMPOSE_GAP = flags.DEFINE_boolean(
    "decompose_gap", False, "Split the gap into approximation and amortisation gaps "
    "(fits a Gaussian q* per example) on the first --num_examples examples.")
_NUM_EXAMPLES = flags.DEFINE_integer(
    "num_examples", 100, "Examples (the first of the split) for --decompose_gap and AIS.")
_ESTIMATOR = flags.DEFINE_enum(
    "estimator", "iwae", evaluate.ESTIMATORS, "iwae; or ais to add annealed importance "
    "sampling estimates of log p(x) on the first --num_examples examples.")
_AIS_STEPS = flags.DEFINE_integer("ais_steps", 500, "AIS annealing steps.")
_AIS_CHAINS = flags.DEFINE_integer("ais_chains", 16, "AIS chains per example.")
_AIS_LEAPFROG_STEPS = flags.DEFINE_integer("ais_leapfrog_steps", 5,
                                           "Leapfrog steps per HMC transition.")
_AIS_START = flags.DEFINE_enum("ais_start", "prior", ("prior", "encoder"),
                               "AIS base distribution: the prior p(z) or the encoder's q(z|x).")
_INITIALIZE_DISTRIBUTED = cli.define_distributed_flags()
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")

  def initialize_and_evaluate():
    _INITIALIZE_DISTRIBUTED()
    return evaluate.evaluate_run(
        _WORKDIR.value, _SPLIT.value, _NUM_IMPORTANCE_SAMPLES.value,
        decompose_gap=_DECOMPOSE_GAP.value, num_examples=_NUM_EXAMPLES.value,
        estimator=_ESTIMATOR.value, step=_STEP.value, batch_size=_BATCH_SIZE.value,
        chunk_size=_CHUNK_SIZE.value, num_elbo_samples=_NUM_ELBO_SAMPLES.value,
        ais_steps=_AIS_STEPS.value, ais_chains=_AIS_CHAINS.value,
        ais_leapfrog_steps=_AIS_LEAPFROG_STEPS.value, ais_start=_AIS_START.value)

  results = cli.run(initialize_and_evaluate)
  if not distributed.is_primary():
    return
  print(evaluate.format_report(results))
  print(f"Written to {_WORKDIR.value}/eval_{_SPLIT.value}.json")


if __name__ == "__main__":
  app.run(main)
