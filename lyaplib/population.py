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

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from .cells.base import CellModule
from .scale import analysis_dtype
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
        rates = torch.as_tensor(lrs, dtype=torch.float64)
        if not bool((torch.isfinite(rates) & (rates >= 0)).all()):  # 0: not trained by Adam
            raise ValueError(f"lrs must be finite and >= 0, got {rates.tolist()}")
        if clip is not None and not (isinstance(clip, (int, float)) and math.isfinite(clip)
                                     and clip > 0):
            raise ValueError(f"clip must be None or a finite number > 0, got {clip!r}")
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
        """Every model buffer stacked over the P networks, as {name -> (P, ...)}."""
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
        """The stacked parameters, {name: (P, ...)}, as the models name them."""
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

    def cell(self, make_cell, dtype: torch.dtype | None = None, *,
             differentiable: bool = False) -> PopulationCell:
        """All P networks' recurrent dynamics as one Cell; ``make_cell(model) -> Cell``.
        With ``differentiable`` its weights are the population's live parameters."""
        return PopulationCell(self, make_cell, dtype, differentiable=differentiable)

    def spectra(self, make_cell, inputs: Tensor,
                **engine_kwargs) -> tuple[Tensor, list[LyapunovResult]]:
        """(P, k) mean spectra of all networks driven by the same ``inputs`` (B, T, I),
        computed in one call of the engine, in ``dtype`` if given, else
        :func:`~lyaplib.scale.analysis_dtype` of the population's device (float64 on the
        CPU, float32 on CUDA); with ``differentiable=True``, in the population's dtype, with
        gradients to its parameters. Also each network's own
        :class:`~lyaplib.LyapunovResult` (its B sequences), for its error bars."""
        differentiable = engine_kwargs.get("differentiable", False)
        default = None if differentiable else analysis_dtype(self.lrs.device)
        dtype = engine_kwargs.pop("dtype", default)
        cell = self.cell(make_cell, dtype, differentiable=differentiable)
        B = inputs.shape[0]
        result = lyapunov_spectrum(cell, inputs.repeat(self.P, 1, 1), dtype=dtype,
                                   **engine_kwargs)
        return result.per_sequence.view(self.P, B, -1).mean(1), result.split(self.P)


class _Call(nn.Module):
    """Calls a method of the Cell built from ``model`` (so functional_call can swap weights)."""

    def __init__(self, model: nn.Module, make_cell):
        super().__init__()
        self.model, self.make_cell = model, make_cell

    def forward(self, method: str, *args):
        return getattr(self.make_cell(self.model), method)(*args)


class PopulationCell(CellModule):
    """P networks' cells as one Cell: state rows are P blocks of B sequences.

    Its weights are detached copies of the population's (in ``dtype``), or with
    ``differentiable`` the population's parameters themselves, so that
    ``lyapunov_spectrum(..., differentiable=True)`` reaches them.
    """

    def __init__(self, population: Population, make_cell, dtype: torch.dtype | None = None,
                 *, differentiable: bool = False):
        super().__init__()
        template = population.model(0)
        probe = make_cell(template)
        self.dim = probe.dim
        self._state_dim = getattr(probe, "state_dim", probe.dim)
        self.P = population.P
        # kept out of the module tree: its meta-device weights are never used, only
        # swapped for the stacked ones by functional_call
        self.__dict__["call"] = _Call(copy.deepcopy(template).to("meta"), make_cell)
        if differentiable and dtype not in (None, population.lrs.dtype):
            raise ValueError(f"dtype: a differentiable population cell keeps the population's "
                             f"{population.lrs.dtype}, got {dtype}")

        def cast(t: Tensor) -> Tensor:
            if differentiable:
                return t
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
