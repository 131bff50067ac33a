"""The result of the QR algorithm: exponents per sequence, their error bars and
convergence diagnostics, and the statistics of the spectrum."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from . import stats, uncertainty


@dataclass(frozen=True)
class LyapunovResult:
    """Lyapunov exponents estimated by ``lyapunov_spectrum``.

    Exponents are per step, in natural-log units ("nats") unless converted with
    ``in_bits()``. Each sequence's k exponents are in descending order (so is their mean,
    ``exponents``): index i is the i-th largest. The QR's j-th column measures the growth
    of j-dimensional volumes beyond the first j - 1, so after the warm-up its order is
    already descending except within statistical error of nearly equal exponents, or for
    a ``Q0`` inside an invariant subspace; the engine sorts each sequence's totals, and
    the trace and the blocks follow the same permutation (column j belongs to exponent j).
    Where directions cross within the run (one grows fastest early, another later), the
    first column follows the largest growth *so far*, so the totals are the window's
    finite-time exponents, sorted, while a block's or the trace's columns may be out of
    order for a while (a block's column 2 growing faster than its column 1 until the
    cumulative growths swap).

    Attributes:
        per_sequence: (B, k) float64, one spectrum per input sequence.
        steps: number of accumulated steps T (warm-up excluded).
        dim: the state dimension D of the cell.
        trace_per_sequence: (n, B, k) running estimates after each
            orthonormalisation, when ``keep_trace`` was set.
        trace_steps: (n,) accumulated steps at which the trace was taken.
        block_sums: (n, B, k) float64 sums of log R_ii over consecutive blocks of steps,
            for the within-trajectory error bars (``blocks`` of ``lyapunov_spectrum``).
        block_steps: (n,) accumulated steps at the end of each block.
        state: (B, S) final state;  Q: (B, D, k) final orthonormal basis, in the QR's own
            column order (pass it as ``Q0`` to continue the run).
        unit: "nats" or "bits".
    """

    per_sequence: Tensor
    steps: int
    dim: int
    state: Tensor
    Q: Tensor
    trace_per_sequence: Tensor | None = None
    trace_steps: Tensor | None = None
    block_sums: Tensor | None = None
    block_steps: Tensor | None = None
    unit: str = "nats"

    @property
    def k(self) -> int:
        """The number of exponents computed."""
        return self.per_sequence.shape[-1]

    @property
    def exponents(self) -> Tensor:
        """(k,) mean spectrum over the sequences."""
        return self.per_sequence.mean(dim=0)

    @property
    def stderr(self) -> Tensor:
        """(k,) standard error of ``exponents``, which is :attr:`stderr_between` for B >= 2
        sequences and :attr:`stderr_within` (finite for a single long trajectory) for one."""
        return self._error("auto")[0]

    @property
    def stderr_between(self) -> Tensor:
        """(k,) standard error of the mean over the B sequences, from their spread (B - 1
        degrees of freedom; NaN for B = 1). It measures how much the estimate would change
        with other sequences of the same kind: the input-to-input variation as well as each
        run's finite length."""
        B = self.per_sequence.shape[0]
        if B < 2:
            return torch.full_like(self.exponents, float("nan"))
        return self.per_sequence.std(dim=0) / math.sqrt(B)

    @property
    def stderr_within(self) -> Tensor:
        """(k,) within-trajectory standard error, by batch means over time. It measures how
        much the estimate would change were these same sequences run longer or shorter.
        Each sequence's error comes from its own blocks; B of them combine into the error
        of their mean as sqrt(sum_b se_b^2) / B. NaN without blocks (``blocks=0``).
        Batches must outlast the correlation of the local exponents: for a flow with a
        small time step it is too large (Lorenz at dt = 0.01, T = 1e4: 4.6x the spread
        over trajectories) until T is very long."""
        return self._within()[0]

    def stderr_within_per_sequence(self, batches: int = uncertainty.DEFAULT_BATCHES) -> Tensor:
        """(B, k) each sequence's own batch-means standard error, from ``batches`` batches."""
        return self._batch_means(batches)[0]

    def confidence_interval(self, level: float = 0.95, *,
                            kind: str = "auto") -> tuple[Tensor, Tensor]:
        """(lower, upper), each (k,): a Student-t interval at ``level`` around
        ``exponents``. ``kind`` is "within", "between", or "auto" (as :attr:`stderr`)."""
        if not 0 < level < 1:
            raise ValueError(f"level must lie in (0, 1), got {level}")
        half = uncertainty.half_width(*self._error(kind), level)
        return self.exponents - half, self.exponents + half

    @property
    def split_half(self) -> Tensor:
        """(k,) the first half's estimate minus the second half's (mean over sequences); for
        a stationary run of this length about twice :attr:`stderr_within` in size."""
        if self.block_sums is None:
            return torch.full_like(self.exponents, float("nan"))
        return uncertainty.split_half(self.block_sums, self.block_steps).mean(0)

    def convergence(self, tol: float, *, level: float = 0.95,
                    last: float = 0.5) -> uncertainty.ConvergenceReport:
        """Diagnose whether T was long enough to know each exponent to ``tol`` (per step,
        in this result's unit): the ``level`` confidence half-width from
        :attr:`stderr_within`, the drift of the running estimate over the ``last`` fraction
        of the run, and the T that would reach ``tol``. It reports; it stops nothing."""
        if self.block_sums is None:
            raise ValueError("result has no blocks: call lyapunov_spectrum(..., blocks=64)")
        stderr, dof = self._within()
        return uncertainty.convergence(self.block_sums, self.block_steps, stderr, dof, tol=tol,
                                       level=level, last=last, unit=self.unit)

    def converged(self, tol: float, **kwargs) -> bool:
        """Whether every exponent has converged to ``tol``: see :meth:`convergence`."""
        return bool(self.convergence(tol, **kwargs))

    def _error(self, kind: str) -> tuple[Tensor, int]:
        """(standard error (k,), degrees of freedom) of the named kind."""
        if kind == "auto":
            kind = "between" if self.per_sequence.shape[0] >= 2 else "within"
        if kind == "between":
            return self.stderr_between, self.per_sequence.shape[0] - 1
        if kind == "within":
            return self._within()
        raise ValueError(f'kind must be "auto", "within" or "between", got {kind!r}')

    def _batch_means(self, batches: int) -> tuple[Tensor, int]:
        if self.block_sums is None:
            B, k = self.per_sequence.shape
            nan = torch.full((B, k), float("nan"), dtype=torch.float64)
            return nan.to(self.per_sequence.device), 0
        return uncertainty.batch_means(self.block_sums, self.block_steps, batches)

    def _within(self) -> tuple[Tensor, int]:
        per_sequence, dof = self._batch_means(uncertainty.DEFAULT_BATCHES)
        B = per_sequence.shape[0]
        return per_sequence.pow(2).sum(0).sqrt() / B, B * dof

    @property
    def trace(self) -> Tensor | None:
        """(n, k) running estimate of the mean spectrum, for convergence plots."""
        return None if self.trace_per_sequence is None else self.trace_per_sequence.mean(dim=1)

    @property
    def max(self) -> float:
        """The largest exponent, lambda_1."""
        return float(stats.spectrum_max(self.exponents))

    @property
    def mean(self) -> float:
        """The mean of the k exponents."""
        return float(stats.spectrum_mean(self.exponents))

    @property
    def variance(self) -> float:
        """The variance of the k exponents about their mean."""
        return float(stats.spectrum_variance(self.exponents))

    @property
    def kaplan_yorke(self) -> float:
        """Kaplan-Yorke dimension; NaN when k < D and it is not determined by the k exponents."""
        return float(stats.kaplan_yorke(self.exponents, dim=self.dim))

    @property
    def entropy(self) -> float:
        """Sum of the positive exponents (an upper bound on the KS entropy, per step)."""
        return float(stats.entropy(self.exponents))

    def split(self, parts: int) -> list[LyapunovResult]:
        """The result of each of ``parts`` consecutive groups of sequences, as its own
        result (per_sequence, trace, blocks, state and Q sliced), for sequences that are
        different systems (a population's networks): their error bars and convergence
        must not pool systems."""
        B = self.per_sequence.shape[0]
        if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1 or B % parts:
            raise ValueError(f"parts must be an int >= 1 that divides the B = {B} "
                             f"sequences, got {parts!r}")
        size = B // parts

        def rows(t: Tensor | None, axis: int, i: int) -> Tensor | None:
            return None if t is None else t.narrow(axis, i * size, size)

        return [replace(self, per_sequence=rows(self.per_sequence, 0, i),
                        state=rows(self.state, 0, i), Q=rows(self.Q, 0, i),
                        trace_per_sequence=rows(self.trace_per_sequence, 1, i),
                        block_sums=rows(self.block_sums, 1, i)) for i in range(parts)]

    def in_bits(self) -> LyapunovResult:
        """The same result in bits per step (log2), the unit of the 2022 authors' code."""
        if self.unit == "bits":
            return self
        scale = 1 / math.log(2)
        trace = None if self.trace_per_sequence is None else self.trace_per_sequence * scale
        blocks = None if self.block_sums is None else self.block_sums * scale
        return replace(self, per_sequence=self.per_sequence * scale,
                       trace_per_sequence=trace, block_sums=blocks, unit="bits")

    def __repr__(self) -> str:
        shown = ", ".join(f"{v:.4f}" for v in self.exponents[:6].tolist())
        more = ", ..." if self.k > 6 else ""
        B = self.per_sequence.shape[0]
        return (f"LyapunovResult(k={self.k} of D={self.dim}, B={B}, T={self.steps}, "
                f"{self.unit}/step: [{shown}{more}])")
