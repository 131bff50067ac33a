"""Error bars for Lyapunov exponents from one trajectory, and a convergence diagnostic.

The engine keeps the sums of log R_ii over consecutive blocks of steps (``block_sums``,
(n, B, k) float64, and ``block_steps``, (n,) the accumulated steps at each block's end).
Neighbouring local exponents are correlated, so their naive standard error (as if every
step were independent) is too small. Batch means fixes that: the blocks are grouped into
a few long batches, whose means are nearly independent when a batch is much longer than
the correlation time, and the spread of the batch means gives the standard error
(Flegal & Jones 2010). It needs one trajectory, not many.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

DEFAULT_BATCHES = 32  # 10-30+ batches: enough degrees of freedom, batches still long


def batch_means(block_sums: Tensor, block_steps: Tensor,
                batches: int = DEFAULT_BATCHES) -> tuple[Tensor, int]:
    """Per-sequence batch-means standard errors of the exponents.

    The n blocks are grouped into ``min(batches, n)`` consecutive batches of near-equal
    length L_j; with y_j a batch's mean exponent and y the run's, the long-run variance per
    step is ``sum_j L_j (y_j - y)^2 / (m - 1)`` (unbiased for independent steps, also for
    unequal L_j), and its square root over sqrt(T) is the standard error.

    Args:
        block_sums: (n, B, k) sums of log R_ii over consecutive blocks.
        block_steps: (n,) accumulated steps at the end of each block (increasing).
        batches: the number of batches m (>= 2).

    Returns:
        ((B, k) standard errors, NaN where fewer than 2 blocks exist; degrees of freedom m - 1).
    """
    if batches < 2:
        raise ValueError(f"batches must be at least 2, got {batches}")
    n, B, k = block_sums.shape
    m = min(batches, n)
    if m < 2:
        return torch.full((B, k), float("nan"), dtype=torch.float64,
                          device=block_sums.device), 0
    sums = block_sums.to(torch.float64)
    cumulative = torch.cat([sums.new_zeros(1, B, k), sums.cumsum(0)])
    steps = torch.cat([block_steps.new_zeros(1), block_steps]).to(sums.device, torch.float64)
    edges = torch.linspace(0, n, m + 1, device=sums.device).round().long()
    length = (steps[edges[1:]] - steps[edges[:-1]])[:, None, None]  # (m, 1, 1)
    batch_mean = (cumulative[edges[1:]] - cumulative[edges[:-1]]) / length
    total = steps[-1]
    run_mean = cumulative[-1] / total
    long_run_variance = (length * (batch_mean - run_mean) ** 2).sum(0) / (m - 1)
    return (long_run_variance / total).sqrt(), m - 1


def split_half(block_sums: Tensor, block_steps: Tensor) -> Tensor:
    """(B, k) the first half's estimate minus the second half's, split at the block end
    nearest T/2. For a stationary run its root mean square is about twice the standard error."""
    cumulative = block_sums.to(torch.float64).cumsum(0)
    if len(cumulative) < 2:
        return torch.full_like(cumulative[0], float("nan"))
    steps = block_steps.to(cumulative.device, torch.float64)
    total = steps[-1]
    h = int((steps[:-1] - total / 2).abs().argmin())
    first = cumulative[h] / steps[h]
    second = (cumulative[-1] - cumulative[h]) / (total - steps[h])
    return first - second


def student_t_quantile(p: float, dof: float) -> float:
    """The p-quantile of Student's t distribution with ``dof`` degrees of freedom.

    With x = sqrt(dof) tan(theta), the CDF is 1/2 + c int_0^theta cos^(dof-1): a smooth
    integrand on [0, pi/2), integrated on a fine grid and inverted (error below 1e-6).
    """
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if not dof > 0:
        raise ValueError(f"dof must be positive, got {dof}")
    if p < 0.5:
        return -student_t_quantile(1 - p, dof)
    if dof > 1e5:  # the normal limit, closer than the grid resolves
        return float(torch.special.ndtri(torch.tensor(p, dtype=torch.float64)))
    theta = np.linspace(0.0, math.pi / 2, 200_001)
    density = np.cos(theta) ** (dof - 1)
    c = math.exp(math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2)) / math.sqrt(math.pi)
    steps = (density[1:] + density[:-1]) / 2 * np.diff(theta)
    cdf = 0.5 + c * np.concatenate([[0.0], np.cumsum(steps)])
    return float(math.sqrt(dof) * math.tan(np.interp(p, cdf, theta)))


def half_width(stderr: Tensor, dof: int, level: float) -> Tensor:
    """Half-width of the Student-t interval at ``level`` for ``stderr`` with ``dof``
    degrees of freedom (NaN where there are none)."""
    q = student_t_quantile(0.5 + level / 2, dof) if dof > 0 else float("nan")
    return q * stderr


@dataclass(frozen=True)
class ConvergenceReport:
    """Is the run long enough for the exponents to be known to ``tol``?

    Per exponent i (all tensors (k,), per step in ``unit``): the estimate; its
    within-trajectory standard error and the half-width of its ``level`` confidence
    interval; ``drift``, the largest distance of the running estimate from the final one
    over the last ``last`` fraction of the run; and ``steps_needed``, the accumulated steps
    for a half-width of ``tol``, from the measured 1/sqrt(T) spread: T (half_width / tol)^2.
    An exponent has converged when both its half-width and its drift are within ``tol``.
    """

    tol: float
    level: float
    last: float
    steps: int
    estimate: Tensor
    stderr: Tensor
    half_width: Tensor
    drift: Tensor
    steps_needed: Tensor
    unit: str

    @property
    def converged(self) -> Tensor:
        """(k,) bool, true where the half-width and the drift are both within ``tol``."""
        return (self.half_width <= self.tol) & (self.drift <= self.tol)

    def __bool__(self) -> bool:
        return bool(self.converged.all())

    def __str__(self) -> str:
        done = int(self.converged.sum())
        lines = [f"convergence to ±{self.tol:g} {self.unit}/step ({self.level:.0%} interval, "
                 f"drift over the last {self.last:.0%} of T = {self.steps}): "
                 f"{done} of {len(self.estimate)} exponents converged",
                 f"{'i':>4} {'estimate':>10} {'± half-width':>13} {'drift':>9} "
                 f"{'T needed':>10}  converged"]
        for i, row in enumerate(zip(self.estimate.tolist(), self.half_width.tolist(),
                                    self.drift.tolist(), self.steps_needed.tolist(),
                                    self.converged.tolist(), strict=True)):
            estimate, half, drift, needed, ok = row
            needed = "?" if not math.isfinite(needed) else f"{needed:.0f}"
            lines.append(f"{i + 1:>4} {estimate:>+10.4f} {half:>13.4f} {drift:>9.4f} "
                         f"{needed:>10}  {'yes' if ok else 'NO'}")
        return "\n".join(lines)

    __repr__ = __str__


def convergence(block_sums: Tensor, block_steps: Tensor, stderr: Tensor, dof: int, *,
                tol: float, level: float, last: float, unit: str) -> ConvergenceReport:
    """Build a :class:`ConvergenceReport` from the blocks (see ``LyapunovResult.convergence``);
    ``stderr`` (k,) with ``dof`` degrees of freedom is the within-trajectory error."""
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if not 0 < last <= 1:
        raise ValueError(f"last must lie in (0, 1], got {last}")
    running = block_sums.to(torch.float64).cumsum(0).mean(1)  # (n, k), mean over sequences
    steps = block_steps.to(running.device, torch.float64)
    running = running / steps[:, None]
    total = float(steps[-1])
    tail = steps >= (1 - last) * total
    drift = (running[tail] - running[-1]).abs().amax(0)
    half = half_width(stderr, dof, level)
    return ConvergenceReport(
        tol=tol, level=level, last=last, steps=int(total), estimate=running[-1].cpu(),
        stderr=stderr.cpu(), half_width=half.cpu(), drift=drift.cpu(),
        steps_needed=(total * (half / tol) ** 2).ceil().cpu(), unit=unit)
