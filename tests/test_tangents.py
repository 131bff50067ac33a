"""Every cell of lyaplib: its analytic tangent against autograd (float64, 1e-10), through
the public ``lyaplib.testing.check_tangent``; and that the check catches wrong tangents."""

import inspect

import pytest
import torch

from lyaplib import AutogradCell, cells
from lyaplib.cells.base import CellModule
from lyaplib.testing import CELLS, check_tangent


@pytest.mark.parametrize("k", [None, 2])
@pytest.mark.parametrize("name", CELLS)
def test_tangent_matches_autograd(name, k):
    torch.manual_seed(sum(map(ord, name)))
    check_tangent(CELLS[name](), k=k)


def test_every_cell_class_is_registered_for_the_tests():
    classes = {c for _, c in inspect.getmembers(cells, inspect.isclass)
               if issubclass(c, CellModule) and c not in (CellModule, cells.RecurrentModule,
                                                          AutogradCell)}
    torch.manual_seed(0)
    covered = {type(make()) for make in CELLS.values()}
    assert classes - covered == set()


class Transposed(CellModule):
    """h <- tanh(W h): the tangent applies W^T instead of W, the published mistake."""

    def __init__(self, W):
        super().__init__()
        self.register_buffer("W", W)
        self.dim = W.shape[0]

    def step(self, state, x):
        return torch.tanh(state @ self.W.T)

    def tangent(self, state, x, Q):
        a = state @ self.W.T
        return torch.tanh(a), (1 - torch.tanh(a) ** 2).unsqueeze(-1) * (self.W.T @ Q)


def test_a_transposed_jacobian_is_caught_and_the_columns_named():
    W = torch.randn(5, 5, generator=torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError, match=r"Transposed.tangent differs from autograd's J Q "
                                             r"\(rtol=1e-10, atol=1e-12\) in 3 of 3 columns: "
                                             r"0: max \|diff\| .*e"):
        check_tangent(Transposed(W), k=3)
    check_tangent(Transposed(W + W.T))  # a symmetric W hides the mistake: nothing raised


def test_one_wrong_column_is_named_alone():
    class OneColumnOff(Transposed):
        def tangent(self, state, x, Q):
            nxt, JQ = super().tangent(state, x, Q)
            return nxt, torch.cat([JQ[..., :2], 1.001 * JQ[..., 2:3], JQ[..., 3:]], -1)

    W = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))
    with pytest.raises(AssertionError, match=r"in 1 of 4 columns: 2: max \|diff\|"):
        check_tangent(OneColumnOff(W + W.T))


def test_shapes_and_next_state_are_checked():
    class WrongState(Transposed):
        def tangent(self, state, x, Q):
            return 2 * state, super().tangent(state, x, Q)[1]

    class Narrow(Transposed):
        def tangent(self, state, x, Q):
            nxt, JQ = super().tangent(state, x, Q)
            return nxt, JQ[..., :1]

    S = torch.eye(3) + 0.1
    with pytest.raises(AssertionError, match="next state is not step's"):
        check_tangent(WrongState(S))
    with pytest.raises(AssertionError, match=r"expected \(3, 3\) \(the state\) and \(3, 3, 3\)"):
        check_tangent(Narrow(S))
    with pytest.raises(ValueError, match="inputs must be 'auto'"):
        check_tangent(Transposed(S), "none")
