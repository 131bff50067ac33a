"""Re-orthonormalisation of a batch of tangent bases: one interface, several methods.

Every method returns ``(Q, r)`` for a batch ``M`` of shape (B, D, k): ``Q`` has
orthonormal columns spanning the same flag of subspaces as ``M`` and ``r`` is
the diagonal of ``R`` in ``M = Q R``, made non-negative by the sign convention
(columns of ``Q`` flipped so that ``R_ii >= 0``). ``log r`` is what the QR
algorithm accumulates.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
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


def cholesky_qr(M: Tensor) -> tuple[Tensor, Tensor]:
    """QR from Cholesky factors of the small k x k Gram matrix M^T M: GEMM speed for tall
    thin M, the accuracy of Householder. On the CPU :func:`cholesky_qr2` (a branch to its
    fallback costs nothing there); on a GPU :func:`shifted_cholesky_qr3`, which needs no
    branch and so never makes the host wait for the device.

    M: (..., D, k) with k <= D.  Returns Q (..., D, k) and r = diag(R) (..., k), r >= 0.
    """
    return cholesky_qr2(M) if M.device.type == "cpu" else shifted_cholesky_qr3(M)


def cholesky_qr2(M: Tensor) -> tuple[Tensor, Tensor]:
    """CholeskyQR2: twice Q = M R^-1 with R^T R = M^T M, falling back to Householder for
    the batch entries it cannot trust (a host synchronisation: meant for the CPU).

    On 2 CPU cores 1.5-1.9x faster than Householder at (10, 512, 32), 2-3x slower at
    (10, 64, 8) and (10, 512, 512), where the fixed cost of the small calls or the k x k
    work dominates. Its accuracy is that of Householder while cond(M) stays below
    ~eps^(-1/2) (about 3e3 in float32); entries above that (estimated from diag R), or
    whose Cholesky fails, are computed by :func:`householder`.
    """
    Q1, r1, info1 = _cholesky_pass(M)
    limit = 0.1 / torch.finfo(M.dtype).eps ** 0.5
    trusted = (info1 == 0) & (r1.amax(-1) < limit * r1.amin(-1)) & torch.isfinite(Q1).flatten(
        -2).all(-1)
    # where pass 1 is trusted, Q1 is orthonormal to ~eps cond(M)^2 < 0.01: pass 2 is safe
    Q, r2, info2 = _cholesky_pass(Q1)
    r = r1 * r2  # R = R2 R1, both upper triangular: the diagonals multiply
    bad = ~(trusted & (info2 == 0))
    if bad.any():
        Q, r = Q.clone(), r.clone()
        Q[bad], r[bad] = householder(M[bad])
    return Q, r


def shifted_cholesky_qr3(M: Tensor) -> tuple[Tensor, Tensor]:
    """Shifted CholeskyQR3 (Fukaya et al., 2020): three passes of Q = M R^-1, the first
    with R^T R = M^T M + s I, and no data-dependent branch (no host synchronisation).

    The shift s = 11 (D k + k (k + 1)) eps ||M||^2 makes the first pass succeed for any
    cond(M) below about 1/eps; it returns a Q of condition about eps^(-1/2) at worst, which
    the two plain passes orthonormalise to working precision. Where M has dependent
    columns (a tangent map that zeroes directions), r is 0 from the first dependent column
    on where a Cholesky factorisation breaks down, and otherwise at rounding level, as for
    Householder (which pivot rounds to which sign depends on the machine's kernels).
    About 2x the work of CholeskyQR2: on the CPU, where branches are free,
    :func:`cholesky_qr2` is the faster choice.
    """
    D, k = M.shape[-2:]
    # scaled to unit Frobenius norm first, so that no Gram matrix overflows or underflows
    norm = torch.linalg.matrix_norm(M).unsqueeze(-1)
    shift = 11 * (D * k + k * (k + 1)) * torch.finfo(M.dtype).eps
    Q, r1, info1 = _cholesky_pass(M / norm.unsqueeze(-1), shift)
    Q, r2, info2 = _cholesky_pass(Q)
    Q, r3, info3 = _cholesky_pass(Q)
    failed1, failed2, failed3 = (torch.where(i > 0, i - 1, k) for i in (info1, info2, info3))
    # R = R3 R2 R1 norm, all upper triangular: the diagonals multiply. After a failed pass
    # the next ones are meaningless; its leading columns (before the failure) still hold.
    r = norm * r1 * torch.where((failed1 < k).unsqueeze(-1), 1.0, r2 * torch.where(
        (failed2 < k).unsqueeze(-1), 1.0, r3))
    dependent_from = torch.where(failed1 < k, failed1, torch.where(failed2 < k, failed2, failed3))
    columns = torch.arange(k, device=M.device)
    r = torch.where(columns >= dependent_from.unsqueeze(-1), 0.0, r)
    return Q, torch.where(torch.isfinite(norm), r, torch.nan)  # a non-finite M stays visible


def _cholesky_pass(M: Tensor, shift: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """One CholeskyQR pass: (M R^-1, diag R, info), info > 0 where the Gram matrix's
    leading minor of that order is not positive definite (torch.linalg.cholesky_ex)."""
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    gram = M.mT @ M
    L, info = torch.linalg.cholesky_ex(gram + shift * eye if shift else gram)
    # R^-1 of the small k x k factor, then one GEMM: much faster than a (D, k) triangular solve
    R_inv = torch.linalg.solve_triangular(L.mT, eye, upper=True)
    return M @ R_inv, torch.diagonal(L, dim1=-2, dim2=-1), info


BASIS_SEED = 0  # the seed of the engine's default initial basis


def random_basis(dim: int, k: int, *, seed: int = BASIS_SEED, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> Tensor:
    """A (dim, k) random orthonormal basis: the engine's default ``Q0``.

    Why random: a basis of coordinate vectors (the identity's columns) stays inside any
    coordinate subspace the dynamics map into itself (a diagonal or triangular map, two
    networks side by side), and the QR algorithm then measures that subspace's exponents.
    A random basis lies in no such subspace (with probability 1).

    Why reproducible: the entries are drawn from NumPy's legacy ``RandomState(seed)``,
    whose stream NumPy keeps frozen across releases (NEP 19), in float64 on the host, and
    orthonormalised there by Householder QR; so every run, machine and device starts from
    the same basis, cast to ``dtype`` on ``device`` last. Column j is drawn before column
    j + 1 and does not depend on k, so the basis for k is the first k columns of the
    basis for any larger k (top-k runs are the leading part of a full run).
    """
    return _random_basis(dim, k, seed).to(device=device, dtype=dtype, copy=True)


@lru_cache(maxsize=16)
def _random_basis(dim: int, k: int, seed: int) -> Tensor:
    gauss = np.random.RandomState(seed).standard_normal((k, dim)).T  # column by column
    return householder(torch.from_numpy(np.ascontiguousarray(gauss)))[0]


METHODS: dict[str, Orthonormalizer] = {"householder": householder, "cholesky_qr": cholesky_qr}


def orthonormalize(M: Tensor, method: str = "householder") -> tuple[Tensor, Tensor]:
    """Orthonormalise the columns of ``M`` (..., D, k) with the named ``method``."""
    return get_method(method)(M)


def get_method(method: str) -> Orthonormalizer:
    """Look up an orthonormalisation method by name, with a clear error."""
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}") from None
