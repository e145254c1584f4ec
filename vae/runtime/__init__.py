"""The process a command runs in: what every app shares (`cli`: quiet logs, one-line
errors), JAX's persistent compilation cache (`compilation_cache`), and data parallelism
over every device of every process (`distributed`).

Floor 2: may import the kernels, `vae.common`, `vae.models`, `vae.data` and the other
floor-2 packages; never the apps or the shipped configs.
"""
