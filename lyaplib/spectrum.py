"""The QR (Benettin) algorithm for Lyapunov spectra of driven or autonomous cells."""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._arguments import (
    LyapunovError,
    LyapunovWarning,
    cast,
    check_basis,
    check_cell,
    check_h0,
    check_input_width,
    check_inputs,
    check_Q0,
    check_real_with_data,
    dtype_and_device,
    first_tangent,
    int_at_least,
    positive_int,
    warn_if_training_with_dropout,
)
from .cells.base import Cell
from .orthonormalize import get_method
from .result import LyapunovResult as LyapunovResult  # public here too, as before

_CHECK_EVERY = 256  # steps between host-side checks for non-finite values


def lyapunov_spectrum(
    cell: Cell,
    inputs: Tensor | int,
    *,
    k: int | None = None,
    warmup: int = 0,
    ortho_every: int = 1,
    h0: Tensor | None = None,
    Q0: Tensor | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    method: str = "householder",
    keep_trace: bool = False,
    blocks: int = 64,
    progress: bool = False,
    differentiable: bool = False,
    grad_window: int | None = None,
) -> LyapunovResult:
    """Estimate the k largest Lyapunov exponents of ``cell`` along its trajectories.

    For each of B sequences: h <- f(h, x_t), Q <- J_t Q, and every ``ortho_every``
    steps (Q, R) <- qr(Q), accumulating log R_ii (in float64). The estimate is
    the accumulated sum divided by the number of accumulated steps.

    Args:
        cell: a :class:`~lyaplib.cells.base.Cell`.
        inputs: (B, T, I) input sequences, or an int T to run autonomously
            (inputs ``None``; the batch size then comes from ``h0``, else 1).
        k: number of exponents (1 <= k <= D); defaults to ``Q0``'s width or D.
        warmup: the first ``warmup`` of the T steps (and their inputs) move the
            state and Q onto the attractor, re-orthonormalising, without
            accumulating. They are not fed again: T - warmup steps accumulate.
        ortho_every: steps between orthonormalisations (T_ON). Larger is faster
            but lets Q's columns collapse when k (lambda_1 - lambda_k) ortho_every
            approaches ln(1/eps) of the dtype.
        h0: initial state (B, S) or (S,), S = ``cell.state_dim`` (= D unless the cell
            carries more state than it has exponents); default ``cell.initial_state(B)``.
        Q0: initial basis (D, k) or (B, D, k), orthonormalised first; default
            :func:`~lyaplib.random_basis` (a fixed, seeded random basis on
            the cell's device and dtype, the same for every sequence and run). Not the
            identity: its columns stay inside any coordinate subspace that the map keeps
            invariant (diagonal and triangular maps, networks side by side), where the QR
            would measure that subspace's exponents instead of the largest.
        dtype: dtype of the state and Q, torch.float32 or torch.float64 (for reference
            runs); default the cell's parameter dtype. log R_ii always sums in float64.
        device: where the state and Q live, e.g. "cuda" for a map without parameters
            driven by an int T; default the device of the cell's parameters, else of
            ``h0``, else of ``inputs``, else the CPU. A cell elsewhere is analysed as a copy
            moved there (as for ``dtype``).
        method: orthonormalisation method, see ``lyaplib.orthonormalize.METHODS``.
        keep_trace: record the running estimate after each orthonormalisation.
        blocks: keep the sums of log R_ii over between ``blocks`` and 2 ``blocks``
            consecutive blocks of steps (float64, (n, B, k)), for the within-trajectory
            error bars and the convergence diagnostic; each block starts as one
            orthonormalisation interval and doubles in length whenever 2 ``blocks`` are
            full, so memory stays O(blocks B k) for any T. 0 keeps none.
        progress: show a tqdm progress bar over time steps.
        differentiable: return exponents that carry gradients with respect to the cell's
            parameters (and ``h0``, when it requires grad and ``warmup`` is 0), through the
            analytic tangents and the QR factorisations (``method="householder"``). The
            default runs without an autograd graph. The graph holds every step's state and
            Q: memory O(T D k) for T differentiated steps. The warm-up is never
            differentiated (its state and Q enter detached). The cell must already be in
            the engine's dtype and device, since a cast would copy it.
        grad_window: with ``differentiable``, only the last ``grad_window`` steps carry
            gradients (memory O(grad_window D k)); the steps before them still count in
            the exponents' values. Default: all T - warmup steps.

    Returns:
        A :class:`LyapunovResult`: each sequence's exponents in descending order.

    Raises:
        LyapunovError: on a bad argument (naming it), when the cell's first step returns
            the wrong shapes or dtype (naming the cell), or when a state or tangent
            becomes non-finite or singular (naming the step and sequence).

    Warns:
        LyapunovWarning: where the lowest exponents reach the dtype's precision floor,
            and for a module in training mode with dropout.
    """
    check_cell(cell)
    dim = positive_int(getattr(cell, "dim", None), "cell.dim")
    try:
        ortho = get_method(method)
    except ValueError as e:
        raise LyapunovError(str(e)) from None
    warmup = int_at_least(warmup, 0, "warmup")
    ortho_every = int_at_least(ortho_every, 1, "ortho_every")
    check_real_with_data(cell, inputs, h0, Q0)
    dtype, device = dtype_and_device(cell, inputs, h0, dtype, device)
    warn_if_training_with_dropout(cell)
    if differentiable and (torch.is_inference_mode_enabled() or not torch.is_grad_enabled()):
        raise LyapunovError(
            "differentiable=True inside torch.no_grad() or torch.inference_mode(): no graph "
            "can be recorded there, so no gradient would reach the cell. Call it outside")
    if differentiable and cast(cell, dtype, device) is not cell:
        raise LyapunovError(
            f"differentiable=True needs the cell's parameters in the engine's dtype and device "
            f"({dtype} on {device}): a cast would analyse a copy, and no gradient would reach "
            f"the cell. Move the cell first (cell.to({dtype}))")
    cell = cast(cell, dtype, device)

    xs, T, B = check_inputs(inputs, h0, dtype, device)
    check_input_width(cell, xs)
    if warmup >= T:
        raise LyapunovError(f"warmup must be smaller than the number of steps T={T}, got {warmup}")
    if grad_window is not None:
        grad_window = int_at_least(grad_window, 1, "grad_window")
        if not differentiable:
            raise LyapunovError("grad_window applies to differentiable=True only")
    first_tracked = T if not differentiable else max(warmup, T - (grad_window or T))
    state = check_h0(h0, cell, B, getattr(cell, "state_dim", dim), dtype, device)
    Q = check_Q0(Q0, k, B, dim, dtype, device)
    k = Q.shape[-1]
    Q, r0 = ortho(Q)
    if Q0 is not None:
        check_basis(Q0, r0)

    log_r = torch.zeros(B, k, dtype=torch.float64, device=device)
    health = _Health(k, ortho_every)
    record = _Record(keep_trace, int_at_least(blocks, 0, "blocks"), ortho_every)
    steps = tqdm(range(T), desc="Lyapunov spectrum", unit="step") if progress else range(T)
    # without differentiable, no autograd graph over the T steps: the tangent map is
    # propagated explicitly
    with nullcontext() if differentiable else torch.no_grad():
        for t in steps:
            x = None if xs is None else xs[:, t]
            if t == first_tracked and t > 0:  # the graph starts here
                state, Q = state.detach(), Q.detach()
            with torch.set_grad_enabled(t >= first_tracked) if differentiable else nullcontext():
                state, Q, log_r = _step(cell, state, x, Q, log_r, t, warmup, T, ortho_every,
                                        ortho, health, record)
            if (t + 1) % _CHECK_EVERY == 0:
                health.check()
    health.check()

    # each sequence's exponents in descending order; the trace and blocks follow them
    order = log_r.detach().argsort(dim=-1, descending=True, stable=True)
    per_sequence = log_r.gather(-1, order) / (T - warmup)
    _warn_if_imprecise(per_sequence.detach().mean(0), dtype, ortho_every)
    return LyapunovResult(per_sequence=per_sequence, steps=T - warmup, dim=dim,
                          state=state.detach(), Q=Q.detach(), **record.fields(order))


class _Record:
    """What the engine keeps besides the sums: the running estimate after every
    orthonormalisation (``keep_trace``), and the cumulative sums at block ends, thinned to
    every other one (the blocks doubling) whenever 2 ``blocks`` have accumulated. Only
    references are stored (log_r is never updated in place): no copies, no host syncs."""

    def __init__(self, keep_trace: bool, blocks: int, ortho_every: int):
        self.keep_trace, self.blocks, self.block = keep_trace, blocks, ortho_every
        self.trace, self.trace_steps = [], []
        self.ends, self.end_steps = [], []

    def __call__(self, log_r: Tensor, steps: int, final: bool) -> None:
        """Called after each accumulating orthonormalisation, ``steps`` steps in."""
        if self.keep_trace:
            self.trace.append(log_r / steps)
            self.trace_steps.append(steps)
        if not self.blocks:
            return
        if steps % self.block == 0:
            self.ends.append(log_r.detach())
            self.end_steps.append(steps)
            if len(self.ends) == 2 * self.blocks:  # ends at 2, 4, ... blocks stay
                self.ends, self.end_steps = self.ends[1::2], self.end_steps[1::2]
                self.block *= 2
        elif final:  # a shorter last block: every step counts
            self.ends.append(log_r.detach())
            self.end_steps.append(steps)

    def fields(self, order: Tensor) -> dict:
        """The result's fields, columns permuted by ``order`` (B, k)."""
        kept = {}
        if self.keep_trace:
            trace = torch.stack(self.trace).detach()
            kept = {"trace_per_sequence": trace.gather(-1, order.expand_as(trace)),
                    "trace_steps": torch.tensor(self.trace_steps)}
        if self.ends:
            ends = torch.stack(self.ends)
            ends = ends.gather(-1, order.expand_as(ends))
            kept["block_sums"] = torch.diff(ends, dim=0, prepend=torch.zeros_like(ends[:1]))
            kept["block_steps"] = torch.tensor(self.end_steps)
        return kept


def _step(cell, state, x, Q, log_r, t, warmup, T, ortho_every, ortho, health, record):
    """One step of the QR algorithm: advance the state and Q, orthonormalise when due, and
    accumulate log R_ii after the warm-up. Returns (state, Q, log_r)."""
    if t == 0:  # the cell's outputs are checked once, naming the culprit
        state, Q = first_tangent(cell, state, x, Q)
    else:
        state, Q = cell.tangent(state, x, Q)
    health.state(t, state)
    start = 0 if t < warmup else warmup
    if (t + 1 - start) % ortho_every == 0 or t + 1 in (warmup, T):
        Q, r = ortho(Q)
        lr = r.to(torch.float64).log()
        health.tangent(t, lr)
        if t >= warmup:
            log_r = log_r + lr  # not in place: log_r may be part of the autograd graph
            record(log_r, t + 1 - warmup, final=t + 1 == T)
    return state, Q, log_r


def _warn_if_imprecise(exponents: Tensor, dtype: torch.dtype, ortho_every: int) -> None:
    """Warn where the spectrum's spread reaches what the dtype can resolve.

    Between orthonormalisations the columns of Q separate by exp(T_ON (lambda_1 - lambda_k));
    once that nears 1/eps the lower columns are lost in rounding, and their exponents are
    clamped near lambda_1 - ln(1/eps) / T_ON instead of measured.
    """
    if len(exponents) < 2 or not torch.isfinite(exponents).all():
        return
    resolvable = math.log(1 / torch.finfo(dtype).eps)  # ~15.9 in float32, ~36 in float64
    spread = float(exponents[0] - exponents[-1])
    if spread > 0.75 * resolvable:
        floor = float(exponents[0]) - resolvable
        clamped = int((exponents < exponents[0] - 0.75 * resolvable).sum())
        warnings.warn(
            f"{clamped} of the lowest exponents lie near the {dtype} precision floor "
            f"(lambda_1 - ln(1/eps) = {floor:.1f} per step): they are clamped, not measured. "
            f"Use dtype=torch.float64, or fewer exponents (k).", LyapunovWarning, stacklevel=4)
    elif ortho_every > 1 and ortho_every * spread > 0.5 * resolvable:
        warnings.warn(
            f"ortho_every={ortho_every} is too long for this spectrum: ortho_every x "
            f"(lambda_1 - lambda_k) = {ortho_every * spread:.1f} nats, against ln(1/eps) = "
            f"{resolvable:.1f} for {dtype}; the lowest exponents may be clamped. "
            f"Use ortho_every <= {max(1, int(0.25 * resolvable / spread))}.",
            LyapunovWarning, stacklevel=4)


# --- non-finite tracking without a host sync every step --------------------------------------

class _Health:
    """Finds the first step at which each sequence's state or tangent went bad, without a
    host sync and with two reductions a step: it keeps one number per sequence and step,
    sum(0 x state) (0, or NaN once the state holds an inf or a NaN; no overflow) and, at
    orthonormalisations, sum(log R_ii) (-inf where some R_ii = 0, +inf or NaN for a
    non-finite tangent), and ``check`` inspects them in one go (every _CHECK_EVERY steps)."""

    def __init__(self, k: int, ortho_every: int):
        self.k, self.ortho_every = k, ortho_every
        self.states: list[Tensor] = []
        self.state_steps: list[int] = []
        self.tangents: list[Tensor] = []
        self.tangent_steps: list[int] = []

    def state(self, t: int, state: Tensor) -> None:
        self.states.append((state.detach() * 0).sum(dim=-1))
        self.state_steps.append(t)

    def tangent(self, t: int, log_r: Tensor) -> None:
        self.tangents.append(log_r.detach().sum(dim=-1))
        self.tangent_steps.append(t)

    def check(self) -> None:
        """Raise for the earliest bad sequence, else forget the (all finite) steps seen."""
        for probes, steps, what in ((self.states, self.state_steps, "state"),
                                    (self.tangents, self.tangent_steps, "tangent")):
            if probes:
                _raise_if_bad(torch.stack(probes), steps, what, self.k, self.ortho_every)
        self.states, self.state_steps, self.tangents, self.tangent_steps = [], [], [], []


def _raise_if_bad(probes: Tensor, steps: list[int], what: str, k: int,
                  ortho_every: int) -> None:
    """probes (n, B) taken at ``steps``: raise if any is non-finite, naming the first."""
    bad = ~torch.isfinite(probes)
    hit = bad.any(dim=0)
    if not bool(hit.any()):
        return
    first = bad.to(torch.int8).argmax(dim=0)  # the first bad probe of each sequence
    at = torch.tensor(steps, device=probes.device)[first]
    seq = int(torch.where(hit, at, torch.iinfo(torch.long).max).argmin())
    index, step = int(first[seq]), int(at[seq])
    where = (f"at step {step} of sequence {seq} ({int(hit.sum())} of {hit.numel()} "
             "sequences affected)")
    if what == "state":
        raise LyapunovError(f"the state became non-finite {where}: the map diverges from "
                            "this initial state with these parameters and inputs (an "
                            "unbounded map, e.g. a linear or ReLU network with gain > 1)")
    if float(probes[index, seq]) == -math.inf:
        raise LyapunovError(
            f"the tangent became singular: it sent a direction exactly to zero (R_ii = 0) "
            f"{where}, so that direction's exponent is -inf. Three causes: units switched "
            "off (inactive ReLU units, zero rows of the weights), which is the dynamics: "
            f"ask for fewer exponents than k = {k}, since only as many are finite as "
            "directions the map keeps; units saturated so far that their derivative is 0 "
            "in this dtype (inputs or weights too large: scale the inputs, or use "
            "float64); or a trajectory through a critical point (f' = 0), which needs "
            "another initial state")
    hint = ""
    if ortho_every > 1:
        hint = (f"; with ortho_every = {ortho_every}, Q can grow past the dtype's range "
                "between orthonormalisations: try ortho_every = 1")
    raise LyapunovError(f"the tangent became non-finite (|R_ii| = inf or NaN) {where}, "
                        f"though the state stayed finite{hint}; else the cell's tangent "
                        "returns inf or NaN at this state (check it with "
                        "lyaplib.testing.check_tangent)")
