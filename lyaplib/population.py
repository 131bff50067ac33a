"""Train and measure many small networks at once.

A :class:`Population` holds P networks of one architecture with their
parameters stacked along a new leading dimension (``torch.func.
stack_module_state``) and runs them with ``torch.func.vmap``: one call
trains all P (each with its own initialisation and learning rate) and one
call of the QR engine computes all P spectra.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from .cells.base import CellModule
from .spectrum import LyapunovResult, lyapunov_spectrum


class Population(nn.Module):
    """P models of one architecture (same shapes), stacked and trained together.

    Args:
        models: the P networks; their parameters are copied, not shared.
        lrs: (P,) Adam learning rates, one per network.
        clip: per-network gradient-norm clipping (None: off).
    The ``forward`` of the base model is called with ``forward_kwargs`` (e.g.
    ``{"stepwise": True}`` so that recurrent layers are vmappable).
    """

    def __init__(self, models: Sequence[nn.Module], lrs: Sequence[float] | Tensor, *,
                 clip: float | None = 5.0, betas=(0.9, 0.999), eps: float = 1e-8,
                 forward_kwargs: dict | None = None):
        super().__init__()
        if len(models) < 1 or len(lrs) != len(models):
            raise ValueError(f"need one learning rate per model, got {len(lrs)} for "
                             f"{len(models)} models")
        params, buffers = stack_module_state(list(models))
        self.names = list(params)
        self.params = nn.ParameterList([nn.Parameter(params[n]) for n in self.names])
        # Everything with a value is a parameter or a buffer, so that .to(), .double() and
        # state_dict() carry it: the models' buffers, the Adam moments and (extra state)
        # the step count. The template is kept out of the module tree: its meta-device
        # weights are never used, only swapped for the stacked ones by functional_call.
        self.buffer_names = list(buffers)
        for j, name in enumerate(self.buffer_names):
            self.register_buffer(f"model_buffer_{j}", buffers[name])
        for j, p in enumerate(self.params):
            self.register_buffer(f"adam_m_{j}", torch.zeros_like(p))
            self.register_buffer(f"adam_v_{j}", torch.zeros_like(p))
        self.__dict__["base"] = copy.deepcopy(models[0]).to("meta")
        self.P = len(models)
        first = next(iter([*params.values(), *buffers.values()]))  # a FORCE net has buffers only
        self.register_buffer("lrs", torch.as_tensor(lrs, dtype=first.dtype, device=first.device))
        self.clip, self.betas, self.eps = clip, betas, eps
        self.forward_kwargs = forward_kwargs or {}
        self._steps = 0

    @property
    def buffer_values(self) -> dict[str, Tensor]:
        """The models' buffers, stacked: {name: (P, ...)}."""
        return {n: getattr(self, f"model_buffer_{j}") for j, n in enumerate(self.buffer_names)}

    @property
    def _moments(self) -> list[tuple[Tensor, Tensor]]:
        return [(getattr(self, f"adam_m_{j}"), getattr(self, f"adam_v_{j}"))
                for j in range(len(self.params))]

    def get_extra_state(self) -> dict:
        return {"adam_steps": self._steps}

    def set_extra_state(self, state: dict) -> None:
        self._steps = int(state["adam_steps"])

    def train(self, mode: bool = True) -> Population:
        self.base.train(mode)  # the template decides dropout and the like in forward
        return super().train(mode)

    def stacked(self) -> dict[str, Tensor]:
        return dict(zip(self.names, self.params, strict=True))

    def forward(self, x: Tensor, *args, per_network: bool = False) -> Tensor:
        """x (B, ...) shared by all networks, or with ``per_network`` (P, B, ...) one batch
        each -> outputs (P, B, ...)."""
        if per_network and x.shape[0] != self.P:
            raise ValueError(f"per_network inputs must be (P = {self.P}, B, ...), "
                             f"got {tuple(x.shape)}")
        in_dims = (0, 0, 0 if per_network else None)

        def one(params, buffers, inputs):
            out = functional_call(self.base, (params, buffers), (inputs, *args),
                                  self.forward_kwargs)
            return out[0] if isinstance(out, tuple) else out

        return vmap(one, in_dims=in_dims, randomness="different")(
            self.stacked(), self.buffer_values, x)

    def train_step(self, loss_fn, x: Tensor, y: Tensor, *, per_network: bool = False) -> Tensor:
        """One Adam step of every network on its own loss; returns the (P,) losses.

        ``loss_fn(outputs (B, ...), targets (B, ...))`` -> scalar, applied per network;
        ``x``, ``y`` are shared, or (P, B, ...) with ``per_network``.
        """
        outputs = self(x, per_network=per_network)
        losses = vmap(loss_fn, in_dims=(0, 0 if per_network else None))(outputs, y)
        grads = torch.autograd.grad(losses.sum(), list(self.params))
        if self.clip is not None:  # per-network norm over all its parameters
            norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads))
            scale = (self.clip / (norms + 1e-6)).clamp(max=1.0)
            grads = [g * scale.view(-1, *[1] * (g.ndim - 1)) for g in grads]
        self._adam(grads)
        return losses.detach()

    @torch.no_grad()
    def _adam(self, grads: list[Tensor]) -> None:
        self._steps += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** self._steps, 1 - b2 ** self._steps
        for p, g, (m, v) in zip(self.params, grads, self._moments, strict=True):
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            lr = (self.lrs * math.sqrt(c2) / c1).view(-1, *[1] * (p.ndim - 1))
            p.sub_(lr * m / (v.sqrt() + self.eps * math.sqrt(c2)))

    def model(self, i: int) -> nn.Module:
        """Network i as an ordinary module (a copy)."""
        module = copy.deepcopy(self.base).to_empty(device=self.lrs.device)
        state = {n: p[i].detach().clone() for n, p in self.stacked().items()}
        state.update({n: b[i].clone() for n, b in self.buffer_values.items()})
        module.load_state_dict(state, assign=True)  # the population's dtype and device
        return module

    def cell(self, make_cell, dtype: torch.dtype | None = None) -> PopulationCell:
        """All P networks' recurrent dynamics as one Cell; ``make_cell(model) -> Cell``."""
        return PopulationCell(self, make_cell, dtype)

    def spectra(self, make_cell, inputs: Tensor, **engine_kwargs) -> tuple[Tensor, LyapunovResult]:
        """(P, k) mean spectra of all networks driven by the same ``inputs`` (B, T, I),
        computed in one call of the engine (float64 unless ``dtype`` is given)."""
        dtype = engine_kwargs.pop("dtype", torch.float64)
        cell = self.cell(make_cell, dtype)
        B = inputs.shape[0]
        result = lyapunov_spectrum(cell, inputs.repeat(self.P, 1, 1), dtype=dtype,
                                   **engine_kwargs)
        return result.per_sequence.view(self.P, B, -1).mean(1), result


class _Call(nn.Module):
    """Calls a method of the Cell built from ``model`` (so functional_call can swap weights)."""

    def __init__(self, model: nn.Module, make_cell):
        super().__init__()
        self.model, self.make_cell = model, make_cell

    def forward(self, method: str, *args):
        return getattr(self.make_cell(self.model), method)(*args)


class PopulationCell(CellModule):
    """P networks' cells as one Cell: state rows are P blocks of B sequences."""

    def __init__(self, population: Population, make_cell, dtype: torch.dtype | None = None):
        super().__init__()
        template = population.model(0)
        probe = make_cell(template)
        self.dim = probe.dim
        self._state_dim = getattr(probe, "state_dim", probe.dim)
        self.P = population.P
        # kept out of the module tree: its meta-device weights are never used, only
        # swapped for the stacked ones by functional_call
        self.__dict__["call"] = _Call(copy.deepcopy(template).to("meta"), make_cell)
        def cast(t: Tensor) -> Tensor:
            return t.detach().to(dtype) if dtype and t.is_floating_point() else t.detach()

        self.weights = {f"model.{n}": cast(p) for n, p in population.stacked().items()}
        self.weights.update({f"model.{n}": cast(b) for n, b in population.buffer_values.items()})

    @property
    def state_dim(self) -> int:
        return self._state_dim

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.weights.values())).dtype

    @property
    def device(self) -> torch.device:
        return next(iter(self.weights.values())).device

    def _vmapped(self, method: str, *args: Tensor | None):
        blocks = [None if a is None else a.reshape(self.P, a.shape[0] // self.P, *a.shape[1:])
                  for a in args]
        dims = tuple(None if a is None else 0 for a in blocks)

        def one(weights, *inner):
            return functional_call(self.call, weights, (method, *inner))

        out = vmap(one, in_dims=(0, *dims))(self.weights, *blocks)
        flat = lambda t: t.reshape(-1, *t.shape[2:])  # noqa: E731
        return tuple(map(flat, out)) if isinstance(out, tuple) else flat(out)

    def step(self, state: Tensor, x: Tensor | None) -> Tensor:
        return self._vmapped("step", state, x)

    def tangent(self, state: Tensor, x: Tensor | None, Q: Tensor) -> tuple[Tensor, Tensor]:
        return self._vmapped("tangent", state, x, Q)


def train_population(task, configs: Sequence, *, le_inputs: Tensor | None = None,
                     le_fractions: Sequence[float] = (1.0,), progress: bool = True,
                     device: torch.device | None = None) -> list[dict]:
    """Train the networks of ``configs`` (one architecture and size; their own ``init``,
    ``lr`` and ``seed``) as one :class:`Population`; return one result row each.

    All networks see the same batches (order from the first config's seed), for
    ``epochs``/``max_batches``/``batch_size`` of the first config. At each of
    ``le_fractions`` of the training steps (0: before training, 1: the end) the
    validation loss and, given ``le_inputs`` (B, T, I), the spectrum of every
    network are recorded. Rows hold the config, ``val_loss`` and ``spectrum``
    (at the end), ``val_loss_at`` and ``spectrum_at`` ({fraction: ...}) and
    ``accuracy`` on the test split when the task has one.
    """
    first = configs[0]
    shapes = {(c.architecture, c.hidden_size) for c in configs}
    if len(shapes) != 1:
        raise ValueError(f"a population needs one architecture and size, got {sorted(shapes)}")
    if any(not 0 <= f <= 1 for f in le_fractions):
        raise ValueError(f"le_fractions must lie in [0, 1], got {list(le_fractions)}")
    device = device or torch.device("cpu")
    models = [c.model(task).to(device) for c in configs]
    pop = Population(models, [c.lr for c in configs], clip=first.clip,
                     forward_kwargs={"stepwise": True})
    plan = [list(task.batches("train", first.batch_size,
                              torch.Generator().manual_seed(first.seed * 100_003 + epoch),
                              first.max_batches))
            for epoch in range(1, first.epochs + 1)]
    steps = sum(map(len, plan))
    marks = {round(f * steps): float(f) for f in (*le_fractions, 1.0)}
    losses_at, spectra_at = {}, {}

    def record(step: int) -> None:
        if step not in marks:
            return
        f = marks[step]
        losses_at[f] = population_loss(pop, task, task.val_split, first.batch_size,
                                       first.val_batches, device)
        if le_inputs is not None and f in le_fractions:
            spectra_at[f] = pop.spectra(lambda m: m.eval().cell("full"), le_inputs.to(device))[0]

    step = 0
    record(step)
    with tqdm(total=steps, desc="training steps", disable=not progress, leave=False) as bar:
        for batches in plan:
            for x, y in batches:
                pop.train_step(task.loss, x.to(device), y.to(device))
                step += 1
                bar.update()
                record(step)
    rows = []
    for i, config in enumerate(configs):
        row = {**asdict(config), "run_id": config.run_id, "val_loss": float(losses_at[1.0][i]),
               "val_loss_at": {str(f): float(v[i]) for f, v in losses_at.items()}}
        if spectra_at:
            row["spectrum_at"] = {str(f): v[i].tolist() for f, v in spectra_at.items()}
            row["spectrum"] = row["spectrum_at"][str(max(spectra_at))]
        if hasattr(task, "accuracy"):
            row["accuracy"] = task.accuracy(pop.model(i), "test")
        rows.append(row)
    return rows


@torch.no_grad()
def population_loss(pop: Population, task, split: str, batch_size: int,
                    max_batches: int | None = None, device=None) -> Tensor:
    """(P,) mean loss of every network over ``split`` (evaluation mode)."""
    was_training = pop.base.training
    pop.base.eval()
    total, count = 0.0, 0
    for x, y in task.batches(split, batch_size, max_batches=max_batches):
        out = pop(x.to(device))
        total = total + vmap(task.loss, in_dims=(0, None))(out, y.to(device)) * len(x)
        count += len(x)
    pop.base.train(was_training)
    return (total / count).cpu()


@torch.no_grad()
def train_force_population(nets: Sequence, targets: Tensor, train_steps: int, *,
                           every: int = 2, alpha: float = 1.0, x0: Tensor | None = None,
                           seed: int = 0, progress: bool = True) -> dict[str, Tensor]:
    """FORCE-train P ``ForceRNN``s of one size at once (batched RLS), in place.

    ``targets`` (P, T): one target each; steps < ``train_steps`` are learned,
    the rest run freely. ``x0`` (P, N): initial states (default 0.5 N(0, 1)
    from ``seed``). Returns (P,) ``train_error`` and ``test_error`` (mean
    |f - z|), the (P, T - train_steps) free-running outputs ``z_test`` and the (P, N)
    final ``state``. Network i ends exactly as
    ``tasks.train_force`` leaves it from the same initial state.
    """
    P, T = targets.shape
    if len(nets) != P or not 0 < train_steps < T:
        raise ValueError(f"need one (T,) target per network and 0 < train_steps < T, got "
                         f"{len(nets)} networks, targets {tuple(targets.shape)}")
    M = torch.stack([n.M for n in nets])
    w_f = torch.stack([n.w_f for n in nets])
    w_o = torch.stack([n.w_o for n in nets])
    dt = nets[0].dt
    N = M.shape[-1]
    targets = targets.to(M)
    Pm = torch.eye(N, dtype=M.dtype, device=M.device).repeat(P, 1, 1) / alpha
    if x0 is None:
        x0 = 0.5 * torch.randn(P, N, generator=torch.Generator().manual_seed(seed), dtype=M.dtype)
    x = x0.to(M)
    z_all = torch.empty_like(targets)
    for n in tqdm(range(T), desc="FORCE", disable=not progress, leave=False):
        r = torch.tanh(x)
        drive = torch.bmm(M, r.unsqueeze(-1)).squeeze(-1) + (r * w_o).sum(-1, True) * w_f
        x = (1 - dt) * x + dt * drive
        r = torch.tanh(x)
        z_all[:, n] = (r * w_o).sum(-1)
        if n < train_steps and n % every == 0:
            Pr = torch.bmm(Pm, r.unsqueeze(-1)).squeeze(-1)
            k = Pr / (1 + (r * Pr).sum(-1, True))
            Pm -= k.unsqueeze(-1) * Pr.unsqueeze(-2)
            w_o -= (z_all[:, n] - targets[:, n]).unsqueeze(-1) * k
    for net, w in zip(nets, w_o, strict=True):
        net.w_o.copy_(w)
    err = (z_all - targets).abs()
    return {"train_error": err[:, :train_steps].mean(1).cpu(),
            "test_error": err[:, train_steps:].mean(1).cpu(),
            "z_test": z_all[:, train_steps:].cpu(), "state": x}
