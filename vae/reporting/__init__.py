"""Where a run's results go: metrics.jsonl, TensorBoard and the console
(`metric_writers`), Weights & Biases if asked (`wandb_run`), image grids and charts
(`images`), progress lines with speed and ETA (`progress`).

Floor 2: may import the kernels, `vae.common`, `vae.models`, `vae.data` and the other
floor-2 packages; never the apps or the shipped configs.
"""
