"""FORCE learning (Sussillo & Abbott 2009) of :class:`~lyaplib.cells.ForceRNN` read-outs.

One recursive-least-squares loop, :func:`train_force_population`, trains P networks at
once; :func:`train_force` is the same loop for one network. The dynamics are the
networks' own ``ForceRNN.step`` and ``ForceRNN.readout`` (vmapped over a population), so
the map that is trained is the map whose exponents are computed.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from .cells import ForceRNN


def four_sines(steps: int, dt: float = 0.1, generator: torch.Generator | None = None,
               dtype: torch.dtype | None = None) -> Tensor:
    """The AeLLE target: f(t) = sum_k sin(f_k pi t / 60) / s_k, t = n dt, (steps,).

    Four terms with random integers s_k in 1..10 and f_k in 1..5.
    """
    s = torch.randint(1, 11, (4,), generator=generator)
    f = torch.randint(1, 6, (4,), generator=generator)
    t = torch.arange(steps, dtype=dtype or torch.get_default_dtype()) * dt
    return (torch.sin(f[:, None] * math.pi * t / 60) / s[:, None]).sum(0)


@dataclass
class ForceResult:
    """What FORCE training left: errors are ``mean |f - z|`` over the training steps (after
    the washout) and over the free run that follows.

    For one network (:func:`train_force`) the errors are floats, ``z_test`` and
    ``target_test`` (T_test,) and ``state`` (1, N); for a population
    (:func:`train_force_population`) the errors are (P,), ``z_test`` and ``target_test``
    (P, T_test) and ``state`` (P, N).
    """

    train_error: float | Tensor
    test_error: float | Tensor
    z_test: Tensor
    target_test: Tensor
    state: Tensor


@torch.no_grad()
def train_force_population(nets: Sequence[ForceRNN], targets: Tensor, train_steps: int, *,
                           every: int = 2, alpha: float = 1.0, washout: int = 0,
                           x0: Tensor | None = None, seed: int = 0,
                           progress: bool = True) -> ForceResult:
    """Learn every network's read-out ``w_o`` by recursive least squares, in place.

    ``targets`` (P, T): one target per network. Steps ``washout`` .. ``train_steps`` are
    learned: every ``every`` steps the error e = z - f updates P_i (P_0 = I / alpha) and
    w_o <- w_o - e P_i r, r = tanh(x). The rest of each target is the test: the network
    runs on its own output. ``x0`` (P, N): initial states (default 0.5 N(0, 1) drawn
    from ``seed``). The networks must share one size and dtype.
    """
    P, T = targets.shape if targets.ndim == 2 else (None, None)
    if P is None or len(nets) != P or not 0 <= washout < train_steps < T:
        raise ValueError(f"need one (T,) target per network and 0 <= washout < train_steps "
                         f"< T, got {len(nets)} networks, targets {tuple(targets.shape)}, "
                         f"washout={washout}, train_steps={train_steps}")
    first = nets[0]
    N, dtype, device = first.hidden_size, first.M.dtype, first.M.device
    targets = targets.to(dtype=dtype, device=device)
    if x0 is None:
        x0 = 0.5 * torch.randn(P, N, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    if P == 1:  # the network's own buffers, updated in place
        w_o = first.w_o.unsqueeze(0)
        step = _StepAndRead(first)
    else:
        _, buffers = stack_module_state(list(nets))
        w_o = buffers["w_o"]
        step = _vmapped(first, buffers)
    x = x0.reshape(P, N).to(targets)
    inverse = torch.eye(N, dtype=dtype, device=device).repeat(P, 1, 1) / alpha
    z_all = torch.empty_like(targets)
    for n in tqdm(range(T), desc="FORCE", disable=not progress, leave=False):
        x, z_all[:, n] = step(x)
        if washout <= n < train_steps and n % every == 0:
            r = ForceRNN.rates(x).unsqueeze(1)  # (P, 1, N)
            # P_i is symmetric, so P_i r = (r^T P_i)^T: the row form streams P_i once,
            # about 5x faster on CPU than the column mat-vec
            Pr = torch.bmm(r, inverse)
            root = (1 + (r * Pr).sum(-1, True)).sqrt()
            u = Pr / root
            # P_i <- P_i - u u^T in place: no (P, N, N) temporary, and bitwise symmetric
            inverse.baddbmm_(u.transpose(1, 2), u, alpha=-1)
            gain = (u / root).squeeze(1)  # P_i r / (1 + r P_i r)
            w_o -= (z_all[:, n] - targets[:, n]).unsqueeze(-1) * gain
    if P > 1:
        for net, w in zip(nets, w_o, strict=True):
            net.w_o.copy_(w)
    err = (z_all - targets).abs()
    return ForceResult(train_error=err[:, washout:train_steps].mean(1).cpu(),
                       test_error=err[:, train_steps:].mean(1).cpu(),
                       z_test=z_all[:, train_steps:].cpu(),
                       target_test=targets[:, train_steps:].cpu(), state=x)


def train_force(net: ForceRNN, target: Tensor, train_steps: int, *, every: int = 2,
                alpha: float = 1.0, washout: int = 0, x0: Tensor | None = None, seed: int = 0,
                progress: bool = False) -> ForceResult:
    """:func:`train_force_population` for one network and its target (T,); the errors are
    floats, ``z_test`` and ``target_test`` (T - train_steps,), ``state`` (1, N)."""
    if target.ndim != 1:
        raise ValueError(f"target must be (T,), got {tuple(target.shape)}")
    if x0 is None:
        x0 = 0.5 * torch.randn(net.hidden_size, generator=torch.Generator().manual_seed(seed),
                               dtype=net.M.dtype)
    result = train_force_population([net], target.unsqueeze(0), train_steps, every=every,
                                    alpha=alpha, washout=washout, x0=x0.reshape(1, -1),
                                    progress=progress)
    return ForceResult(train_error=float(result.train_error[0]),
                       test_error=float(result.test_error[0]), z_test=result.z_test[0],
                       target_test=result.target_test[0], state=result.state)


class _StepAndRead(nn.Module):
    """One autonomous step of a ForceRNN and its read-out: x (B, N) -> (x', z (B,))."""

    def __init__(self, net: ForceRNN):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.net.step(x, None)
        return x, self.net.readout(x)


def _vmapped(template: ForceRNN, buffers: dict[str, Tensor]):
    """x (P, N) -> (x' (P, N), z (P,)), network i with ``buffers[name][i]``. The buffers
    are read at every call, so the in-place updates of the stacked ``w_o`` take effect."""
    module = _StepAndRead(copy.deepcopy(template).to("meta"))  # weights: swapped in
    weights = {f"net.{name}": value for name, value in buffers.items()}

    def one(weights: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
        x, z = functional_call(module, weights, (x.unsqueeze(0),))
        return x[0], z[0]

    batched = vmap(one)
    return lambda x: batched(weights, x)


def train_and_measure_population(nets: Sequence[ForceRNN], target: Tensor, train_steps: int,
                                 *, k: int, sequences: int = 2, steps: int = 600,
                                 warmup: int = 200, seed: int = 0,
                                 progress: bool = True) -> list[dict]:
    """FORCE-train ``nets`` on one shared ``target`` (T,), then compute every trained,
    closed-loop network's top-``k`` spectrum from its final state (``sequences`` copies,
    ``steps`` steps after ``warmup``), all networks in one engine call.

    One row per network (JSON-ready): ``g``, ``train_error``, ``test_error``, ``spectrum``
    and ``run_id`` (its index).
    """
    from .population import Population  # population imports the cells, not FORCE

    trained = train_force_population(nets, target.expand(len(nets), -1).contiguous(),
                                     train_steps, seed=seed, progress=progress)
    pop = Population(nets, torch.zeros(len(nets)))
    h0 = trained.state.repeat_interleave(sequences, 0)
    spectra, _ = pop.spectra(lambda m: m, torch.zeros(sequences, steps, 0), h0=h0, k=k,
                             warmup=warmup)
    return [{"g": net.g, "train_error": float(trained.train_error[i]),
             "test_error": float(trained.test_error[i]), "spectrum": spectra[i].tolist(),
             "run_id": str(i)} for i, net in enumerate(nets)]


def __getattr__(name: str):
    if name == "train_and_measure":  # the old name, one release (it meant two things)
        warnings.warn("lyaplib.force.train_and_measure is deprecated: use "
                      "train_and_measure_population (lyaplib.sweeps.train_and_measure "
                      "trains one configuration of a task)", DeprecationWarning, stacklevel=2)
        return train_and_measure_population
    raise AttributeError(f"module 'lyaplib.force' has no attribute {name!r}")
