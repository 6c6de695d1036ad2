"""Data for the experiments.

- :mod:`minirims.experiments.data.mnist`: offline, verified MNIST; nearest-neighbour resolution transform;
  binary pixel sequences (``python -m minirims data fetch`` builds the cache).
- :mod:`minirims.experiments.data.balls`: the bouncing-balls simulator and renderer.
"""

from minirims.experiments.data.mnist import (
    RESOLUTIONS,
    SPLITS,
    MNISTUnavailableError,
    binarize,
    data_dir,
    fetch_mnist,
    load_mnist,
    pixel_sequences,
    resize_nearest,
    sequence_length,
)

__all__ = [
    "RESOLUTIONS",
    "SPLITS",
    "MNISTUnavailableError",
    "binarize",
    "data_dir",
    "fetch_mnist",
    "load_mnist",
    "pixel_sequences",
    "resize_nearest",
    "sequence_length",
]
