"""Data for the experiments.

- :mod:`minirims.experiments.data.mnist`: offline, verified MNIST; nearest-neighbour resolution transform;
  binary pixel sequences (``python -m minirims data fetch`` builds the cache).
- :mod:`minirims.experiments.data.balls`: the bouncing-balls simulator and renderer.
"""

from minirims.experiments.data.mnist import *  # noqa: F403 -- the MNIST API, as mnist.__all__ lists it
from minirims.experiments.data.mnist import __all__  # noqa: F401
