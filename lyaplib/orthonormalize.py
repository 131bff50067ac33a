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


def cholesky_qr2(M: Tensor) -> tuple[Tensor, Tensor]:
    """CholeskyQR2: twice Q = M R^-1 with R^T R = M^T M (a Cholesky factor of the Gram matrix).

    Made of GEMMs plus a k x k Cholesky and triangular inverse, so for tall thin M it
    runs at GEMM speed: on 2 CPU cores 1.1-1.8x faster than Householder at (10, 512, 32)
    (noisy machine), 2-3x slower at (10, 64, 8) and (10, 512, 512), where the fixed
    cost of the small calls or the k x k work dominates.
    Its accuracy is that of Householder while cond(M) stays below ~eps^(-1/2) (about
    3e3 in float32); batch entries above that (estimated from diag R), or whose
    Cholesky fails, fall back to :func:`householder`.

    M: (..., D, k) with k <= D.  Returns Q (..., D, k) and r = diag(R) (..., k), r >= 0.
    """
    Q1, r1, ok1 = _cholesky_pass(M, check=True)
    # where pass 1 is trusted, Q1 is orthonormal to ~eps cond(M)^2 < 0.01: pass 2 is safe
    Q, r2, ok2 = _cholesky_pass(Q1, check=False)
    r = r1 * r2  # R = R2 R1, both upper triangular: the diagonals multiply
    bad = ~(ok1 & ok2)
    if bad.any():
        Q, r = Q.clone(), r.clone()
        Q[bad], r[bad] = householder(M[bad])
    return Q, r


def _cholesky_pass(M: Tensor, check: bool) -> tuple[Tensor, Tensor, Tensor]:
    """One CholeskyQR pass: (Q, diag R, ok), ok False where the Cholesky failed or, with
    ``check``, where cond(M) is too large (or M not finite) for Q to be trusted."""
    L, info = torch.linalg.cholesky_ex(M.mT @ M)
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    # R^-1 of the small k x k factor, then one GEMM: much faster than a (D, k) triangular solve
    R_inv = torch.linalg.solve_triangular(L.mT, eye, upper=True)
    r = torch.diagonal(L, dim1=-2, dim2=-1)
    ok = info == 0
    if check:
        limit = 0.1 / torch.finfo(M.dtype).eps ** 0.5
        ok &= (r.amax(-1) < limit * r.amin(-1)) & torch.isfinite(R_inv).flatten(-2).all(-1)
    return M @ R_inv, r, ok


METHODS: dict[str, Orthonormalizer] = {"householder": householder, "cholesky_qr2": cholesky_qr2}


def orthonormalize(M: Tensor, method: str = "householder") -> tuple[Tensor, Tensor]:
    """Orthonormalise the columns of ``M`` (..., D, k) with the named ``method``."""
    return get_method(method)(M)


def get_method(method: str) -> Orthonormalizer:
    """Look up an orthonormalisation method by name, with a clear error."""
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}") from None
