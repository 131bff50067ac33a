"""Checking what ``lyapunov_spectrum`` is given, before and on its first step: every bad
argument gets a :class:`LyapunovError` that names it, never a torch traceback or a silent
replacement."""

from __future__ import annotations

import copy
import math
import numbers
import warnings

import torch
from torch import Tensor, nn

from .cells.base import Cell
from .orthonormalize import random_basis

_DTYPES = (torch.float32, torch.float64)


class LyapunovError(ValueError):
    """The computation cannot go on: bad arguments or a non-finite state or tangent."""


class LyapunovWarning(UserWarning):
    """The estimate is computed but some of it cannot be trusted (precision limits)."""


def positive_int(value, name: str) -> int:
    return int_at_least(value, 1, name)


def int_at_least(value, low: int, name: str, *, optional: bool = False,
                 error: type[Exception] = LyapunovError) -> int | None:
    """``value`` as an int >= ``low`` (numpy's ints too, never a bool or a float), or
    None where ``optional``; else ``error`` naming ``name``."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise error(f"{name} must be an int >= {low}{' or None' * optional}, got {value!r}")
    return int(value)


def real(value, name: str, *, above: float | None = None, low: float | None = None,
         optional: bool = False, error: type[Exception] = ValueError) -> float | None:
    """``value`` as a finite float (never a bool), > ``above`` and >= ``low`` where given,
    or None where ``optional``; else ``error`` naming ``name``."""
    if optional and value is None:
        return None
    bound = "" if above is None else f" > {above}"
    bound += "" if low is None else f" >= {low}"
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if not ok or (above is not None and not value > above) or (low is not None and value < low):
        raise error(f"{name} must be a finite number{bound}{' or None' * optional}, "
                    f"got {value!r}")
    return float(value)


def dtype_and_device(cell, inputs, h0, dtype, device=None) -> tuple[torch.dtype, torch.device]:
    """Each explicit if given, else the cell's parameters', else h0's, else inputs', else the
    default dtype and the CPU."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise LyapunovError(f"dtype must be a floating dtype, got {dtype}")
    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise LyapunovError(f"device must be a torch.device or a name such as 'cuda', "
                                f"got {device!r}") from e
    sources = []
    if isinstance(cell, nn.Module):
        sources += [t for t in (*cell.parameters(), *cell.buffers()) if t.is_floating_point()]
    sources += [t for t in (h0, inputs) if isinstance(t, Tensor) and t.is_floating_point()]
    first = sources[0] if sources else None
    if dtype is None and first is not None and first.dtype not in _DTYPES:
        raise LyapunovError(f"dtype: the cell's parameters (or h0, inputs) are {first.dtype}, "
                            "which the QR step cannot run in and which resolves only about 3 "
                            "digits; pass dtype=torch.float32 or torch.float64 (the engine "
                            "then analyses a copy of the cell in that dtype)")
    dtype = dtype or (first.dtype if first is not None else torch.get_default_dtype())
    if dtype not in _DTYPES:
        raise LyapunovError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if device is None:
        device = first.device if first is not None else torch.device("cpu")
    return dtype, device


def cast(cell: Cell, dtype: torch.dtype, device: torch.device) -> Cell:
    """A copy of the cell in ``dtype`` on ``device`` if it is not already; never mutates it."""
    if not isinstance(cell, nn.Module):
        return cell
    tensors = [t for t in (*cell.parameters(), *cell.buffers()) if t.is_floating_point()]
    if all(t.dtype == dtype and t.device == device for t in tensors):
        return cell
    return copy.deepcopy(cell).to(device=device, dtype=dtype)


def check_inputs(inputs, h0, dtype, device) -> tuple[Tensor | None, int, int]:
    if isinstance(inputs, bool):
        raise LyapunovError(f"inputs must be a (B, T, I) tensor or an int T, got {inputs!r}")
    if isinstance(inputs, int):
        T = positive_int(inputs, "inputs (number of steps T)")
        B = h0.shape[0] if isinstance(h0, Tensor) and h0.ndim == 2 else 1
        return None, T, B
    if not isinstance(inputs, Tensor):
        raise LyapunovError(f"inputs must be a (B, T, I) tensor or an int T, got {type(inputs)}")
    if inputs.ndim != 3:
        raise LyapunovError(
            f"inputs must have shape (B, T, I), got {tuple(inputs.shape)}"
            + (" (add a batch axis with inputs[None])" if inputs.ndim == 2 else ""))
    B, T, _ = inputs.shape
    if B < 1 or T < 1:
        raise LyapunovError(f"inputs must have B >= 1 and T >= 1, got shape {tuple(inputs.shape)}")
    inputs = inputs.to(device=device, dtype=dtype)
    bad = ~torch.isfinite(inputs)
    if bool(bad.any()):  # one host sync, before the loop
        b, t, i = (int(j) for j in bad.nonzero()[0])
        raise LyapunovError(f"inputs must be finite; got {float(inputs[b, t, i])} at "
                            f"sequence {b}, step {t}, input {i} (in {dtype})")
    return inputs, T, B


def check_h0(h0, cell, B, state_dim, dtype, device) -> Tensor:
    if h0 is None:
        h0 = cell.initial_state(B)
    if not isinstance(h0, Tensor):
        raise LyapunovError(f"h0 must be a tensor of shape (B, S) or (S,), got {type(h0)}")
    if h0.ndim == 1:
        h0 = h0.expand(B, -1)
    if h0.shape != (B, state_dim):
        raise LyapunovError(f"h0 must have shape (B, S) = {(B, state_dim)} or (S,), "
                            f"got {tuple(h0.shape)}")
    return h0.to(device=device, dtype=dtype)


def check_Q0(Q0, k, B, dim, dtype, device) -> Tensor:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= dim):
        raise LyapunovError(f"k must be an int with 1 <= k <= D = {dim}, got {k!r}")
    if Q0 is None:
        basis = random_basis(dim, dim if k is None else k, dtype=dtype, device=device)
        return basis.expand(B, *basis.shape).clone()
    if not isinstance(Q0, Tensor) or Q0.ndim not in (2, 3):
        raise LyapunovError("Q0 must be a tensor of shape (D, k) or (B, D, k)")
    if Q0.ndim == 2:
        Q0 = Q0.expand(B, *Q0.shape)
    if Q0.shape[:2] != (B, dim) or (k is not None and Q0.shape[2] != k):
        raise LyapunovError(f"Q0 must have shape (B, D, k) = {(B, dim, k or 'k')} or (D, k), "
                            f"got {tuple(Q0.shape)}")
    if not 1 <= Q0.shape[2] <= dim:
        raise LyapunovError(f"Q0 must have 1 <= k <= D = {dim} columns, got {Q0.shape[2]}")
    return Q0.to(device=device, dtype=dtype).clone()


def check_cell(cell) -> None:
    if callable(getattr(cell, "tangent", None)):
        return
    hint = "wrap a step function in lyaplib.AutogradCell(step, dim) to get it by autograd"
    if isinstance(cell, (nn.RNNBase, nn.RNNCellBase)):
        hint = (f"wrap torch.nn.{type(cell).__name__} in the matching lyaplib.cells class "
                "(cells.LSTM, cells.GRU or cells.RNN)")
    raise LyapunovError(f"cell must follow the Cell protocol (dim, initial_state, step, "
                        f"tangent); {type(cell).__name__} has no tangent method: {hint}")


def check_real_with_data(cell, inputs, h0, Q0) -> None:
    """Refuse complex tensors (their imaginary part would be dropped) and meta tensors."""
    named = [("inputs", inputs), ("h0", h0), ("Q0", Q0)]
    if isinstance(cell, nn.Module):
        named += [(f"cell.{n}", t) for n, t in (*cell.named_parameters(), *cell.named_buffers())]
    for name, t in named:
        if not isinstance(t, Tensor):
            continue
        if t.is_complex():
            raise LyapunovError(f"{name} is complex ({t.dtype}): the engine analyses real maps; "
                                "write a complex state as its real and imaginary parts")
        if t.device.type == "meta":
            raise LyapunovError(f"{name} is on the meta device, which holds shapes but no "
                                "values: load the weights and move it to the cpu or cuda")


def warn_if_training_with_dropout(cell) -> None:
    if not isinstance(cell, nn.Module):
        return
    for name, module in cell.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            p = module.p
        elif isinstance(module, nn.RNNBase) and module.num_layers > 1:
            p = module.dropout  # applied between layers in training mode only
        else:
            continue
        if module.training and p > 0:
            warnings.warn(
                f"{'cell.' + name if name else 'the cell'} ({type(module).__name__}) is in "
                f"training mode with dropout p = {p}: lyaplib's analytic cells follow the "
                "network without dropout (as in eval mode), and a step that applies dropout "
                "makes the map random. Call .eval() on the model first.",
                LyapunovWarning, stacklevel=4)
            return


def check_input_width(cell, xs: Tensor | None) -> None:
    width = getattr(cell, "input_size", None)
    if width is None:
        width = getattr(getattr(cell, "module", None), "input_size", None)
    if xs is not None and isinstance(width, int) and xs.shape[-1] != width:
        raise LyapunovError(f"inputs must have I = {width} features (the cell's input_size), "
                            f"got shape {tuple(xs.shape)}")


def first_tangent(cell, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
    """``cell.tangent`` on the first step, with every output checked and named."""
    (B, S), (_, D, k) = state.shape, Q.shape
    name = f"{type(cell).__name__}.tangent"
    where = (f"on the first step (state {(B, S)}, x "
             f"{None if x is None else tuple(x.shape)}, Q {(B, D, k)})")
    try:
        out = cell.tangent(state, x, Q)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise LyapunovError(f"{name} failed {where}: {exc}") from exc
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(o, Tensor) for o in out)):
        raise LyapunovError(f"{name} must return (next state, J @ Q), two tensors; got "
                            f"{type(out).__name__} {where}")
    nxt, JQ = out
    if nxt.shape != (B, S):
        raise LyapunovError(f"{name} returned a next state of shape {tuple(nxt.shape)} {where}; "
                            f"expected (B, S) = {(B, S)} (check its step)")
    if JQ.shape != (B, D, k):
        hint = "; it looks transposed: return J @ Q" if JQ.shape == (B, k, D) else ""
        raise LyapunovError(f"{name} returned J @ Q of shape {tuple(JQ.shape)} {where}; "
                            f"expected (B, D, k) = {(B, D, k)}{hint}")
    for what, got, want in (("next state", nxt, state), ("J @ Q", JQ, Q)):
        if got.dtype != want.dtype or got.device != want.device:
            raise LyapunovError(f"{name} returned its {what} as {got.dtype} on {got.device}, "
                                f"but the engine runs in {want.dtype} on {want.device}: the "
                                "cell must compute in the dtype and device of its arguments")
    return nxt, JQ


def check_basis(Q0: Tensor, r: Tensor) -> None:
    """Q0 must be finite with k independent columns (one host sync, before the loop)."""
    if not bool(torch.isfinite(Q0).all()):
        raise LyapunovError("Q0 must be finite, got NaN or infinite entries")
    tiny = r <= Q0.shape[-1] * torch.finfo(r.dtype).eps * r.amax(-1, keepdim=True)
    if bool(tiny.any()):
        b, j = (int(i) for i in tiny.nonzero()[0])
        raise LyapunovError(f"Q0 must have k linearly independent columns; column {j} (of "
                            f"sequence {b}) is zero or a combination of the others")
