"""Structured systems: maps that keep coordinate subspaces invariant (diagonal, permuted,
triangular, block-diagonal, decoupled networks), where a basis of coordinate vectors
measures one subspace's exponents instead of the largest. Every expected value is
mathematics: logs of moduli of eigenvalues, or the spectrum of each part alone."""

from __future__ import annotations

import math

import pytest
import torch

from lyaplib import AutogradCell, cells, lyapunov_spectrum, random_basis

F64 = torch.float64
T, WARMUP = 600, 200


def exact(values) -> torch.Tensor:
    """The exponents log|v|, sorted in descending order."""
    return torch.tensor(values, dtype=F64).abs().log().sort(descending=True).values


def rotation(r: float, theta: float) -> torch.Tensor:
    """A 2x2 rotation by theta scaled by r: both exponents are exactly ln r."""
    c, s = math.cos(theta), math.sin(theta)
    return r * torch.tensor([[c, -s], [s, c]], dtype=F64)


def upper_triangular() -> torch.Tensor:
    A = torch.diag(torch.tensor([0.3, 0.8, 0.1, 0.6], dtype=F64))
    return A + torch.triu(torch.randn(4, 4, generator=torch.Generator().manual_seed(3),
                                      dtype=F64), diagonal=1)


# (name, A, its exponents in descending order)
SYSTEMS = [
    ("diagonal", torch.diag(torch.tensor([0.2, 0.5, 0.9, 0.05], dtype=F64)),
     exact([0.2, 0.5, 0.9, 0.05])),
    # d_i x_pi(i) with pi = (0 1)(2 3): each 2-cycle's exponents are both (ln a + ln b) / 2
    ("permuted diagonal", torch.tensor([[0, 0.4, 0, 0], [0.1, 0, 0, 0], [0, 0, 0, 0.9],
                                        [0, 0, 0.8, 0]], dtype=F64),
     exact([0.72 ** 0.5, 0.72 ** 0.5, 0.04 ** 0.5, 0.04 ** 0.5])),
    ("triangular 2x2", torch.tensor([[0.2, 1.0], [0.0, 0.9]], dtype=F64), exact([0.2, 0.9])),
    ("triangular 4x4", upper_triangular(), exact([0.3, 0.8, 0.1, 0.6])),
    ("block-diagonal", torch.block_diag(rotation(0.5, 0.7), rotation(0.95, 1.3)),
     exact([0.5, 0.5, 0.95, 0.95])),
]


@pytest.mark.parametrize("name, A, truth", SYSTEMS, ids=[s[0] for s in SYSTEMS])
def test_linear_structured_systems_give_their_largest_exponents(name, A, truth):
    D = A.shape[0]
    for k in sorted({1, D // 2, D}):
        got = lyapunov_spectrum(cells.LinearMap(A), T, k=k, warmup=WARMUP).exponents
        # after the warm-up the basis has converged to rounding (gaps >= 0.05 per step
        # over 200 steps): what is left is the triangular part's transient, O(1/T)
        assert torch.allclose(got, truth[:k], atol=5 / T), (name, k, got, truth[:k])


def test_the_identity_basis_fails_where_the_random_one_does_not():
    """The regression: Q0 = the identity's first column measures ln 0.2, not ln 0.9."""
    A = torch.diag(torch.tensor([0.2, 0.5, 0.9, 0.05], dtype=F64))
    stuck = lyapunov_spectrum(cells.LinearMap(A), T, Q0=torch.eye(4, 1, dtype=F64))
    assert abs(stuck.max - math.log(0.2)) < 1e-12
    assert abs(lyapunov_spectrum(cells.LinearMap(A), T, k=1).max - math.log(0.9)) < 1e-2


def test_exponents_come_back_in_descending_order_whatever_the_basis_order():
    A = torch.diag(torch.tensor([0.2, 0.5, 0.9, 0.05], dtype=F64))
    reversed_eye = torch.eye(4, dtype=F64).flip(-1)  # the QR measures coordinates 3, 2, 1, 0
    result = lyapunov_spectrum(cells.LinearMap(A), T, Q0=reversed_eye, keep_trace=True)
    assert torch.allclose(result.exponents, exact([0.2, 0.5, 0.9, 0.05]), atol=1e-12)
    # the trace and the blocks follow the same order: column j belongs to exponent j
    assert torch.allclose(result.trace[-1], result.exponents, atol=1e-12)
    assert torch.allclose(result.block_sums.sum(0) / result.steps, result.per_sequence,
                          atol=1e-12)


def networks(*weights: torch.Tensor) -> cells.VanillaRNN:
    """Autonomous tanh RNNs h <- tanh(W h), side by side as one system when given
    several (a block-diagonal W: a block-diagonal Jacobian at every step)."""
    return cells.VanillaRNN(torch.block_diag(*weights))


def from_03(cell: cells.VanillaRNN, **kwargs):
    """The spectrum from the initial state 0.3 in every unit (off the fixed point 0)."""
    h0 = torch.full((cell.dim,), 0.3, dtype=F64)
    return lyapunov_spectrum(cell, 2000, h0=h0, warmup=300, **kwargs)


@pytest.mark.parametrize("k", [1, 3, 48])
def test_two_decoupled_networks_give_the_union_of_their_spectra(k):
    """The spectrum of independent parts is the union of theirs. The stable network
    (g = 0.5) falls to its fixed point 0, where its exponents are log|eig W|; the chaotic
    one (g = 3) is measured alone. Its trajectory alone and inside the pair part after
    ~150 steps (the GEMMs round differently), so its finite-time exponents agree within
    their error bars, not to rounding. Sorting moves no value by more than the largest
    deviation (it is non-expansive in the max norm), so one tolerance covers every
    index: 8 standard errors of the worst-known exponent (weight seeds 1-5 and 11 gave at
    most 3.9, on 1 and 2 threads alike)."""
    generator = torch.Generator().manual_seed(11)
    W_stable, W_chaotic = (g * torch.randn(24, 24, generator=generator, dtype=F64) / 24 ** 0.5
                           for g in (0.5, 3.0))
    chaotic = from_03(networks(W_chaotic))
    assert chaotic.exponents[0] > 0.03  # the system is chaotic
    stable = torch.linalg.eigvals(W_stable).abs().log()
    truth, order = torch.cat([chaotic.exponents, stable]).sort(descending=True)
    error = torch.cat([chaotic.stderr, torch.zeros(24, dtype=F64)])[order]
    got = from_03(networks(W_stable, W_chaotic), k=k)
    tolerance = 8 * (error[:k].max() ** 2 + got.stderr.max() ** 2).sqrt() + 1e-6
    assert (got.exponents - truth[:k]).abs().max() < tolerance, (got.exponents - truth[:k])


def test_crossing_directions_give_the_finite_time_exponents_of_the_window():
    """A diagonal map whose rates swap half-way: (ln .9, ln .5), then (ln .5, ln .95).
    The first column of Q follows the direction of the largest growth so far, so the
    totals are the window's exponents, sorted, and sum exactly to the log-volume; the
    blocks of the second half show the crossing (column 2 locally faster than column 1)
    until the second direction's cumulative growth overtakes the first's."""
    steps = 2000
    rates = torch.tensor([[math.log(0.9), math.log(0.5)], [math.log(0.5), math.log(0.95)]],
                         dtype=F64).repeat_interleave(steps // 2, dim=0)[None]
    cell = AutogradCell(lambda h, x: h * x.exp(), 2, initial_state=torch.ones(2, dtype=F64))
    result = lyapunov_spectrum(cell, rates, blocks=8)
    window = rates[0].mean(0).sort(descending=True).values  # (-0.3722, -0.3993)
    # column 1 grows as |P_T q1| = sqrt(sum_i (q1_i P_i)^2), so its error is at most
    # |ln |q1_2|| / T, with q1 the first column of the default basis
    q1 = random_basis(2, 2)[:, 0]
    assert torch.allclose(result.exponents, window, atol=2 * abs(math.log(abs(q1[1]))) / steps)
    assert abs(result.exponents.sum() - rates[0].mean(0).sum()) < 1e-12
    local = result.block_sums[:, 0] / result.block_steps.diff(prepend=torch.zeros(1))[:, None]
    second_half = result.block_steps > steps // 2
    crossed = local[second_half, 1] > local[second_half, 0]
    assert crossed.any() and not crossed.all()  # crossed, then swapped back


def test_the_default_basis_is_a_fixed_random_orthonormal_basis():
    Q = random_basis(6, 4)
    assert Q.dtype == F64 and Q.shape == (6, 4)
    assert torch.allclose(Q.mT @ Q, torch.eye(4, dtype=F64), atol=1e-14)
    assert torch.equal(Q, random_basis(6, 4))  # the same in every call and process
    assert torch.allclose(Q, random_basis(6, 6)[:, :4], atol=1e-14)  # k leads D
    assert not torch.equal(Q, random_basis(6, 4, seed=1))
    # no column lies in a coordinate subspace: every entry is away from 0
    assert Q.abs().min() > 1e-3
    assert random_basis(6, 4, dtype=torch.float32).dtype == torch.float32
    Q.zero_()  # a caller's copy: the next call is unchanged
    assert random_basis(6, 4).abs().min() > 1e-3


def test_every_path_starts_from_the_default_basis():
    """A run without Q0 equals a run given random_basis explicitly (top-k included)."""
    A = torch.diag(torch.tensor([0.2, 0.5, 0.9, 0.05], dtype=F64))
    for k in (1, 4):
        plain = lyapunov_spectrum(cells.LinearMap(A), 50, k=k)
        given = lyapunov_spectrum(cells.LinearMap(A), 50, Q0=random_basis(4, k))
        assert torch.equal(plain.per_sequence, given.per_sequence)
