"""Dynamical systems with tangent maps (the Cell protocol) for ``lyapunov_spectrum``."""

from .base import AutogradCell, Cell, CellModule
from .gated import GRU, LSTM
from .maps import Henon, LinearMap, Logistic, Lorenz
from .rnn import RNN, VanillaRNN

__all__ = [
    "GRU", "LSTM", "RNN", "AutogradCell", "Cell", "CellModule", "Henon", "LinearMap", "Logistic",
    "Lorenz", "VanillaRNN",
]
