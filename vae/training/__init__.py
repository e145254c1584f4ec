"""Training: the pure update step (`update`), a group of runs trained together (`runs`),
runs of other latent sizes padded to train together (`padded_latents`), the loop
(`train`), orbax checkpoints and the best one kept (`checkpoints`,
`best_checkpoint`), the workdir and its lock (`workdirs`), prefetching to the device
(`prefetch`) and the named random streams of a run (`random_streams`).

Floor 2: may import the kernels, `vae.common`, `vae.models`, `vae.data` and the other
floor-2 packages (`vae.evaluation`, `vae.config`, `vae.reporting`, `vae.runtime`); never
the apps or the shipped configs.
"""
