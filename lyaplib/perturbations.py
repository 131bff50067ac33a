"""Perturbations of a sequence task at test time (Geadah et al.'s robustness tests).

A perturbation maps input sequences x (B, T, I) to ``(x', drive)``: transformed
inputs, and an external drive (B, T) added to every neuron's pre-activation
(``RecurrentClassifier(..., drive=)``), or None. Randomness comes from the
``generator`` passed in, so a perturbed test set is reproducible.

* :class:`StepDrive`: a constant current xi for ``duration`` steps, like
  optogenetic stimulation.
* :class:`NoisyDrive`: i.i.d. N(0, xi^2) current at every step (``baseline``
  noise outside the window), the protocol of the gain-scaling experiment.
* :class:`SinusoidalContrast`: the inputs multiplied by a slow brightness
  factor 1 + amplitude sin(2 pi cycles t / T + phase), a random phase per sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


class Perturbation(Protocol):
    """What a perturbation is: a callable that perturbs a batch of input sequences."""

    def __call__(self, x: Tensor, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, I) -> (perturbed inputs (B, T, I), drive (B, T) or None)."""
        ...


def _window(steps: int, start: int, duration: int | None, device) -> Tensor:
    """(T,) bool: steps start <= t < start + duration (to the end when None)."""
    t = torch.arange(steps, device=device)
    end = steps if duration is None else start + duration
    return (t >= start) & (t < end)


def _check_window(start: int, duration: int | None) -> None:
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if duration is not None and duration < 1:
        raise ValueError(f"duration must be >= 1 or None, got {duration}")


@dataclass(frozen=True)
class StepDrive:
    """Drive xi from step ``start`` for ``duration`` steps (to the end if None), else 0."""

    xi: float
    start: int = 0
    duration: int | None = None

    def __post_init__(self):
        _check_window(self.start, self.duration)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None):
        window = _window(x.shape[1], self.start, self.duration, x.device)
        return x, (self.xi * window.to(x.dtype)).expand(x.shape[0], -1)


@dataclass(frozen=True)
class NoisyDrive:
    """Drive ~ N(0, xi^2) i.i.d. per sequence and step inside the window, N(0, baseline^2)
    outside it."""

    xi: float
    start: int = 0
    duration: int | None = None
    baseline: float = 0.0

    def __post_init__(self):
        _check_window(self.start, self.duration)
        if self.xi < 0 or self.baseline < 0:
            raise ValueError(f"xi and baseline are standard deviations, >= 0; "
                             f"got {self.xi} and {self.baseline}")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None):
        B, T = x.shape[:2]
        window = _window(T, self.start, self.duration, "cpu")
        std = torch.where(window, self.xi, self.baseline).to(x.dtype)
        noise = torch.randn(B, T, generator=generator, dtype=x.dtype)
        return x, (noise * std).to(x.device)


@dataclass(frozen=True)
class SinusoidalContrast:
    """Inputs times 1 + amplitude sin(2 pi cycles t / T + phase), phase ~ U(0, 2 pi)."""

    amplitude: float
    cycles: float = 1.0

    def __post_init__(self):
        if not 0 <= self.amplitude <= 1:
            raise ValueError(f"amplitude must be in [0, 1] (brightness stays >= 0), "
                             f"got {self.amplitude}")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None):
        B, T = x.shape[:2]
        phase = 2 * math.pi * torch.rand(B, 1, generator=generator, dtype=torch.float64)
        t = torch.arange(T, dtype=torch.float64)
        factor = 1 + self.amplitude * torch.sin(2 * math.pi * self.cycles * t / T + phase)
        return x * factor.to(x).unsqueeze(-1), None


__all__ = ["NoisyDrive", "Perturbation", "SinusoidalContrast", "StepDrive"]
