"""Which source each `config.data.name` reads: the one place a data source is added.

A new source is a value that implements `source.DataSource` (in its own module) and one
entry here; its name then passes the config checks and every reader finds it.
"""

from __future__ import annotations

from vae.data import embedded, idx, npz, source, tfds_catalog

SOURCES: dict[str, source.DataSource] = {
    "embedded_mnist": embedded.MNIST,
    "embedded_digits": embedded.DIGITS,
    "mnist": tfds_catalog.CatalogSet("mnist", (28, 28, 1), "grayscale"),
    "binarized_mnist": tfds_catalog.CatalogSet("binarized_mnist", (28, 28, 1), "binary"),
    "fashion_mnist": tfds_catalog.CatalogSet("fashion_mnist", (28, 28, 1), "grayscale"),
    "cifar10": tfds_catalog.CatalogSet("cifar10", (32, 32, 3), "color"),
    "npz": npz.NpzFile(),
    "idx": idx.IdxFolder(),
}
DATASET_NAMES = tuple(SOURCES)
