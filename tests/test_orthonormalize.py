"""Orthonormalisation methods: Householder, CholeskyQR2 with its fallback (CPU) and shifted
CholeskyQR3 (sync-free, GPU), both behind method="cholesky_qr"."""

import math
import warnings

import pytest
import torch

from lyaplib import LyapunovWarning, cells, lyapunov_spectrum
from lyaplib.orthonormalize import (
    METHODS,
    cholesky_qr,
    cholesky_qr2,
    householder,
    shifted_cholesky_qr3,
)


def graded(B, D, k, spread, dtype, seed=0):
    """Tall matrices with column scales from 1 down to 10^-spread (condition ~10^spread)."""
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(B, D, k, generator=g, dtype=torch.float64)
    M = M * torch.logspace(0, -spread, k, dtype=torch.float64)
    return M.to(dtype)


@pytest.mark.parametrize("method", [cholesky_qr2, shifted_cholesky_qr3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cholesky_qr_is_the_qr_with_positive_diagonal(dtype, method):
    M = graded(6, 200, 16, 1.5, dtype)
    Q, r = method(M)
    eps = torch.finfo(dtype).eps
    eye = torch.eye(16, dtype=dtype)
    assert (Q.mT @ Q - eye).abs().max() < 50 * eps  # orthonormal to working precision
    # the QR with a positive diagonal is unique: same Q and r as Householder
    Q_h, r_h = householder(M)
    assert (Q - Q_h).abs().max() < 200 * eps
    assert (r.log() - r_h.log()).abs().max() < 200 * eps
    # and Q R = M: R = Q^T M is upper triangular with diagonal r
    R = Q.mT @ M
    assert torch.allclose(torch.diagonal(R, dim1=-2, dim2=-1), r, rtol=100 * eps)
    assert R.tril(-1).abs().max() < 100 * eps * M.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shifted_cholesky_qr3_is_accurate_far_beyond_where_cholesky_qr2_breaks_down(dtype):
    # cond ~1e6 in float32 and ~1e12 in float64: past eps^-1/2, where the Gram matrix's
    # Cholesky factor fails or loses the small columns, and below 1/eps
    spread = 6.0 if dtype == torch.float32 else 12.0
    M = graded(4, 100, 8, spread, dtype, seed=1)
    assert torch.linalg.cond(M.double()).min() > 10 / torch.finfo(dtype).eps ** 0.5
    Q, r = shifted_cholesky_qr3(M)
    Q_h, r_h = householder(M)
    eps = torch.finfo(dtype).eps
    assert (Q.mT @ Q - torch.eye(8, dtype=dtype)).abs().max() < 50 * eps
    assert (r.log() - r_h.log()).abs().max() < 50 * eps  # even the smallest, 10^-spread
    assert (Q - Q_h).abs().max() < 50 * eps


def test_shifted_cholesky_qr3_marks_dependent_and_non_finite_columns_as_householder_does():
    rank_deficient = torch.zeros(2, 10, 3)
    rank_deficient[..., 0] = 1.0  # columns 1, 2 are zero: their directions are lost
    r = shifted_cholesky_qr3(rank_deficient)[1]
    assert torch.equal(r[:, 1:], torch.zeros(2, 2))
    torch.testing.assert_close(r[:, 0], householder(rank_deficient)[1][:, 0])
    repeated = torch.randn(2, 10, 3, generator=torch.Generator().manual_seed(0))
    repeated[..., 2] = repeated[..., 0]
    # rounding makes the Gram matrix's last pivot tiny, of either sign: the Cholesky may
    # break down (r = 0) or not; either way, like Householder's, r is at rounding level
    rounding = 10 * torch.finfo(torch.float32).eps * torch.linalg.matrix_norm(repeated)
    for method in (shifted_cholesky_qr3, householder):
        r = method(repeated)[1]
        assert (r[:, 2] <= rounding).all(), (method.__name__, r[:, 2], rounding)
    torch.testing.assert_close(r[:, :2], shifted_cholesky_qr3(repeated)[1][:, :2])
    broken = repeated.clone()
    broken[0, 3, 1] = float("nan")
    r = shifted_cholesky_qr3(broken)[1]
    assert torch.isnan(r[0]).all() and torch.isfinite(r[1, :2]).all()  # NaN stays NaN


def test_cholesky_qr2_falls_back_where_it_cannot_be_trusted():
    # entry 0 is well conditioned, entry 1 has cond ~1e6 (> eps^-1/2 in float32)
    M = torch.cat([graded(1, 100, 8, 1.0, torch.float32), graded(1, 100, 8, 6.0,
                                                                 torch.float32, 1)])
    Q, r = cholesky_qr2(M)
    Q_h, r_h = householder(M[1:])
    assert torch.equal(Q[1:], Q_h) and torch.equal(r[1:], r_h)  # the Householder result
    assert (Q[0].mT @ Q[0] - torch.eye(8)).abs().max() < 1e-5
    rank_deficient = torch.zeros(2, 10, 3)
    rank_deficient[..., 0] = 1.0
    Q, r = cholesky_qr2(rank_deficient)  # a failed Cholesky: still a valid Householder QR
    assert torch.isfinite(Q).all() and torch.equal(r, householder(rank_deficient)[1])


def test_cholesky_qr_picks_the_branch_free_variant_off_the_cpu():
    M = graded(2, 50, 4, 1.0, torch.float64)
    assert all(map(torch.equal, cholesky_qr(M), cholesky_qr2(M)))
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA to detect a synchronisation")
    M = M.cuda()
    shifted_cholesky_qr3(M)  # warm up: the first calls may load libraries
    torch.cuda.set_sync_debug_mode("error")
    try:
        Q, r = cholesky_qr(M)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(map(torch.equal, (Q, r), shifted_cholesky_qr3(M)))


def test_engine_gives_the_same_exponents_with_either_method():
    torch.manual_seed(0)
    cell = cells.VanillaRNN(torch.randn(40, 40, dtype=torch.float64) * 1.5 / math.sqrt(40))
    h0 = torch.randn(3, 40, dtype=torch.float64) * 0.1
    ref = lyapunov_spectrum(cell, 300, h0=h0, k=6, warmup=50)
    fast = lyapunov_spectrum(cell, 300, h0=h0, k=6, warmup=50, method="cholesky_qr")
    torch.testing.assert_close(fast.per_sequence, ref.per_sequence, rtol=1e-9, atol=1e-12)
    assert METHODS["cholesky_qr"] is cholesky_qr


def linear(*log_moduli, dtype=torch.float32):
    """A symmetric map with eigenvalues exp(log_moduli), in a rotated (mixing) basis."""
    g = torch.Generator().manual_seed(0)
    U = torch.linalg.qr(torch.randn(len(log_moduli), len(log_moduli), generator=g,
                                    dtype=torch.float64))[0]
    A = U @ torch.diag(torch.tensor(log_moduli, dtype=torch.float64).exp()) @ U.T
    return cells.LinearMap(A.to(dtype))


def test_warns_when_exponents_reach_the_precision_floor():
    # float32 resolves ln(1/eps) ~ 15.9 nats per orthonormalisation; -25 is beyond it
    with pytest.warns(LyapunovWarning, match="precision floor"):
        result = lyapunov_spectrum(linear(0.0, -1.0, -25.0), 50, Q0=torch.randn(3, 3))
    assert result.exponents[-1] > -20  # clamped near lambda_1 - ln(1/eps), not -25
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same map in float64 is measured correctly
        exact = lyapunov_spectrum(linear(0.0, -1.0, -25.0, dtype=torch.float64), 60,
                                  warmup=10, Q0=torch.randn(3, 3, dtype=torch.float64))
    assert exact.exponents[-1].item() == pytest.approx(-25.0, abs=1e-6)


def test_warns_when_ortho_every_is_too_long_for_the_spread():
    with pytest.warns(LyapunovWarning, match="ortho_every=5 is too long"):
        lyapunov_spectrum(linear(0.0, -2.0), 100, ortho_every=5, Q0=torch.randn(2, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lyapunov_spectrum(linear(0.0, -2.0), 100, ortho_every=1, Q0=torch.randn(2, 2))
        lyapunov_spectrum(linear(0.0, -0.5), 100, ortho_every=5, Q0=torch.randn(2, 2))
