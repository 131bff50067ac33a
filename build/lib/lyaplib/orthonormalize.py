"""Re-orthonormalisation of a batch of tangent bases: one interface, several methods.

Every method returns ``(Q, r)`` for a batch ``M`` of shape (B, D, k): ``Q`` has
orthonormal columns spanning the same flag of subspaces as ``M`` and ``r`` is
the diagonal of ``R`` in ``M = Q R``, made non-negative by the sign convention
(columns of ``Q`` flipped so that ``R_ii >= 0``). ``log r`` is what the QR
algorithm accumulates.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Orthonormalizer = Callable[[Tensor], tuple[Tensor, Tensor]]


def householder(M: Tensor) -> tuple[Tensor, Tensor]:
    """Reduced Householder QR (LAPACK / cuSOLVER) with a non-negative diagonal.

    M: (..., D, k) with k <= D.  Returns Q (..., D, k) and r = diag(R) (..., k), r >= 0.
    """
    Q, R = torch.linalg.qr(M, mode="reduced")
    diag = torch.diagonal(R, dim1=-2, dim2=-1)
    # sign(0) is taken as +1 so that a collapsed direction keeps a unit column.
    sign = torch.where(diag < 0, -1.0, 1.0).to(diag.dtype)
    return Q * sign.unsqueeze(-2), diag.abs()


METHODS: dict[str, Orthonormalizer] = {"householder": householder}


def orthonormalize(M: Tensor, method: str = "householder") -> tuple[Tensor, Tensor]:
    """Orthonormalise the columns of ``M`` (..., D, k) with the named ``method``."""
    return get_method(method)(M)


def get_method(method: str) -> Orthonormalizer:
    """Look up an orthonormalisation method by name, with a clear error."""
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}") from None
