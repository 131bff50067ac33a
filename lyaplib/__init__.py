"""lyaplib: Lyapunov exponents of recurrent neural networks, in PyTorch.

The engine is :func:`lyapunov_spectrum`, which takes any :class:`Cell`. The modules:

* ``cells``: dynamical systems with analytic tangents (maps, RNNs, LSTM/GRU, the zoo);
* ``models``: trainable models and the registry of architectures, ``ARCHITECTURES``;
* ``tasks``, ``training``, ``sweeps``, ``population``, ``force``: the experiments;
* ``flossing``: pushing exponents towards a target while training (gradient flossing);
* ``testing``: :func:`~lyaplib.testing.check_tangent` for your own cells;
* ``aelle``, ``perturbations``, ``fractional``, ``stats``: analyses of spectra and runs;
* ``uncertainty``: error bars from one trajectory (batch means) and the convergence report;
* ``data``, ``scale``, ``plotting``, ``widgets``, ``benchmark``, ``claims``: the book's tools.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from . import cells, scale, stats, uncertainty
from .cells import AutogradCell, Cell
from .orthonormalize import orthonormalize, random_basis
from .spectrum import LyapunovError, LyapunovResult, LyapunovWarning, lyapunov_spectrum

try:  # the version is written once, in pyproject.toml
    __version__ = version("lyaplib")
except PackageNotFoundError:  # a source tree on sys.path without installing it
    __version__ = "0+unknown"

# loaded on first use, so that ``import lyaplib`` stays light (no matplotlib, no data)
_SUBMODULES = ("aelle", "benchmark", "claims", "classify", "data", "flossing", "force",
               "fractional", "models", "perturbations", "plotting", "population", "store",
               "sweeps", "tasks", "testing", "training", "widgets")

__all__ = [
    "AutogradCell", "Cell", "LyapunovError", "LyapunovResult", "LyapunovWarning",
    "lyapunov_spectrum", "orthonormalize", "random_basis", "cells", "scale", "stats", "uncertainty",
    *_SUBMODULES,
]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lyaplib' has no attribute {name!r}")
