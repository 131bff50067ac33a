"""RNN, LSTM and GRU cells: analytic tangents against autograd (``check_tangent``, float64,
1e-10 relative) and steps against the torch modules' own forward passes."""

import itertools
import math

import pytest
import torch
from torch import nn

from lyaplib import cells, lyapunov_spectrum
from lyaplib.cells import gated
from lyaplib.cells.activations import sigmoid_prime, tanh_prime
from lyaplib.testing import check_tangent

F64 = torch.float64
IN, N, B = 3, 5, 4  # input size, hidden size, batch


def make(kind, layers=1, bias=True, batch_first=False, cell_module=False, **kw):
    torch.manual_seed(0)
    if cell_module:
        module = getattr(nn, f"{kind}Cell")(IN, N, bias=bias, **kw)
    else:
        module = getattr(nn, kind)(IN, N, num_layers=layers, bias=bias, batch_first=batch_first,
                                   **kw)
    with torch.no_grad():  # larger weights than torch's init, so that gates saturate unevenly
        for p in module.parameters():
            p.uniform_(-0.8, 0.8)
    return module.double()


def random_inputs(cell):
    g = torch.Generator().manual_seed(1)
    state = torch.randn(B, cell.state_dim, generator=g, dtype=F64)
    x = torch.randn(B, IN, generator=g, dtype=F64)
    Q = torch.randn(B, cell.dim, 3, generator=g, dtype=F64)
    return state, x, Q


def assert_close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


MODULES = [
    dict(layers=layers, bias=bias, batch_first=bf)
    for layers, bias, bf in itertools.product([1, 2], [True, False], [False, True])
] + [dict(cell_module=True, bias=True), dict(cell_module=True, bias=False)]


def ids(options):
    return ",".join(f"{k}={v}" for k, v in options.items())


@pytest.mark.parametrize("options", MODULES, ids=ids)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_tangent_and_step(options, nonlinearity):
    module = make("RNN", nonlinearity=nonlinearity, **options)
    cell = cells.RNN(module)
    check_tangent(cell, k=3)
    state, x, _ = random_inputs(cell)
    assert_close(cell.step(state, x), torch_step(module, state, x, lstm=False))


@pytest.mark.parametrize("options", MODULES, ids=ids)
def test_gru_tangent_and_step(options):
    module = make("GRU", **options)
    cell = cells.GRU(module)
    check_tangent(cell, k=3)
    state, x, Q = random_inputs(cell)
    assert_close(cell.step(state, x), torch_step(module, state, x, lstm=False))
    # The GRU's state is h alone: both conventions are the true Jacobian.
    assert_close(cells.GRU(module, "hidden").tangent(state, x, Q)[1],
                 cell.tangent(state, x, Q)[1])


@pytest.fixture(params=["stacked", "explicit"])
def lstm_path(request, monkeypatch):
    """The LSTM tangent multiplies Q by the stacked gate weights when Q is narrow and by
    the formed Jacobian blocks when it is wide; force each path in turn."""
    start = math.inf if request.param == "stacked" else 0.0
    monkeypatch.setattr(gated, "_EXPLICIT_FROM", {"hidden": start, "full": start})
    return request.param


@pytest.mark.parametrize("options", MODULES, ids=ids)
def test_lstm_full_state_tangent_and_step(options, lstm_path):
    module = make("LSTM", **options)
    cell = cells.LSTM(module, "full")
    assert cell.dim == cell.state_dim == 2 * N * options.get("layers", 1)
    check_tangent(cell, k=3)
    state, x, _ = random_inputs(cell)
    assert_close(cell.step(state, x), torch_step(module, state, x, lstm=True))


@pytest.mark.parametrize("options", MODULES, ids=ids)
def test_lstm_hidden_convention_is_dh_dh_with_c_held(options, lstm_path):
    module = make("LSTM", **options)
    cell = cells.LSTM(module, "hidden")
    LN = N * options.get("layers", 1)
    assert cell.dim == LN and cell.state_dim == 2 * LN
    # The 2022 paper's Jacobian: dh'/dh with the cell states held (check_tangent's default
    # for the S - D coordinates a cell carries but does not differentiate).
    check_tangent(cell, k=3)
    state, x, _ = random_inputs(cell)
    assert_close(cell.step(state, x), cells.LSTM(module).step(state, x))


def torch_step(module, state, x, lstm):
    """One step of the torch module itself, from our flat state layout."""
    L = getattr(module, "num_layers", 1)
    if isinstance(module, nn.RNNCellBase):
        if lstm:
            h, c = module(x, (state[:, :N], state[:, N:]))
            return torch.cat([h, c], -1)
        return module(x, state)
    hs = state[:, : L * N].reshape(B, L, N).transpose(0, 1).contiguous()
    seq = x[:, None] if module.batch_first else x[None]
    if lstm:
        cs = state[:, L * N:].reshape(B, L, N).transpose(0, 1).contiguous()
        _, (h_n, c_n) = module(seq, (hs, cs))
        return torch.cat([t.transpose(0, 1).reshape(B, -1) for t in (h_n, c_n)], -1)
    _, h_n = module(seq, hs)
    return h_n.transpose(0, 1).reshape(B, -1)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "linear", torch.sin])
@pytest.mark.parametrize("leak", [1.0, 0.3])
@pytest.mark.parametrize("driven", [False, True])
def test_vanilla_rnn_tangent(activation, leak, driven):
    g = torch.Generator().manual_seed(2)
    W = torch.randn(N, N, generator=g, dtype=F64)
    U = torch.randn(N, IN, generator=g, dtype=F64) if driven else None
    b = torch.randn(N, generator=g, dtype=F64) if driven else None
    cell = cells.VanillaRNN(W, U, b, activation=activation, leak=leak)
    state, x, Q = random_inputs(cell)
    x = x if driven else None
    check_tangent(cell, x, state=state, k=3)


def test_cells_run_in_the_engine_on_batched_sequences():
    inputs = torch.randn(3, 30, IN, dtype=F64)
    for cell in (cells.RNN(make("RNN", layers=2)), cells.GRU(make("GRU")),
                 cells.LSTM(make("LSTM")), cells.LSTM(make("LSTM"), "hidden")):
        res = lyapunov_spectrum(cell, inputs, warmup=5)
        assert res.per_sequence.shape == (3, cell.dim)
        assert res.state.shape == (3, cell.state_dim)


def test_saturated_units_keep_a_nonzero_derivative_in_float32():
    a = torch.tensor([12.0, 30.0, -40.0])
    assert (1 - torch.tanh(a) ** 2 == 0).all()  # the naive formula loses the whole row
    assert (tanh_prime(a) > 0).all() and (sigmoid_prime(a) > 0).all()
    # and accurate: against sech^2 a = 4 e^-2|a| / (1 + e^-2|a|)^2 in float64
    e = torch.exp(-a.double().abs())
    torch.testing.assert_close(tanh_prime(a).double(), 4 * e ** 2 / (1 + e ** 2) ** 2,
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(sigmoid_prime(a).double(), e / (1 + e) ** 2, rtol=1e-5, atol=0)
    torch.testing.assert_close(tanh_prime(torch.tensor(0.3, dtype=F64)),
                               1 - torch.tanh(torch.tensor(0.3, dtype=F64)) ** 2)


def test_unsupported_modules_are_refused_clearly():
    with pytest.raises(ValueError, match="bidirectional"):
        cells.LSTM(nn.LSTM(IN, N, bidirectional=True))
    with pytest.raises(ValueError, match="proj_size"):
        cells.LSTM(nn.LSTM(IN, N, proj_size=2))
    with pytest.raises(TypeError, match="torch.nn.GRU or torch.nn.GRUCell"):
        cells.GRU(nn.LSTM(IN, N))
    with pytest.raises(ValueError, match="jacobian must be one of"):
        cells.LSTM(nn.LSTM(IN, N), "cell")
    with pytest.warns(DeprecationWarning, match="jacobian='hidden'"):
        assert cells.LSTM(nn.LSTM(IN, N), state="hidden").dim == N
    with pytest.raises(TypeError, match="jacobian= only"):
        cells.LSTM(nn.LSTM(IN, N), "full", state="hidden")
    with pytest.raises(ValueError, match="activation must be one of"):
        cells.VanillaRNN(torch.eye(2), activation="swish")
    with pytest.raises(ValueError, match="no weight_ih"):
        cells.VanillaRNN(torch.eye(2)).step(torch.zeros(1, 2), torch.zeros(1, 1))
    with pytest.raises(ValueError, match="leak"):
        cells.VanillaRNN(torch.eye(2), leak=0)
