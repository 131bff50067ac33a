"""Fractional differentiation and integration by FFT, and fitting a response's order.

D^alpha x = IFFT[(i 2 pi f)^alpha FFT[x]], with the f = 0 term set to 0 (the mean is
removed); alpha > 0 differentiates, alpha < 0 integrates. Signals are treated as
periodic, as the FFT does, so the results are exact for periodic band-limited
signals (e.g. D^(1/2) sin(w t) = w^(1/2) sin(w t + pi/4)).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._arguments import int_at_least


def fractional_derivative(x: Tensor, alpha: float, dt: float = 1.0) -> Tensor:
    """D^alpha of x along its last dimension (samples ``dt`` apart); same shape as x."""
    if dt <= 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    n = x.shape[-1]
    f = torch.fft.rfftfreq(n, d=dt, dtype=torch.float64, device=x.device)
    factor = torch.zeros_like(f, dtype=torch.complex128)
    factor[1:] = (2j * math.pi * f[1:]) ** alpha  # irfft keeps the real part at Nyquist
    spectrum = torch.fft.rfft(x.to(torch.float64), dim=-1) * factor
    return torch.fft.irfft(spectrum, n=n, dim=-1).to(x.dtype)


def order_profile(drive: Tensor, response: Tensor, alphas: Tensor, dt: float = 1.0
                  ) -> tuple[Tensor, Tensor]:
    """How well c D^alpha(drive) fits ``response`` (T,) for each of ``alphas`` (A,).

    For each alpha the scale c is the least-squares one (means removed); returns the
    relative residuals ||r - c d|| / ||r|| and the scales, (A,) each, float64.
    """
    if drive.shape != response.shape or drive.ndim != 1:
        raise ValueError(f"drive and response must be (T,) of one length, got "
                         f"{tuple(drive.shape)} and {tuple(response.shape)}")
    r = response.to(torch.float64)
    r = r - r.mean()
    d = torch.stack([fractional_derivative(drive.to(torch.float64), float(a), dt)
                     for a in alphas])
    d = d - d.mean(-1, keepdim=True)
    scales = (d @ r) / (d * d).sum(-1).clamp_min(1e-300)
    residuals = (r - scales[:, None] * d).norm(dim=-1) / r.norm().clamp_min(1e-300)
    return residuals, scales


FIT_RESIDUAL = 0.5  # a fit explains 3/4 of the response's variance or is no fit


class OrderFit(NamedTuple):
    """The best order ``alpha``, its scale c and the relative residual
    ||r - c D^alpha d|| / ||r||. An order means something only where the fit explains
    the response: ``fits`` is residual < ``FIT_RESIDUAL`` (3/4 of the variance)."""

    alpha: float
    scale: float
    residual: float

    @property
    def fits(self) -> bool:
        """Whether c D^alpha(drive) explains the response (residual < FIT_RESIDUAL)."""
        return self.residual < FIT_RESIDUAL

    def describe(self) -> str:
        """The order, signed to 2 decimals, or "no fit" where the fit failed."""
        return f"{self.alpha:+.2f}" if self.fits else "no fit"


def fit_order(drive: Tensor, response: Tensor, dt: float = 1.0, *, low: float = 0.0,
              high: float = 1.0, points: int = 101) -> OrderFit:
    """The order alpha in [low, high] for which c D^alpha(drive) best fits ``response``.

    The best of :func:`order_profile` on ``points`` equally spaced orders, as an
    :class:`OrderFit` (alpha, c, relative residual), which says whether it fits at all.
    """
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"low and high must be finite with low < high, got {low}, {high}")
    points = int_at_least(points, 2, "points", error=ValueError)
    for name, t in (("drive", drive), ("response", response)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite")
    alphas = torch.linspace(low, high, points, dtype=torch.float64)
    residuals, scales = order_profile(drive, response, alphas, dt)
    best = int(residuals.argmin())
    return OrderFit(float(alphas[best]), float(scales[best]), float(residuals[best]))
