"""Every analytic tangent against AutogradCell (torch.func), float64, 1e-10 relative."""

import pytest
import torch

from lyaplib import AutogradCell, cells, lyapunov_spectrum

F64 = torch.float64
GEN = torch.Generator().manual_seed(0)

MAPS = {
    "logistic": lambda: cells.Logistic(3.7),
    "henon": lambda: cells.Henon(1.4, 0.3),
    "linear": lambda: cells.LinearMap(torch.randn(5, 5, generator=GEN, dtype=F64)),
    "lorenz": lambda: cells.Lorenz(dt=0.02),
}


def reference(cell, mode):
    return AutogradCell(cell.step, cell.dim, initial_state=cell.initial_state, mode=mode)


def assert_close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["jvp", "jacrev"])
@pytest.mark.parametrize("name", MAPS)
@pytest.mark.parametrize("driven", [False, True])
def test_analytic_tangent_matches_autograd(name, mode, driven):
    cell = MAPS[name]()
    B, D = 4, cell.dim
    state = cell.initial_state(B).double() + 0.1 * torch.rand(B, D, generator=GEN, dtype=F64)
    x = 0.01 * torch.randn(B, D, generator=GEN, dtype=F64) if driven else None
    Q = torch.randn(B, D, D, generator=GEN, dtype=F64)
    nxt, JQ = cell.tangent(state, x, Q)
    ref_nxt, ref_JQ = reference(cell, mode).tangent(state, x, Q)
    assert_close(nxt, ref_nxt)
    assert_close(nxt, cell.step(state, x))
    assert_close(JQ, ref_JQ)


@pytest.mark.parametrize("name", MAPS)
def test_autograd_cell_gives_the_same_spectrum(name):
    cell = MAPS[name]()
    h0 = cell.initial_state(3).double()
    analytic = lyapunov_spectrum(cell, 300, h0=h0)
    generic = lyapunov_spectrum(reference(cell, "jvp"), 300, h0=h0)
    assert_close(analytic.per_sequence, generic.per_sequence)


def test_autograd_cell_checks_its_arguments():
    with pytest.raises(ValueError, match="dim"):
        AutogradCell(lambda h, x: h, 0)
    with pytest.raises(ValueError, match="mode"):
        AutogradCell(lambda h, x: h, 2, mode="fd")


def test_linear_map_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        cells.LinearMap(torch.zeros(2, 3))


@pytest.mark.parametrize("B, k", [(1, 1), (3, 5), (4, 1)])
def test_shared_matmul_is_the_batched_product(B, k):
    """One folded GEMM equals B separate ones, also for a strided Q (a column slice)."""
    from lyaplib.cells.base import shared_matmul

    W = torch.randn(7, 6, generator=GEN, dtype=F64)
    Q = torch.randn(B, 6, k + 2, generator=GEN, dtype=F64)[..., 1:k + 1]
    expected = torch.stack([W @ q for q in Q])
    torch.testing.assert_close(shared_matmul(W, Q), expected, rtol=1e-12, atol=1e-14)
