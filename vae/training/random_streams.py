"""The random streams of a run, named in one place.

Every PRNG key a run uses is `stream(seed, S)` = fold_in(PRNGKey(seed), S) for one of
the streams below (each evaluated example then folds in its index), so the training
loop's own evaluations and `experiments.evaluate` draw the same numbers, and no two
uses share a stream.
"""

from __future__ import annotations

import jax

INIT = 0  # parameter initialisation
TRAIN = 1  # the training steps: fold_in(., step)
EVAL = 2  # ELBO and IWAE of every evaluation (also experiments.evaluate's main pass)
IMAGES = 3  # the prior samples shown in the sample grids
GAP_DECOMPOSITION = 10  # the per-example fits of q* (vae.kernels.inference_gap)
AIS = 11  # annealed importance sampling (vae.kernels.ais)


def stream(seed: int, index: int) -> jax.Array:
  """The key of stream `index` of the run with seed `seed`."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), index)
