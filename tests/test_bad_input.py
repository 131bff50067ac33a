"""Bad input gets a clear error (or warning) naming the argument, never a torch traceback
or a silent result: one test per probe that used to crash or stay silent."""

import math
import warnings

import pytest
import torch
from torch import nn

from lyaplib import AutogradCell, LyapunovError, LyapunovWarning, cells, lyapunov_spectrum
from lyaplib.cells import activations
from lyaplib.population import Population

F64 = torch.float64


def rnn(N=6, inputs=2, gain=1.5, seed=0, dtype=F64, **kwargs):
    return cells.VanillaRNN.random(N, gain, inputs, generator=torch.Generator().manual_seed(seed),
                                   dtype=dtype, **kwargs)


class Custom(cells.CellModule):
    """A linear map whose ``tangent`` can be broken on purpose."""

    def __init__(self, break_with=None, dim=4):
        super().__init__()
        self.dim, self.break_with = dim, break_with
        self.register_buffer("A", 0.9 * torch.eye(dim, dtype=F64))

    def step(self, state, x):
        nxt = state @ self.A.T
        return torch.cat([nxt, nxt[:, :1]], 1) if self.break_with == "step" else nxt

    def tangent(self, state, x, Q):
        nxt, JQ = self.step(state, x), self.A @ Q
        return {"transposed": (nxt, JQ.mT), "one output": JQ,
                "float32": (nxt, JQ.float())}.get(self.break_with, (nxt, JQ))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused_up_front_naming_dtype(dtype):
    with pytest.raises(LyapunovError, match="dtype must be torch.float32 or torch.float64"):
        lyapunov_spectrum(rnn(), torch.zeros(1, 5, 2), dtype=dtype)
    with pytest.raises(LyapunovError, match=f"dtype: the cell's parameters .* are {dtype}.*"
                                            "pass dtype=torch.float32"):
        lyapunov_spectrum(rnn(dtype=dtype), torch.zeros(1, 5, 2, dtype=dtype))
    # the advice works: a float32 copy of the half-precision cell is analysed
    result = lyapunov_spectrum(rnn(dtype=dtype), torch.zeros(1, 5, 2), dtype=torch.float32)
    assert torch.isfinite(result.exponents).all()


@pytest.mark.parametrize("where", ["inputs", "h0", "Q0", "cell"])
def test_complex_tensors_are_refused_not_truncated(where):
    cell = rnn()
    args = dict(inputs=torch.zeros(1, 5, 2, dtype=F64), h0=None, Q0=None)
    if where == "cell":
        cell.weight_hh = cell.weight_hh.to(torch.complex128)
    elif where == "Q0":
        args["Q0"] = torch.eye(6, 2, dtype=torch.complex128)
    else:
        args[where] = (torch.zeros(1, 5, 2) if where == "inputs" else torch.zeros(1, 6)) + 1j
    name = "cell.weight_hh" if where == "cell" else where
    with pytest.raises(LyapunovError, match=f"{name} is complex"):
        lyapunov_spectrum(cell, args.pop("inputs"), **args)


def test_meta_tensors_are_refused():
    with pytest.raises(LyapunovError, match="inputs is on the meta device"):
        lyapunov_spectrum(rnn(), torch.zeros(1, 5, 2, device="meta"))
    with pytest.raises(LyapunovError, match="cell.weight_hh is on the meta device"):
        lyapunov_spectrum(rnn().to("meta"), torch.zeros(1, 5, 2))


def test_a_wrong_input_width_is_named():
    with pytest.raises(LyapunovError, match=r"inputs must have I = 2 features .* \(1, 5, 3\)"):
        lyapunov_spectrum(rnn(), torch.zeros(1, 5, 3))
    lstm = cells.LSTM(nn.LSTM(3, 4, batch_first=True))
    with pytest.raises(LyapunovError, match="inputs must have I = 3 features"):
        lyapunov_spectrum(lstm, torch.zeros(1, 5, 2))
    # a cell that does not declare its width: the first step's failure, with the shapes
    linear = nn.Linear(2, 4).double()
    cell = AutogradCell(lambda h, x: torch.tanh(h + linear(x)), 4)
    with pytest.raises(LyapunovError, match=r"AutogradCell.tangent failed on the first step "
                                            r"\(state \(1, 4\), x \(1, 3\), Q \(1, 4, 4\)\)"):
        lyapunov_spectrum(cell, torch.zeros(1, 5, 3, dtype=F64))


@pytest.mark.parametrize("broken, message", [
    ("step", r"returned a next state of shape \(2, 5\) .* expected \(B, S\) = \(2, 4\)"),
    ("transposed", r"returned J @ Q of shape \(2, 2, 4\) .* expected \(B, D, k\) = \(2, 4, 2\); "
                   "it looks transposed"),
    ("one output", r"must return \(next state, J @ Q\), two tensors"),
    ("float32", "returned its J @ Q as torch.float32 .* engine runs in torch.float64"),
])
def test_a_custom_cell_with_wrong_outputs_is_named_on_the_first_step(broken, message):
    with pytest.raises(LyapunovError, match=f"Custom.tangent {message}"):
        lyapunov_spectrum(Custom(broken), 10, h0=torch.ones(2, 4, dtype=F64), k=2)
    ok = lyapunov_spectrum(Custom(), 10, h0=torch.ones(2, 4, dtype=F64), k=2)
    torch.testing.assert_close(ok.exponents, torch.full((2,), math.log(0.9), dtype=F64))


def test_a_cell_without_a_tangent_is_named():
    with pytest.raises(LyapunovError, match="LSTM has no tangent method: wrap torch.nn.LSTM in "
                                            "the matching lyaplib.cells class"):
        lyapunov_spectrum(nn.LSTM(2, 3), 5)
    with pytest.raises(LyapunovError, match="Cell protocol.*AutogradCell"):
        lyapunov_spectrum(lambda h, x: h, 5)


@pytest.mark.parametrize("Q0, message", [
    (torch.zeros(6, 2, dtype=F64), "column 0 .* is zero or a combination"),
    (torch.full((6, 2), float("nan"), dtype=F64), "Q0 must be finite"),
    (torch.ones(6, 2, dtype=F64), "column 1 .* is zero or a combination"),
])
def test_a_degenerate_Q0_is_refused_not_replaced_by_the_identity(Q0, message):
    with pytest.raises(LyapunovError, match=message):
        lyapunov_spectrum(rnn(), torch.zeros(1, 5, 2, dtype=F64), Q0=Q0)


def test_torch_module_subclasses_with_their_own_forward_are_refused():
    class Peephole(nn.LSTM):
        def forward(self, x, state=None):
            return super().forward(2 * x, state)

    class Named(nn.LSTM):  # same equations, a new name: fine
        pass

    with pytest.raises(TypeError, match="Peephole overrides torch.nn.LSTM.forward.*AutogradCell"):
        cells.LSTM(Peephole(2, 3))
    cells.LSTM(Named(2, 3))

    class Gated(nn.GRUCell):
        def forward(self, x, h=None):
            return super().forward(x, h) * 0.5

    with pytest.raises(TypeError, match="Gated overrides torch.nn.GRUCell.forward"):
        cells.GRU(Gated(2, 3))


def test_a_module_in_training_mode_with_dropout_is_noticed():
    lstm = nn.LSTM(2, 3, num_layers=2, dropout=0.3, batch_first=True).double()
    inputs = torch.zeros(1, 5, 2, dtype=F64)
    with pytest.warns(LyapunovWarning, match=r"cell.module \(LSTM\) is in training mode with "
                                             r"dropout p = 0.3.*\.eval\(\)"):
        lyapunov_spectrum(cells.LSTM(lstm), inputs)
    lstm.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lyapunov_spectrum(cells.LSTM(lstm), inputs)
    cell = Custom()
    cell.dropout = nn.Dropout(0.2)  # a submodule of the cell, as in a user's model
    with pytest.warns(LyapunovWarning, match=r"cell.dropout \(Dropout\) is in training mode"):
        lyapunov_spectrum(cell, 5, h0=torch.ones(1, 4, dtype=F64))


def test_proj_size_points_to_autograd_cell_whose_recipe_works():
    lstm = nn.LSTM(2, 5, proj_size=3, batch_first=True).double()
    with pytest.raises(ValueError, match="proj_size > 0 .*AutogradCell handles them"):
        cells.LSTM(lstm)

    def step(state, x):  # the recipe of the message: state [h, c]
        h, c = state.split([3, 5], dim=-1)
        _, (h, c) = lstm(x[:, None], (h[None].contiguous(), c[None].contiguous()))
        return torch.cat([h[0], c[0]], dim=-1)

    result = lyapunov_spectrum(AutogradCell(step, 8), torch.randn(2, 50, 2, dtype=F64))
    assert result.k == 8 and torch.isfinite(result.exponents).all()


def test_relu_units_switched_off_explain_the_singular_tangent():
    # a strongly negative bias switches units 3-5 off for good (3 exponents are -inf), a
    # positive one keeps units 0-2 on, near a stable fixed point. The switched-off units are
    # the last rows of J Q: Householder reflections keep trailing zero rows exactly zero on
    # any BLAS, so R_ii = 0 exactly (zero rows on top are mixed into rounding noise instead,
    # ~1e-17, whose size depends on the machine's kernels).
    W = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=F64) / 6 ** 0.5 / 2
    bias = torch.tensor([3.0, 3, 3, -50, -50, -50], dtype=F64)
    net = cells.VanillaRNN(W, bias=bias, activation="relu")
    h0 = torch.rand(2, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    with pytest.raises(LyapunovError, match="tangent became singular.*inactive ReLU units.*fewer "
                                            "exponents than k = 6"):
        lyapunov_spectrum(net, 100, h0=h0)
    assert torch.isfinite(lyapunov_spectrum(net, 100, h0=h0, k=3).exponents).all()  # advice works


def test_an_expanding_linear_map_runs_from_its_default_state():
    # 1.5^2000 = e^811 overflows float64 from a state of ones; the tangent needs no state
    A = torch.diag(torch.tensor([1.5, 0.5], dtype=F64))
    # the warm-up aligns the default random basis with the axes (to (1/3)^100)
    result = lyapunov_spectrum(cells.LinearMap(A), 2000, warmup=100)
    torch.testing.assert_close(result.exponents, torch.tensor([1.5, 0.5], dtype=F64).log())


def test_autograd_cell_with_saturation_safe_activations_runs_where_torch_tanh_stops():
    # N = 64, gain 6: units saturate past |a| = 19, where 1 - tanh^2 is exactly 0 in float64
    net = cells.VanillaRNN.random(64, 6.0, generator=torch.Generator().manual_seed(0), dtype=F64)
    W = net.weight_hh
    h0 = torch.randn(2, 64, generator=torch.Generator().manual_seed(1), dtype=F64)
    kwargs = dict(h0=h0, warmup=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LyapunovWarning)  # the lowest exponents: at the floor
        analytic = lyapunov_spectrum(net, 600, **kwargs).exponents
        with pytest.raises(LyapunovError, match="tangent became singular"):
            lyapunov_spectrum(AutogradCell(lambda h, x: torch.tanh(h @ W.T), 64), 600, **kwargs)
        safe = lyapunov_spectrum(AutogradCell(lambda h, x: activations.tanh(h @ W.T), 64), 600,
                                 **kwargs).exponents
    resolved = analytic > analytic[0] - 0.5 * math.log(1 / torch.finfo(F64).eps)
    assert resolved.sum() >= 48 and torch.isfinite(safe).all()
    # seeds 0-2 agree to 1.4e-6 or better above the precision floor
    assert (safe - analytic)[resolved].abs().max() < 1e-4
    a = torch.tensor([0.5, 25.0, -40.0], dtype=F64, requires_grad=True)
    for f, f_prime in ((activations.tanh, activations.tanh_prime),
                       (activations.sigmoid, activations.sigmoid_prime)):
        assert torch.equal(f(a), (torch.tanh if f is activations.tanh else torch.sigmoid)(a))
        torch.testing.assert_close(torch.autograd.grad(f(a).sum(), a)[0], f_prime(a.detach()))
        assert (torch.func.jvp(f, (a.detach(),), (torch.ones(3, dtype=F64),))[1] > 0).all()


def test_population_adam_state_follows_dtype_and_device_and_is_saved():
    models = [nn.Linear(3, 2) for _ in range(4)]
    pop = Population(models, [1e-2] * 4)
    pop.train_step(lambda out, y: (out - y).pow(2).mean(), torch.randn(5, 3), torch.randn(5, 2))
    pop.double()
    moments = [t for pair in pop._moments for t in pair]
    assert all(t.dtype == F64 for t in moments) and any(t.abs().sum() > 0 for t in moments)
    state = pop.state_dict()
    assert sum(name.startswith("adam_") for name in state) == 2 * len(pop.params)
    again = Population([nn.Linear(3, 2) for _ in range(4)], [1e-2] * 4).double()
    again.load_state_dict(state)
    restored = [t for pair in again._moments for t in pair]
    assert again._steps == 1 and all(map(torch.equal, restored, moments))
    assert pop.model(0).weight.dtype == F64  # a network taken out keeps the dtype
    pop.to("cpu")  # the meta-device template is not moved (it has no data)


def test_device_argument():
    with pytest.raises(LyapunovError, match="device must be"):
        lyapunov_spectrum(cells.Henon(), 10, device="gpu")
    with pytest.raises(LyapunovError, match="dtype must be a floating dtype"):
        lyapunov_spectrum(cells.Henon(), 10, dtype="float64")
    # explicit: a map without parameters runs there, and gives the same numbers
    default = lyapunov_spectrum(cells.Henon(), 50, dtype=F64)
    placed = lyapunov_spectrum(cells.Henon(), 50, dtype=F64, device=torch.device("cpu"))
    assert torch.equal(default.per_sequence, placed.per_sequence)
