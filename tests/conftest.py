"""Test-wide settings: tiny programs compile faster than they run, so skip XLA's optimisations."""

import jax

jax.config.update("jax_disable_most_optimizations", True)
