"""Elementwise activations and their derivatives, computed from the pre-activation.

Derivatives are evaluated from the pre-activation ``a`` in a form that stays
positive where the activation saturates: ``sech^2 a = 4 s(2a) s(-2a)`` (s the
sigmoid) is about 1e-22 at a = 25 in float32, whereas ``1 - tanh(a)^2`` is exactly
0 there (and so would be a whole row of the Jacobian).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Activation = Callable[[Tensor], Tensor]


def tanh_prime(a: Tensor) -> Tensor:
    """d tanh / da = sech^2 a = 4 s(2a) s(-2a), without cancellation for large ``|a|``."""
    return 4 * sigmoid_prime(2 * a)


def sigmoid_prime(a: Tensor) -> Tensor:
    """d sigmoid / da = s(a) (1 - s(a)) = s(a) s(-a), without cancellation for large ``|a|``."""
    return torch.sigmoid(a) * torch.sigmoid(-a)


class _SaturationSafe(torch.autograd.Function):
    """An activation whose autograd derivative (reverse and forward mode, vmappable) is the
    saturation-safe one above, not the one torch derives from its output."""

    generate_vmap_rule = True
    function: Callable[[Tensor], Tensor]
    derivative: Callable[[Tensor], Tensor]

    @classmethod
    def forward(cls, a: Tensor) -> Tensor:
        return cls.function(a)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @classmethod
    def backward(cls, ctx, grad: Tensor) -> Tensor:
        return grad * cls.derivative(ctx.saved_tensors[0])

    @classmethod
    def jvp(cls, ctx, tangent: Tensor) -> Tensor:
        return tangent * cls.derivative(ctx.saved_tensors[0])


class _Tanh(_SaturationSafe):
    function, derivative = staticmethod(torch.tanh), staticmethod(tanh_prime)


class _Sigmoid(_SaturationSafe):
    function, derivative = staticmethod(torch.sigmoid), staticmethod(sigmoid_prime)


def tanh(a: Tensor) -> Tensor:
    """``torch.tanh`` with the saturation-safe derivative under autograd and ``torch.func``.

    torch differentiates tanh as 1 - tanh(a)^2, exactly 0 once tanh(a) rounds to +-1
    (``|a| > 9`` in float32, ``> 19`` in float64): a step written with torch.tanh gives
    :class:`~lyaplib.cells.base.AutogradCell` whole zero rows of the Jacobian there.
    """
    return _Tanh.apply(a)


def sigmoid(a: Tensor) -> Tensor:
    """``torch.sigmoid`` with the saturation-safe derivative s(a) s(-a) (see :func:`tanh`)."""
    return _Sigmoid.apply(a)


def relu_prime(a: Tensor) -> Tensor:
    """d relu / da: 1 where a > 0, else 0 (the convention of torch.relu's gradient)."""
    return (a > 0).to(a.dtype)


def identity_prime(a: Tensor) -> Tensor:
    """The linear activation's derivative: ones, a's shape."""
    return torch.ones_like(a)


ACTIVATIONS: dict[str, tuple[Activation, Activation]] = {
    "tanh": (torch.tanh, tanh_prime),
    "sigmoid": (torch.sigmoid, sigmoid_prime),
    "relu": (torch.relu, relu_prime),
    "linear": (lambda a: a, identity_prime),
}


def resolve(activation: str | Activation) -> tuple[Activation, Activation]:
    """``(phi, phi')`` for a name in ACTIVATIONS or for any elementwise callable.

    For a callable, phi' is its forward-mode derivative along a tensor of ones,
    exact for elementwise functions.
    """
    if isinstance(activation, str):
        try:
            return ACTIVATIONS[activation]
        except KeyError:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)} or a callable, "
                             f"got {activation!r}") from None
    if not callable(activation):
        raise ValueError(f"activation must be a name or a callable, got {activation!r}")

    def derivative(a: Tensor) -> Tensor:
        return torch.func.jvp(activation, (a,), (torch.ones_like(a),))[1]

    return activation, derivative
