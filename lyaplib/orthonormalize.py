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


def cholesky_qr3(M: Tensor) -> tuple[Tensor, Tensor]:
    """Shifted CholeskyQR3: three passes of Q = M R^-1 with R^T R = M^T M (+ s I in the
    first), the Cholesky factor of the small Gram matrix (Fukaya et al., 2020).

    Made of GEMMs plus k x k Cholesky factors and triangular inverses, so for tall thin M
    it runs at GEMM speed, and it has no data-dependent branch (no host synchronisation,
    which matters on a GPU). The shift s = 11 (D k + k (k + 1)) eps ||M||^2 makes the first
    pass succeed for any cond(M) below about 1/eps; it returns a Q of condition about
    eps^(-1/2) at worst, which the two plain passes orthonormalise to working precision.
    Where a Gram matrix is singular (M has dependent columns, e.g. a tangent map that
    zeroes directions), r is 0 from the first dependent column on, as for Householder.

    M: (..., D, k) with k <= D.  Returns Q (..., D, k) and r = diag(R) (..., k), r >= 0.
    """
    D, k = M.shape[-2:]
    # scaled to unit Frobenius norm first, so that no Gram matrix overflows or underflows
    norm = torch.linalg.matrix_norm(M).unsqueeze(-1)
    shift = 11 * (D * k + k * (k + 1)) * torch.finfo(M.dtype).eps
    Q, r1, failed1 = _cholesky_pass(M / norm.unsqueeze(-1), shift)
    Q, r2, failed2 = _cholesky_pass(Q)
    Q, r3, failed3 = _cholesky_pass(Q)
    # R = R3 R2 R1 norm, all upper triangular: the diagonals multiply. After a failed pass
    # the next ones are meaningless; its leading columns (before the failure) still hold.
    r = norm * r1 * torch.where((failed1 < k).unsqueeze(-1), 1.0, r2 * torch.where(
        (failed2 < k).unsqueeze(-1), 1.0, r3))
    dependent_from = torch.where(failed1 < k, failed1, torch.where(failed2 < k, failed2, failed3))
    columns = torch.arange(k, device=M.device)
    r = torch.where(columns >= dependent_from.unsqueeze(-1), 0.0, r)
    return Q, torch.where(torch.isfinite(norm), r, torch.nan)  # a non-finite M stays visible


def _cholesky_pass(M: Tensor, shift: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """One CholeskyQR pass: (M R^-1, diag R, the first column whose Gram minor is not
    positive definite (k where none))."""
    k = M.shape[-1]
    eye = torch.eye(k, dtype=M.dtype, device=M.device)
    gram = M.mT @ M
    L, info = torch.linalg.cholesky_ex(gram + shift * eye if shift else gram)
    # R^-1 of the small k x k factor, then one GEMM: much faster than a (D, k) triangular solve
    R_inv = torch.linalg.solve_triangular(L.mT, eye, upper=True)
    failed = torch.where(info > 0, info - 1, k)
    return M @ R_inv, torch.diagonal(L, dim1=-2, dim2=-1), failed


METHODS: dict[str, Orthonormalizer] = {"householder": householder, "cholesky_qr3": cholesky_qr3}


def orthonormalize(M: Tensor, method: str = "householder") -> tuple[Tensor, Tensor]:
    """Orthonormalise the columns of ``M`` (..., D, k) with the named ``method``."""
    return get_method(method)(M)


def get_method(method: str) -> Orthonormalizer:
    """Look up an orthonormalisation method by name, with a clear error."""
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}") from None
