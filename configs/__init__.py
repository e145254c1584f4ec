"""The shipped configs (`--config=NAME` or `--config=configs/NAME.py`), one file each, whose
docstring gives its command and what it reaches; `configs.sweeps` holds the shipped sweeps.

Floor 3 (installed as `vae.configs`): may import any floor of `vae`.
"""
