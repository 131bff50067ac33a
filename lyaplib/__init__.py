"""lyaplib: Lyapunov exponents of recurrent neural networks, in PyTorch."""

from . import cells, scale, stats
from .cells import AutogradCell, Cell
from .orthonormalize import orthonormalize
from .spectrum import LyapunovError, LyapunovResult, LyapunovWarning, lyapunov_spectrum

__version__ = "0.1.0"

__all__ = [
    "AutogradCell", "Cell", "LyapunovError", "LyapunovResult", "LyapunovWarning", "cells",
    "lyapunov_spectrum",
    "orthonormalize", "scale", "stats",
]
