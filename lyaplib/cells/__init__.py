"""Dynamical systems with tangent maps (the Cell protocol) for ``lyapunov_spectrum``."""

from .base import AutogradCell, Cell, CellModule
from .maps import Henon, LinearMap, Logistic, Lorenz

__all__ = ["AutogradCell", "Cell", "CellModule", "Henon", "LinearMap", "Logistic", "Lorenz"]
