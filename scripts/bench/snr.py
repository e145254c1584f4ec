"""The gradient signal-to-noise ratio that scripts/gradient_snr.py reports."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from vae.kernels import bounds


def snr(model, params, x, k: int, estimator: str, num_draws: int) -> dict[str, float]:
  """SNR = |E g| / std g of the gradient of mean IWAE_K over x (B, H, W, C) with this
  estimator, per parameter, averaged over the encoder's and over the decoder's params:
  {"encoder": ..., "decoder": ...}. From running sums of g and g^2 over `num_draws`
  draws (memory: two copies of the parameters); `model` a `vae.models.Model`."""

  def objective(p, key):
    return jnp.mean(bounds.bound_objective_batch(
        key, x, *model.bind(p),
        objective="iwae", num_samples=k, gradient_estimator=estimator,
        likelihood=model.likelihood, prior=model.prior(p)))

  grad = jax.grad(objective)

  def body(sums, key):
    total, squares = sums
    g = grad(params, key)
    return (jax.tree.map(jnp.add, total, g),
            jax.tree.map(lambda q, gi: q + gi * gi, squares, g)), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  (total, squares), _ = jax.jit(lambda keys: jax.lax.scan(body, (zeros, zeros), keys))(
      jax.random.split(jax.random.PRNGKey(k), num_draws))
  mean = jax.tree.map(lambda s: s / num_draws, total)
  var = jax.tree.map(lambda q, m: jnp.maximum(q / num_draws - m * m, 0.0), squares, mean)
  ratio = jax.tree.map(lambda m, v: jnp.abs(m) / (jnp.sqrt(v * num_draws / (num_draws - 1))
                                                 + 1e-12), mean, var)
  return {part: float(np.mean(np.concatenate(
      [np.ravel(leaf) for leaf in jax.tree.leaves(ratio[part])])))
          for part in ("encoder", "decoder")}
