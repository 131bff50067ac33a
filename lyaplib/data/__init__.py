"""Datasets for the book's experiments, found locally, downloaded on request, or substituted.

``war_and_peace()``, ``cmu_mocap()`` and ``mnist()`` report where their data came from in
``.source``; see ``_files`` for the resolution order shared by all loaders.
"""

from ._files import DataError, DataFallbackWarning, download_allowed, in_colab
from ._files import project_cache as cache_dir
from .mnist import MnistData, as_sequences, mnist, pixel_permutation
from .mocap import MocapData, cmu_mocap, synthetic_motion
from .text import Corpus, war_and_peace

__all__ = ["Corpus", "DataError", "DataFallbackWarning", "MnistData", "MocapData", "as_sequences",
           "cache_dir", "cmu_mocap", "download_allowed", "in_colab", "mnist", "pixel_permutation",
           "synthetic_motion", "war_and_peace"]
