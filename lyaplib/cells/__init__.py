"""Dynamical systems with tangent maps (the Cell protocol) for ``lyapunov_spectrum``."""

from . import adaptive
from .adaptive import ARU, GammaRNN
from .base import AutogradCell, Cell, CellModule, RecurrentModule
from .gated import GRU, LSTM
from .maps import Henon, LinearMap, Logistic, Lorenz
from .rnn import RNN, ForceRNN, VanillaRNN
from .zoo import LEM, AntisymmetricRNN, CoRNN, LipschitzRNN, NoisyRNN

__all__ = [
    "ARU", "GRU", "GammaRNN", "LEM", "LSTM", "RNN", "AntisymmetricRNN", "AutogradCell", "Cell",
    "CellModule", "CoRNN", "ForceRNN", "Henon", "LinearMap", "LipschitzRNN", "Logistic", "Lorenz",
    "NoisyRNN", "RecurrentModule", "VanillaRNN", "adaptive",
]
