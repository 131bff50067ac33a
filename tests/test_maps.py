"""Known exponents of textbook maps (values from NOTES.md and the literature)."""

import math

import torch

from lyaplib import cells, lyapunov_spectrum

F64 = torch.float64


def test_henon_exponents_and_exact_sum():
    henon = cells.Henon(1.4, 0.3)
    # The statistical error shrinks as 1/sqrt(B T): many short sequences are as good as one long.
    res = lyapunov_spectrum(henon, 5000, h0=henon.initial_state(256).double(), warmup=200)
    lam = res.exponents
    assert abs(lam[0] - 0.4194) < 2e-3
    assert abs(lam[1] - (-1.6234)) < 2e-3
    # det J = -b at every point, so every sequence's sum is ln b to rounding.
    assert torch.allclose(res.per_sequence.sum(-1), torch.tensor(math.log(0.3), dtype=F64),
                          rtol=0, atol=1e-10)
    assert abs(res.kaplan_yorke - (1 + lam[0] / abs(lam[1]))) < 1e-12


def test_logistic_r4_is_ln2():
    logistic = cells.Logistic(4.0)
    res = lyapunov_spectrum(logistic, 5000, h0=logistic.initial_state(256).double(), warmup=100)
    assert abs(res.max - math.log(2)) < 2e-3


def test_linear_map_normal_matrix_gives_log_eigenvalue_moduli():
    # A normal matrix: a rotation-scaling block and a real eigenvalue.
    c, s = math.cos(0.7), math.sin(0.7)
    A = torch.tensor([[1.3 * c, -1.3 * s, 0], [1.3 * s, 1.3 * c, 0], [0, 0, 0.4]], dtype=F64)
    res = lyapunov_spectrum(cells.LinearMap(A), 2000)  # 1.3^2000 ~ e^525 < float64 max
    expected = torch.tensor([math.log(1.3), math.log(1.3), math.log(0.4)], dtype=F64)
    assert torch.allclose(res.exponents, expected, atol=1e-3)


def test_linear_map_non_normal_uses_eigenvalues_not_singular_values():
    A = torch.tensor([[0.5, 10.0], [0.0, 0.2]], dtype=F64)
    res = lyapunov_spectrum(cells.LinearMap(A), 5000)
    expected = torch.tensor([math.log(0.5), math.log(0.2)], dtype=F64)
    # The transient growth (||A|| ~ 10) decays as O(1/T).
    assert torch.allclose(res.exponents, expected, atol=2e-3)
    assert torch.allclose(res.exponents, cells.LinearMap(A).exact_exponents(), atol=2e-3)
    # The largest singular value would have said "expanding".
    assert torch.linalg.svdvals(A)[0] > 1


def test_scaled_orthogonal_map_has_all_exponents_log_c():
    g = torch.Generator().manual_seed(1)
    orth = torch.linalg.qr(torch.randn(7, 7, generator=g, dtype=F64))[0]
    res = lyapunov_spectrum(cells.LinearMap(0.8 * orth), 50)
    # c O stretches every vector by exactly c, so every R_ii = c at every step.
    assert torch.allclose(res.exponents, torch.full((7,), math.log(0.8), dtype=F64), atol=1e-12)


def test_lorenz_flow_exponents_and_volume_contraction():
    lorenz = cells.Lorenz(dt=0.01)
    res = lyapunov_spectrum(lorenz, 12_000, h0=lorenz.initial_state(64).double(), warmup=2000)
    per_time = res.exponents / lorenz.dt
    assert abs(per_time[0] - 0.9056) < 0.05
    assert abs(per_time[1]) < 0.02  # the flow direction is neutral
    # Phase-space volume contracts at the constant rate sigma + 1 + beta.
    assert abs(per_time.sum() + (10 + 1 + 8 / 3)) < 1e-3
