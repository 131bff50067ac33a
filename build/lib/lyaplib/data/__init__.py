"""Datasets for the book's experiments, found locally, downloaded on request, or substituted.

``war_and_peace()`` and ``cmu_mocap()`` report where their data came from in
``.source``; see ``_files`` for the resolution order shared by all loaders.
"""

from ._files import DataError, DataFallbackWarning, in_colab
from ._files import project_cache as cache_dir
from .mocap import MocapData, cmu_mocap, synthetic_motion
from .text import Corpus, war_and_peace

__all__ = ["Corpus", "DataError", "DataFallbackWarning", "MocapData", "cache_dir", "cmu_mocap",
           "in_colab",
           "synthetic_motion", "war_and_peace"]
