"""Config handling: the checks of a whole run config before any work starts (`checks`),
config and sweep files as Python modules and their errors in one line (`files`), and the
migration of configs saved by runs that predate a field (`migration`).

Floor 2: may import the kernels, `vae.common`, `vae.models`, `vae.data` and the other
floor-2 packages; never the apps or the shipped configs.
"""
