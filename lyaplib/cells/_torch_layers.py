"""Reading the per-layer weights of torch.nn recurrent modules (RNN, LSTM, GRU and their cells)."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn


class LayerWeights(NamedTuple):
    """One layer's parameters in torch's layout (gates stacked along dim 0)."""

    w_ih: Tensor        # (G N, I_l)
    w_hh: Tensor        # (G N, N)
    b_ih: Tensor | None  # (G N,)
    b_hh: Tensor | None  # (G N,)


def check_module(module: nn.Module, kinds: tuple[type, ...], name: str) -> None:
    """Refuse what the analytic tangents do not cover, with a clear message."""
    if not isinstance(module, kinds):
        allowed = " or ".join(f"torch.nn.{k.__name__}" for k in kinds)
        raise TypeError(f"{name} wraps {allowed}, got {type(module).__name__}")
    kind = next(k for k in kinds if isinstance(module, k))
    if type(module).forward is not kind.forward:
        # the analytic tangent follows torch's equations, and would ignore the new forward
        raise TypeError(f"{name}: {type(module).__name__} overrides torch.nn.{kind.__name__}"
                        ".forward, which the analytic tangent would ignore; wrap one step of "
                        "it in lyaplib.AutogradCell(step, dim) instead")
    if getattr(module, "bidirectional", False):
        raise ValueError(f"{name}: bidirectional modules are not causal dynamical systems; "
                         "analyse each direction as its own module")
    if getattr(module, "proj_size", 0):
        raise ValueError(f"{name}: LSTMs with proj_size > 0 have no analytic tangent here; "
                         "lyaplib.AutogradCell handles them: wrap one step, state [h, c] -> "
                         "module(x[:, None], (h[None], c[None])), with dim = proj_size + "
                         "hidden_size per layer")


def layer_weights(module: nn.Module) -> list[LayerWeights]:
    """Per-layer weights of a stacked module (``weight_ih_l{k}``) or a cell (``weight_ih``)."""
    if hasattr(module, "weight_ih"):  # RNNCell / LSTMCell / GRUCell
        return [LayerWeights(module.weight_ih, module.weight_hh,
                             getattr(module, "bias_ih", None), getattr(module, "bias_hh", None))]
    return [
        LayerWeights(getattr(module, f"weight_ih_l{k}"), getattr(module, f"weight_hh_l{k}"),
                     getattr(module, f"bias_ih_l{k}", None), getattr(module, f"bias_hh_l{k}", None))
        for k in range(module.num_layers)
    ]


def combined_bias(layer: LayerWeights) -> Tensor | None:
    """b_ih + b_hh (torch adds both), or None for a module built with bias=False."""
    if layer.b_ih is None:
        return None
    return layer.b_ih + layer.b_hh


def num_layers(module: nn.Module) -> int:
    return getattr(module, "num_layers", 1)
