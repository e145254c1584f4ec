"""A model padded to more latents with the unused ones masked (`vae.kernels.padding`)
gives the unpadded model's bounds and gradients, and no gradient to its padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae.kernels import bounds, collapse, padding

D, D_MAX, X_DIM, HIDDEN = 3, 5, 6, 4


def toy_params(key, latent_dim):
  shapes = {"w_mean": (X_DIM, latent_dim), "b_mean": (latent_dim,),
            "w_logvar": (X_DIM, latent_dim), "b_logvar": (latent_dim,),
            "w_hidden": (latent_dim, HIDDEN), "w_out": (HIDDEN, X_DIM)}
  keys = jax.random.split(key, len(shapes))
  return {name: 0.5 * jax.random.normal(k, shape) for k, (name, shape)
          in zip(keys, sorted(shapes.items()))}


def zero_padded(params):
  """The D-latent params as D_MAX-latent ones, zeros in the new rows and columns."""
  def pad(leaf):
    return jnp.pad(leaf, [(0, (D_MAX if n == D else n) - n) for n in leaf.shape])
  return {name: pad(leaf) if name != "w_out" else leaf for name, leaf in params.items()}


def networks(params):
  encode = lambda x: (x @ params["w_mean"] + params["b_mean"],
                      0.3 * jnp.tanh(x @ params["w_logvar"] + params["b_logvar"]))
  decode = lambda z: jnp.tanh(z @ params["w_hidden"]) @ params["w_out"]
  return encode, decode


def masked_networks(params):
  return padding.mask_unused(*networks(params), padding.used_dimensions(D, D_MAX))


def x_example():
  return (jax.random.uniform(jax.random.PRNGKey(9), (X_DIM,)) > 0.5).astype(jnp.float32)


BOUNDS = {
    "elbo_analytic": lambda key, x, enc, dec: bounds.elbo(key, x, enc, dec).elbo,
    "elbo_monte_carlo_3": lambda key, x, enc, dec: bounds.elbo(
        key, x, enc, dec, num_samples=3, analytic_kl=False).elbo,
    "iwae_7": lambda key, x, enc, dec: bounds.iwae_bound(key, x, enc, dec, num_samples=7),
    "iwae_dreg_7": lambda key, x, enc, dec: bounds.bound_objective(
        key, x, enc, dec, num_samples=7, gradient_estimator="dreg"),
}


def test_the_first_normals_of_a_longer_draw_are_the_shorter_draw():
  """What the padded model's samples rest on (jax's partitionable threefry)."""
  key = jax.random.PRNGKey(3)
  np.testing.assert_array_equal(jax.random.normal(key, (D_MAX,))[:D],
                                jax.random.normal(key, (D,)))


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_a_padded_model_has_the_unpadded_bound_and_gradient(name):
  bound = BOUNDS[name]
  params = toy_params(jax.random.PRNGKey(0), D)
  key, x = jax.random.PRNGKey(1), x_example()
  alone = lambda p: bound(key, x, *networks(p))
  padded = lambda p: bound(key, x, *masked_networks(p))
  value, grads = jax.value_and_grad(alone)(params)
  padded_value, padded_grads = jax.value_and_grad(padded)(zero_padded(params))
  np.testing.assert_allclose(padded_value, value, rtol=1e-6)
  for leaf, padded_leaf in zip(jax.tree.leaves(grads), jax.tree.leaves(padded_grads)):
    used = tuple(slice(0, n) for n in leaf.shape)
    np.testing.assert_allclose(padded_leaf[used], leaf, rtol=1e-5, atol=1e-6)
    assert not np.any(_outside(padded_leaf, leaf.shape)), "a gradient in the padding"
  garbage = toy_params(jax.random.PRNGKey(5), D_MAX)  # whatever the padding holds
  filled = {name: garbage[name].at[tuple(slice(0, n) for n in leaf.shape)].set(leaf)
            for name, leaf in params.items()}
  np.testing.assert_allclose(padded(filled), value, rtol=1e-6)


def _outside(padded_leaf, shape):
  """padded_leaf with its used block zeroed: what only the padding holds."""
  outside = np.array(padded_leaf)
  outside[tuple(slice(0, n) for n in shape)] = 0.0
  return outside


def test_the_masked_dimensions_have_no_kl_and_free_bits_skip_them():
  params = zero_padded(toy_params(jax.random.PRNGKey(0), D))
  encode, _ = masked_networks(params)
  kl = collapse.kl_per_dim(jax.random.PRNGKey(2), x_example(), encode)
  assert kl.shape == (D_MAX,) and np.all(np.asarray(kl[D:]) == 0.0)
  assert np.all(np.asarray(kl[:D]) > 0.0)
  used = padding.used_dimensions(D, D_MAX)
  expected = float(jnp.sum(jnp.maximum(0.5, kl[:D])))
  assert float(collapse.free_bits_kl(kl, 0.5, used)) == pytest.approx(expected)
  assert float(collapse.free_bits_kl(kl, 0.5)) == pytest.approx(expected + 0.5 * (D_MAX - D))


def test_the_number_of_used_dimensions_may_be_traced_and_vmapped():
  used = jax.jit(jax.vmap(lambda n: padding.used_dimensions(n, D_MAX)))(jnp.array([1, 5]))
  np.testing.assert_array_equal(used, [[True] + [False] * 4, [True] * 5])
