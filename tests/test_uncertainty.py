"""Error bars from one trajectory (batch means) and the convergence diagnostic.

The truths come from mathematics: the exponents of products of i.i.d. Gaussian matrices
(Newman 1986) and Student's t quantiles in closed form; and, for an autocorrelated
system, from the spread over independent trajectories.
"""

import math

import pytest
import torch

from lyaplib import cells, lyapunov_spectrum, uncertainty
from lyaplib.cells import CellModule

F64 = torch.float64


class GaussianProduct(CellModule):
    """Q <- A_t Q with A_t the (N, N) matrix that the input x_t holds: the product of the
    matrices fed in. The state is not used (it stays zero)."""

    def __init__(self, n: int):
        super().__init__()
        self.dim = n
        self.register_buffer("anchor", torch.zeros((), dtype=F64))  # dtype and device

    def step(self, state, x):
        return state

    def tangent(self, state, x, Q):
        return state, x.view(-1, self.dim, self.dim) @ Q


def gaussian_product_exponents(n: int, variance: float) -> torch.Tensor:
    """Exact exponents of products of (n, n) matrices with i.i.d. N(0, variance) entries:
    lambda_i = (ln(2 variance) + digamma((n - i + 1) / 2)) / 2."""
    i = torch.arange(1, n + 1, dtype=F64)
    return (math.log(2 * variance) + torch.special.digamma((n - i + 1) / 2)) / 2


@pytest.mark.parametrize(("p", "dof"), [(0.975, 1), (0.9, 1), (0.975, 2), (0.995, 2),
                                        (0.6, 3), (0.975, 31), (0.999, 5), (0.975, 1e6)])
def test_student_t_quantile_matches_closed_forms(p, dof):
    if dof == 1:  # Cauchy
        exact = math.tan(math.pi * (p - 0.5))
    elif dof == 2:
        exact = (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    elif dof == 3:  # solve the closed-form CDF by bisection
        def cdf(t):
            x = t / math.sqrt(3)
            return 0.5 + (x / (1 + x * x) + math.atan(x)) / math.pi
        lo, hi = 0.0, 10.0
        for _ in range(200):
            lo, hi = ((lo + hi) / 2, hi) if cdf((lo + hi) / 2) < p else (lo, (lo + hi) / 2)
        exact = lo
    elif dof == 1e6:
        exact = float(torch.special.ndtri(torch.tensor(p, dtype=F64)))
    else:  # published tables (Abramowitz & Stegun 26.10), 4-5 significant digits
        exact = {31: 2.0395, 5: 5.8934}[dof]
    got = uncertainty.student_t_quantile(p, dof)
    assert got == pytest.approx(exact, rel=2e-5 if dof in (1, 2, 3, 1e6) else 1e-4)
    assert uncertainty.student_t_quantile(1 - p, dof) == pytest.approx(-got)


def test_intervals_cover_the_exact_exponents_at_their_nominal_rate():
    # 4000 independent products of 256 Gaussian 4x4 matrices: each sequence's own 95 % and
    # 80 % intervals from batch means must cover the exact exponents that often (binomial
    # sd 0.34 % and 0.63 %; over seeds 0-7 the largest miss was 1.2 % and 2.3 % at 2000).
    n, B, T = 4, 4000, 256
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(B, T, n * n, generator=g, dtype=F64) / math.sqrt(n)
    result = lyapunov_spectrum(GaussianProduct(n), inputs)
    exact = gaussian_product_exponents(n, 1 / n)
    stderr, dof = uncertainty.batch_means(result.block_sums, result.block_steps)
    assert dof == 31
    for level in (0.95, 0.8):
        half = uncertainty.student_t_quantile(0.5 + level / 2, dof) * stderr
        covered = ((result.per_sequence - exact).abs() <= half).double().mean(0)
        assert (covered - level).abs().max() < 0.03, (level, covered)
    # the combined error of the mean of all 4000 sequences: z-scores of a standard normal
    z = (result.exponents - exact) / result.stderr_within
    assert (z.abs() < 4.5).all(), z


def test_block_errors_match_the_spread_over_trajectories_where_naive_errors_do_not():
    # Hénon's local exponents are correlated from step to step (negatively: a strong
    # stretch tends to follow a weak one), so the naive error, which treats the steps as
    # independent, is wrong; batch means must match the spread of independent trajectories.
    henon, B, T = cells.Henon(), 200, 4000
    g = torch.Generator().manual_seed(1)
    h0 = henon.initial_state(B).double() + 0.01 * torch.randn(B, 2, generator=g, dtype=F64)
    result = lyapunov_spectrum(henon, T + 200, h0=h0, warmup=200, blocks=T)  # every step kept
    spread = result.per_sequence.std(0)
    block = result.stderr_within_per_sequence().pow(2).mean(0).sqrt()
    naive = uncertainty.batch_means(result.block_sums, result.block_steps, batches=T)[0]
    naive = naive.pow(2).mean(0).sqrt()
    assert ((block / spread - 1).abs() < 0.2).all(), block / spread
    assert ((naive / spread - 1).abs() > 0.4).all(), naive / spread


def test_a_single_sequence_gets_finite_error_bars_and_a_convergence_report():
    henon = cells.Henon()
    short = lyapunov_spectrum(henon, 600, h0=henon.initial_state(1).double(), warmup=100)
    assert torch.isfinite(short.stderr).all() and (short.stderr > 0).all()
    assert torch.equal(short.stderr, short.stderr_within)
    assert torch.isnan(short.stderr_between).all()
    lower, upper = short.confidence_interval(0.95)
    assert bool(((lower < short.exponents) & (short.exponents < upper)).all())
    tol = 0.008
    report = short.convergence(tol=tol)
    assert not report and not short.converged(tol)
    assert "NO" in str(report)
    # the measured 1/sqrt(T) spread predicts the run length for tol; a run of that length
    # reaches it (both half-widths have a sampling error of ~13 % with 31 dof: their ratio
    # ~18 %, and over 5 starts it came to 0.72-1.30: margin 1.75)
    needed = int(report.steps_needed.max())
    assert needed > 2000
    long = lyapunov_spectrum(henon, needed + 100, h0=henon.initial_state(1).double(),
                             warmup=100)
    assert (long.convergence(tol=tol).half_width < 1.75 * tol).all()
    assert long.converged(1.75 * tol)


def test_blocks_are_bounded_exact_and_follow_units():
    henon = cells.Henon()
    h0 = henon.initial_state(3).double()
    result = lyapunov_spectrum(henon, 5003, h0=h0, warmup=3, ortho_every=3, blocks=16)
    n = result.block_sums.shape[0]
    assert 16 <= n <= 33 and result.block_sums.shape[1:] == (3, 2)
    assert result.block_steps[-1] == result.steps == 5000
    lengths = torch.diff(result.block_steps, prepend=torch.zeros(1, dtype=torch.long))
    assert (lengths[:-1] == lengths[0]).all() and lengths[0] % 3 == 0  # whole intervals
    assert torch.allclose(result.block_sums.sum(0) / result.steps, result.per_sequence,
                          rtol=1e-12, atol=1e-12)
    bits = result.in_bits()
    assert torch.allclose(bits.stderr_within * math.log(2), result.stderr_within)
    assert bits.convergence(0.1).unit == "bits"
    # split halves of a stationary run differ by about 2 standard errors, not more
    assert (result.split_half.abs() < 8 * result.stderr_within).all()
    none = lyapunov_spectrum(henon, 100, h0=h0, blocks=0)
    assert none.block_sums is None and torch.isnan(none.stderr_within).all()
    with pytest.raises(ValueError, match="blocks"):
        none.convergence(0.1)
    with pytest.raises(ValueError, match="kind"):
        result.confidence_interval(kind="naive")


@pytest.mark.parametrize(("kwargs", "match"), [({"tol": 0}, "tol"),
                                               ({"tol": 0.1, "level": 1.0}, "level"),
                                               ({"tol": 0.1, "last": 0}, "last")])
def test_convergence_rejects_bad_arguments(kwargs, match):
    henon = cells.Henon()
    result = lyapunov_spectrum(henon, 200, h0=henon.initial_state(1).double())
    with pytest.raises(ValueError, match=match):
        result.convergence(**kwargs)
