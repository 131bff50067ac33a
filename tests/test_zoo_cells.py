"""The AeLLE zoo and the FORCE network (their tangents: tests/test_tangents.py)."""

import pytest
import torch

from lyaplib import AutogradCell, cells, force, lyapunov_spectrum
from lyaplib.testing import CELLS

F64 = torch.float64

def randomised(name: str) -> cells.CellModule:
    """The registered test cell ``name`` in float64, reproducibly."""
    torch.manual_seed(hash(name) % 1000)
    return CELLS[name]().double()


def test_the_autograd_check_catches_the_published_kinds_of_error():
    """The published AeLLE Jacobians of the antisymmetric RNN and coRNN do not
    match their forward passes (transposes, missing blocks). Errors of exactly those kinds,
    a transposed recurrent matrix and a dz'/dz block without its dt (tanh' W_z - eps I)
    term, are far from autograd, whereas ours agree to 1e-10 (test above)."""
    torch.manual_seed(0)
    anti = randomised("antisymmetric")
    h, x = torch.randn(1, 6, dtype=F64), torch.randn(1, 3, dtype=F64)
    true_J = AutogradCell(anti.step, 6).jacobian(h, x)[0]
    a, A = anti._pre(h, x)
    transposed = torch.eye(6, dtype=F64) + anti.eps * (1 - torch.tanh(a[0]) ** 2)[:, None] * A.T
    assert (transposed - true_J).abs().max() > 1e-3

    co = randomised("cornn")
    N = co.hidden_size
    s = torch.randn(1, 2 * N, dtype=F64)
    true_J = AutogradCell(co.step, 2 * N).jacobian(s, x)[0]
    no_zz = true_J.clone()
    no_zz[N:, N:] = torch.eye(N, dtype=F64)  # dz'/dz without its dt (tanh' W_z - eps I) part
    assert (no_zz - true_J).abs().max() > 1e-3


def test_noisy_rnn_is_noisy_only_in_training():
    cell = cells.NoisyRNN(2, 4).double()
    h, x = torch.randn(3, 4, dtype=F64), torch.randn(3, 2, dtype=F64)
    assert not torch.equal(cell.train().step(h, x), cell.step(h, x))
    assert torch.equal(cell.eval().step(h, x), cells.LipschitzRNN.step(cell, h, x))
    with pytest.raises(RuntimeError, match="eval"):
        cell.train().tangent(h, x, torch.eye(4, dtype=F64).expand(3, 4, 4))


def test_run_unrolls_step_and_trains():
    cell = cells.CoRNN(2, 4)
    inputs = torch.randn(3, 7, 2)
    outputs, final = cell.run(inputs)
    state = cell.initial_state(3)
    for t in range(7):
        state = cell.step(state, inputs[:, t])
    assert outputs.shape == (3, 7, 4) and torch.allclose(final, state)
    assert torch.allclose(outputs[:, -1], state[:, :4])  # the read-out sees y
    outputs.sum().backward()
    assert all(p.grad is not None for p in cell.parameters())
    with pytest.raises(ValueError, match=r"\(B, T, 2\)"):
        cell.run(torch.randn(3, 7, 5))


def test_small_step_antisymmetric_rnn_is_nearly_neutral():
    """eps -> 0 with gamma = 0: J -> I + eps * (antisymmetric), all exponents -> 0 (O(eps^2))."""
    cell = cells.AntisymmetricRNN(0, 16, eps=0.01, gamma=0.0).double()
    res = lyapunov_spectrum(cell, 400, h0=0.5 * torch.randn(2, 16, dtype=F64))
    assert res.exponents.abs().max() < 1e-3


def test_force_network_exponents_at_zero_readout():
    """With w_o = 0 the network is the autonomous leaky net: for g < 1 and x = 0 the
    Jacobian is constant, (1 - dt) I + dt M, so the exponents are log|eig|."""
    net = cells.ForceRNN(0, 40, g=0.5, dt=0.1, density=1.0,
                         generator=torch.Generator().manual_seed(0), dtype=F64)
    res = lyapunov_spectrum(net, 300, h0=torch.zeros(1, 40, dtype=F64))
    eig = torch.linalg.eigvals((1 - 0.1) * torch.eye(40, dtype=F64) + 0.1 * net.M)
    expected = eig.abs().log().sort(descending=True).values
    torch.testing.assert_close(res.exponents.sort(descending=True).values, expected,
                               atol=2e-2, rtol=0)
    torch.testing.assert_close(res.exponents.sum(), expected.sum(), atol=1e-10, rtol=0)


def test_force_learns_the_four_sine_target_at_g_1_4():
    net = cells.ForceRNN(0, 512, g=1.4, generator=torch.Generator().manual_seed(2), dtype=F64)
    target = force.four_sines(28_800 + 6_000, generator=torch.Generator().manual_seed(12),
                              dtype=F64)
    torch.manual_seed(0)
    result = force.train_force(net, target, 28_800)
    scale = target.abs().mean().item()
    # a free run of 6,000 steps (5 periods of the slowest sine) stays on the target
    assert result.test_error < 0.05 * scale, (result.test_error, scale)
    assert result.train_error < 0.05 * scale
