"""The absl apps: `train` (vae-train), `evaluate` (vae-evaluate) and `sweep` (vae-sweep). Each
parses its flags and calls the library; `python -m experiments.train` runs one from a
checkout.

Floor 3 (installed as `vae.apps`): may import any floor of `vae`.
"""
