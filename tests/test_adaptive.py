"""The gamma activation family, GammaRNN and the ARU network."""

import math

import pytest
import torch

from lyaplib import cells, lyapunov_spectrum
from lyaplib.cells.adaptive import gamma, gamma_prime, sup_gamma_prime, unit_gain_saturation
from lyaplib.testing import check_tangent

F64 = torch.float64


def naive(x, n, s):
    return (1 - s) * torch.log1p(torch.exp(n * x)) / n + s * torch.sigmoid(n * x)


def test_gamma_values_limits_and_stability():
    x = torch.linspace(-2, 2, 41, dtype=F64)
    torch.testing.assert_close(gamma(x, 3.0, 0.3), naive(x, 3.0, 0.3))
    big = torch.tensor([-40.0, 40.0], dtype=F64)
    out = gamma(big, 50.0, 0.0)  # exp(2000) overflows in the naive formula
    assert torch.isfinite(out).all() and out[0] == 0 and out[1] == pytest.approx(40.0)
    assert torch.isinf(naive(big, 50.0, 0.0)).any()
    torch.testing.assert_close(gamma(x, 1.0, 1.0), torch.sigmoid(x))  # s = 1: a sigmoid


@pytest.mark.parametrize("per_neuron", [False, True])
def test_gamma_gradcheck(per_neuron):
    x = torch.randn(3, 5, dtype=F64, requires_grad=True)
    shape = (5,) if per_neuron else ()
    n = (torch.rand(shape, dtype=F64) * 4 + 1).requires_grad_()
    s = torch.rand(shape, dtype=F64).requires_grad_()
    assert torch.autograd.gradcheck(gamma, (x, n, s))
    assert torch.autograd.gradcheck(lambda x: gamma(x, n.detach() * 20, s.detach()), (x,))
    (grad,) = torch.autograd.grad(gamma(x, n, s).sum(), x)
    torch.testing.assert_close(gamma_prime(x.detach(), n.detach(), s.detach()), grad)


def test_gamma_forward_mode_matches_reverse_mode():
    x, n, s = torch.randn(7, dtype=F64), torch.tensor(3.0, dtype=F64), torch.tensor(0.4, dtype=F64)
    tx, tn, ts = torch.randn(7, dtype=F64), torch.tensor(0.7, dtype=F64), torch.tensor(-0.2,
                                                                                      dtype=F64)
    _, forward = torch.func.jvp(gamma, (x, n, s), (tx, tn, ts))
    jac = torch.autograd.functional.jacobian(gamma, (x, n, s))
    torch.testing.assert_close(forward, jac[0] @ tx + jac[1] * tn + jac[2] * ts)


@pytest.mark.parametrize("n", [1.0, 2.0, 5.0, 10.0])
@pytest.mark.parametrize("s", [0.0, 0.05, 0.25, 0.5, 1.0])
def test_sup_gamma_prime_closed_form(n, s):
    x = torch.linspace(-20, 20, 400_001, dtype=F64)
    dense = gamma_prime(x, n, s).max().item()
    assert sup_gamma_prime(n, s) == pytest.approx(dense, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("n", [4.0, 6.25, 9.0, 20.0])
def test_unit_gain_curve(n):
    s = unit_gain_saturation(n)
    assert s > 1 / (n + 1) and sup_gamma_prime(n, s) == pytest.approx(1.0, rel=1e-12)
    assert sup_gamma_prime(n, 0.9 * s) < 1
    if s < 1:  # n = 4 puts the curve at s = 1, the edge of the family
        assert sup_gamma_prime(n, min(1.1 * s, 1.0)) > 1
    assert unit_gain_saturation(9.0) == 0.25  # 1 / (3 - 1)^2


def test_aru_main_convention_freezes_the_controllers():
    """The "main" Jacobian differentiates h only, at the step's own (n, s); the other
    cells of this module are checked in tests/test_tangents.py."""
    torch.manual_seed(0)
    cell = cells.ARU(3, 4, controller_size=5, jacobian="main").double()
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.2 * torch.randn_like(p))
    state, x = torch.randn(3, cell.state_dim, dtype=F64), torch.randn(3, 3, dtype=F64)
    n, s = cell.activation_parameters(cell.step(state, x))

    def frozen(h, x):  # the main network with this step's (n, s) held fixed
        return gamma(h @ cell.W.T + cell.b + x @ cell.U.T, n, s)

    check_tangent(cell, x, state=state, reference=frozen)
    with pytest.raises(AssertionError, match="differs from autograd"):
        check_tangent(cell, x, state=state)  # not the block of the full Jacobian


def test_aru_gains_start_near_n0_and_train():
    aru = cells.ARU(2, 8, controller_size=6, n0=6.0)
    out, final = aru.run(torch.randn(4, 5, 2))
    n, s = aru.gains(final[:, 8:].unflatten(-1, (8, 6)))
    assert out.shape == (4, 5, 8) and (n - 6.0).abs().max() < 1.0 and s.abs().max() < 1.0
    out.sum().backward()
    assert all(p.grad is not None for p in aru.parameters())
    with pytest.raises(ValueError, match="jacobian must be one of"):
        cells.ARU(2, 8, jacobian="hidden")
    with pytest.raises(ValueError, match="adapt"):
        cells.GammaRNN(2, 8, adapt="learned")
    assert math.isclose(sup_gamma_prime(1.0, 0.0), 1.0)


def test_fixed_gamma_grid_as_one_batch_equals_separate_networks():
    """(B, 1) fixed n, s run B activation shapes at once, one per sequence."""
    torch.manual_seed(1)
    n = torch.tensor([[1.0], [5.0], [12.5]], dtype=F64)
    s = torch.tensor([[0.0], [0.5], [1.0]], dtype=F64)
    grid = cells.GammaRNN(0, 6, n=n, s=s).double()
    h0 = torch.rand(3, 6, dtype=F64)
    batched = lyapunov_spectrum(grid, 60, h0=h0, k=2).per_sequence
    for i in range(3):
        single = cells.GammaRNN(0, 6, n=float(n[i]), s=float(s[i])).double()
        single.load_state_dict({**grid.state_dict(), "n": n[i, 0], "s": s[i, 0]})
        alone = lyapunov_spectrum(single, 60, h0=h0[i:i + 1], k=2).exponents
        torch.testing.assert_close(batched[i], alone, rtol=1e-12, atol=1e-12)


def test_aru_main_network_is_the_frozen_main_map():
    torch.manual_seed(2)
    aru = cells.ARU(0, 5, controller_size=4).double()
    n, s = torch.rand(5, dtype=F64) * 4 + 1, torch.rand(5, dtype=F64)
    main = aru.main_network(n, s, drive=0.3)
    h = torch.randn(2, 5, dtype=F64)
    expected = gamma(h @ aru.W.T + aru.b + 0.3, n, s)
    torch.testing.assert_close(main.step(h, None), expected)
    state = torch.cat([h, torch.randn(2, 20, dtype=F64)], -1)
    nxt = aru.step(state, None)
    n_t, s_t = aru.activation_parameters(nxt)  # (2, 5): what the controllers just set
    for i in range(2):
        frozen = aru.main_network(n_t[i], s_t[i])
        torch.testing.assert_close(nxt[i, :5], frozen.step(h[i:i + 1], None)[0])
    assert main.W.data_ptr() != aru.W.data_ptr()  # a copy: the ARU is untouched


def test_aru_training_path_is_the_tangent_path():
    """The step (value only, for training) and the classifier's unstacked forward give
    exactly what the tangent path and the stacked trajectory give."""
    from lyaplib import models

    torch.manual_seed(0)
    aru = cells.ARU(3, 6, controller_size=4)
    state, x = torch.randn(5, aru.state_dim), torch.randn(5, 3)
    Q = torch.linalg.qr(torch.randn(5, aru.dim, 2))[0]
    assert torch.equal(aru.step(state, x), aru.tangent(state, x, Q)[0])
    net = models.RecurrentClassifier("aru", 3, 6, 10, controller_size=4)
    inputs, drive = torch.randn(2, 7, 3), torch.randn(2, 7)
    for d in (None, drive):
        logits, final = net(inputs, drive=d)
        assert torch.equal(final, net.trajectory(inputs, drive=d)[:, -1])
        assert torch.equal(logits, net.readout(final[:, :6]))
