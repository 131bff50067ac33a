"""The differentiable spectrum: gradients of the exponents against finite differences."""

import copy

import pytest
import torch
from torch import nn

from lyaplib import AutogradCell, LyapunovError, cells, lyapunov_spectrum
from lyaplib.testing import CELLS

from .helpers import RandomRNN

F64 = torch.float64
# maps with no floating parameters or buffers have nothing to differentiate
_DIFFERENTIABLE = [name for name, make in CELLS.items()
                   if any(t.is_floating_point() for t in (*make().parameters(),
                                                          *make().buffers()))]


def _inputs(cell, B=2, T=40, seed=1):
    width = getattr(cell, "input_size", None) or 0
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, width, generator=g, dtype=F64) if width else T


def _weights(cell):
    """The cell's floating parameters and buffers, as leaves that require grad."""
    tensors = [t for t in (*cell.parameters(), *cell.buffers()) if t.is_floating_point()]
    for t in tensors:
        t.requires_grad_(True)
    return tensors


def _directional_fd(cell, tensors, direction, f, eps):
    """Five-point central difference of f(cell) along ``direction`` (one tensor per
    weight): truncation error O(eps^4), since the gamma cells curve strongly."""
    def at(step):
        with torch.no_grad():
            for t, v in zip(tensors, direction, strict=True):
                t.add_(step * v)
        value = f(cell)
        with torch.no_grad():
            for t, v in zip(tensors, direction, strict=True):
                t.sub_(step * v)
        return value

    return (8 * (at(eps) - at(-eps)) - (at(2 * eps) - at(-2 * eps))) / (12 * eps)


@pytest.mark.parametrize("name", _DIFFERENTIABLE)
def test_gradient_of_each_exponent_equals_central_differences(name):
    torch.manual_seed(0)
    cell = CELLS[name]().to(F64)
    if isinstance(cell, nn.Module):
        cell.eval()
    xs = _inputs(cell)
    h0 = 0.3 * torch.randn(2, getattr(cell, "state_dim", cell.dim), dtype=F64)
    tensors = _weights(cell)
    direction = [torch.randn_like(t) for t in tensors]
    # a ReLU switches units off: only as many exponents are finite as units stay on
    k = min(cell.dim, 2 if "relu" in name else 4)

    def spectrum(c):  # no warm-up: it is not differentiated (see the test of grad_window)
        return lyapunov_spectrum(c, xs, k=k, h0=h0, differentiable=True).exponents

    lam = spectrum(cell)
    analytic = []
    for i in range(k):  # every exponent on its own, not only a weighted sum
        grads = torch.autograd.grad(lam[i], tensors, retain_graph=True, allow_unused=True)
        analytic.append(sum(float((g * v).sum()) for g, v in zip(grads, direction, strict=True)
                            if g is not None))
    for i in range(k):  # after every backward pass: the differences move the weights
        numeric = float(_directional_fd(cell, tensors, direction,
                                        lambda c, i=i: spectrum(c)[i].detach(), 1e-5))
        assert analytic[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (name, i)


def test_autograd_cell_is_differentiable_too():
    torch.manual_seed(0)
    module = RandomRNN(5, 3, gain=1.5)
    cell = AutogradCell(module, 5)
    xs = 0.5 * torch.randn(2, 30, 3, dtype=F64)
    tensors = list(module.parameters())
    direction = [torch.randn_like(t) for t in tensors]

    def f(c):
        return lyapunov_spectrum(c, xs, differentiable=True).exponents.sum()

    grads = torch.autograd.grad(f(cell), tensors)
    analytic = sum(float((g * v).sum()) for g, v in zip(grads, direction, strict=True))
    # torch.tanh's derivative 1 - tanh^2 loses digits where units saturate: noise of
    # ~1e-10 in f, so a larger step than above
    numeric = float(_directional_fd(cell, tensors, direction, lambda c: f(c).detach(), 1e-5))
    assert analytic == pytest.approx(numeric, rel=1e-6)


def test_gradcheck_on_the_spectrum():
    """torch.autograd.gradcheck of (W, U, b, h0) -> all exponents of a tanh RNN."""
    g = torch.Generator().manual_seed(3)
    W = (1.3 * torch.randn(4, 4, generator=g, dtype=F64) / 2).requires_grad_()
    U = torch.randn(4, 2, generator=g, dtype=F64).requires_grad_()
    b = (0.1 * torch.randn(4, generator=g, dtype=F64)).requires_grad_()
    h0 = torch.randn(2, 4, generator=g, dtype=F64).requires_grad_()
    xs = torch.randn(2, 12, 2, generator=g, dtype=F64)

    def spectrum(W, U, b, h0):
        cell = cells.VanillaRNN(W, U, b)
        cell.weight_hh, cell.weight_ih, cell.bias = W, U, b  # the leaves, not copies
        return lyapunov_spectrum(cell, xs, h0=h0, differentiable=True).per_sequence

    assert torch.autograd.gradcheck(spectrum, (W, U, b, h0))


def test_warmup_is_detached_and_h0_gets_a_gradient_without_it():
    cell = cells.GRU(nn.GRU(2, 3).double())
    xs = torch.randn(1, 20, 2, dtype=F64)
    h0 = torch.randn(1, 3, dtype=F64, requires_grad=True)
    lam = lyapunov_spectrum(cell, xs, h0=h0, warmup=4, differentiable=True).exponents
    assert torch.autograd.grad(lam.sum(), h0, allow_unused=True)[0] is None
    lam = lyapunov_spectrum(cell, xs, h0=h0, differentiable=True).exponents
    (grad,) = torch.autograd.grad(lam.sum(), h0)
    direction = torch.randn_like(h0)
    numeric = (lyapunov_spectrum(cell, xs, h0=h0 + 1e-6 * direction).exponents.sum()
               - lyapunov_spectrum(cell, xs, h0=h0 - 1e-6 * direction).exponents.sum()) / 2e-6
    assert float((grad * direction).sum()) == pytest.approx(float(numeric), rel=1e-5)


def test_warmup_and_grad_window_differentiate_only_the_last_steps():
    """With grad_window w the gradient is that of the last w steps' share of the sum:
    the same as restarting from the state and basis reached w steps before the end (the
    warm-up's end state and basis, when w covers all T - warmup steps)."""
    cell = cells.LSTM(nn.LSTM(2, 3).double())
    xs = torch.randn(2, 30, 2, dtype=F64)
    T, warmup, w = 30, 6, 10
    for w in (10, T - warmup):
        _check_window(cell, xs, T, warmup, w)


def _check_window(cell, xs, T, warmup, w):
    windowed = lyapunov_spectrum(cell, xs, warmup=warmup, grad_window=w, differentiable=True)
    # w = T - warmup: restart at the end of the warm-up (a run of its steps alone)
    before = lyapunov_spectrum(cell, xs[:, : T - w], warmup=warmup if T - w > warmup else 0)
    after = lyapunov_spectrum(cell, xs[:, T - w:], h0=before.state, Q0=before.Q,
                              differentiable=True)
    assert torch.allclose(windowed.exponents.detach(),
                          (before.exponents * (T - w - warmup) + after.exponents.detach() * w)
                          / (T - warmup), rtol=0, atol=1e-12)
    weights = list(cell.parameters())
    g_windowed = torch.autograd.grad(windowed.exponents.sum(), weights)
    g_after = torch.autograd.grad(after.exponents.sum() * w / (T - warmup), weights)
    for a, b in zip(g_windowed, g_after, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-13)


def test_default_path_builds_no_graph_even_for_trainable_cells():
    cell = cells.LSTM(nn.LSTM(2, 3))  # parameters require grad
    result = lyapunov_spectrum(cell, torch.randn(2, 10, 2))
    assert not result.per_sequence.requires_grad and result.per_sequence.grad_fn is None


def test_differentiable_refuses_a_cast_and_a_window_without_it():
    cell = cells.GRU(nn.GRU(2, 3))  # float32
    xs = torch.randn(1, 10, 2)
    with pytest.raises(LyapunovError, match="differentiable=True needs the cell"):
        lyapunov_spectrum(cell, xs, dtype=F64, differentiable=True)
    with pytest.raises(LyapunovError, match="grad_window applies to differentiable"):
        lyapunov_spectrum(cell, xs, grad_window=3)
    with pytest.raises(LyapunovError, match="grad_window must be an int >= 1"):
        lyapunov_spectrum(cell, xs, grad_window=0, differentiable=True)
    # the cell itself is never modified
    before = copy.deepcopy(cell.state_dict())
    lyapunov_spectrum(cell, xs, differentiable=True).exponents.sum().backward()
    assert all(torch.equal(before[n], t) for n, t in cell.state_dict().items())
