"""The shipped sweeps (`--sweep=NAME`): each file's `get_config()` is the base config and
its `sweep()` the points, written with `vae.sweeps.axis`, `product` and `zip_points`."""
