"""Summary statistics of Lyapunov spectra.

All functions take exponents of shape (..., k) (natural-log units per step) and
reduce the last axis. Spectra are sorted in descending order first (the engine returns
them sorted; spectra from elsewhere need not be), and a NaN is refused.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _checked(exponents: Tensor) -> Tensor:
    """(..., k) exponents with k >= 1 and no NaN (a NaN would pass into every statistic)."""
    exponents = torch.as_tensor(exponents)
    if exponents.ndim == 0 or exponents.shape[-1] == 0:
        raise ValueError("exponents must have shape (..., k) with k >= 1")
    if bool(exponents.isnan().any()):
        raise ValueError("exponents must not be NaN: a spectrum with a NaN has no statistics")
    return exponents


def _descending(exponents: Tensor) -> Tensor:
    return torch.sort(_checked(exponents), dim=-1, descending=True).values


def spectrum_max(exponents: Tensor) -> Tensor:
    """The maximal exponent lambda_1."""
    return _checked(exponents).amax(dim=-1)


def spectrum_mean(exponents: Tensor) -> Tensor:
    """Mean of the k exponents (for the full spectrum: mean log|det J| / D)."""
    return _checked(exponents).mean(dim=-1)


def spectrum_variance(exponents: Tensor) -> Tensor:
    """Variance of the k exponents around their mean (population variance)."""
    return _checked(exponents).var(dim=-1, correction=0)


def entropy(exponents: Tensor) -> Tensor:
    """Sum of the positive exponents: Pesin's upper bound on the KS entropy."""
    return _checked(exponents).clamp(min=0).sum(dim=-1)


def kaplan_yorke(exponents: Tensor, dim: int | None = None) -> Tensor:
    """Kaplan-Yorke (Lyapunov) dimension  ``D_KY = j + sum_{i<=j} lambda_i / |lambda_{j+1}|``.

    ``j`` is the largest index whose partial sum is non-negative. When all k
    partial sums are non-negative the dimension is at least k: it is k if the
    spectrum is complete (``dim`` is None or equals k), else unknown (NaN).
    """
    lam = _descending(exponents)
    k = lam.shape[-1]
    partial = lam.cumsum(dim=-1)
    # The partial sums of a descending sequence are concave in j, so the set of
    # j with a non-negative sum is {0, ..., j*}: count them.
    j = (partial >= 0).sum(dim=-1)
    idx = j.clamp(max=k - 1)
    sum_j = torch.where(j > 0, partial.gather(-1, (idx - 1).clamp(min=0).unsqueeze(-1)).squeeze(-1),
                        torch.zeros_like(partial[..., 0]))
    next_lam = lam.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    inside = j.to(lam.dtype) + sum_j / next_lam.abs()
    complete = dim is None or dim == k
    full = torch.full_like(inside, float(k) if complete else float("nan"))
    return torch.where(j < k, inside, full)


def pearson(x, y, *, permutations: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Pearson r of two 1-D samples and its two-sided permutation p-value.

    The p-value is the fraction of random pairings (plus the observed one) whose
    ``|r|`` reaches the observed ``|r|``: no distributional assumption, no scipy.
    """
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    y = torch.as_tensor(y, dtype=torch.float64).flatten()
    if x.shape != y.shape or len(x) < 3:
        raise ValueError(f"x and y must have the same length >= 3, got {len(x)} and {len(y)}")
    xc, yc = x - x.mean(), y - y.mean()
    r = float((xc @ yc) / (xc.norm() * yc.norm()))
    g = torch.Generator().manual_seed(seed)
    shuffled = torch.stack([yc[torch.randperm(len(yc), generator=g)] for _ in range(permutations)])
    null = (shuffled @ xc) / (xc.norm() * yc.norm())
    p = (1 + int((null.abs() >= abs(r) - 1e-12).sum())) / (permutations + 1)
    return r, p


def ranks(x) -> Tensor:
    """1-based ranks of a 1-D sample, ties given their average rank."""
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    order = torch.argsort(x, stable=True)
    sorted_x = x[order]
    rank = torch.empty_like(x)
    rank[order] = torch.arange(1, len(x) + 1, dtype=torch.float64)
    for value in torch.unique(sorted_x[:-1][sorted_x[1:] == sorted_x[:-1]]):  # tied values
        tied = x == value
        rank[tied] = rank[tied].mean()
    return rank


def spearman(x, y, *, permutations: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Spearman's rank correlation of two 1-D samples and its permutation p-value
    (:func:`pearson` of their :func:`ranks`)."""
    return pearson(ranks(x), ranks(y), permutations=permutations, seed=seed)
