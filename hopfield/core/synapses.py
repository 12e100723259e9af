r"""Synapses: scalar energies of activations that couple a tuple of neuron layers.

Every synapse returns one energy per sample, shape ``(batch,)``, and sees **activations only**
(docs/concepts/synapses.md#synapses). Alignment lowers energy. The current it sends into its $i$-th
layer is

* tied: $I_i = -\partial E_s/\partial g_i$ (autograd of :meth:`Synapse.energy`);
* untied: $I_i = -\partial/\partial u\; E^{(i)}_s(u; g)$, the derivative of *that target's half*
  of the synapse with respect to a probe $u$ standing in for $g_i$ (:meth:`Synapse.half_energy`,
  docs/concepts/untying.md#probes). The probe is not a stop-gradient: every other tensor keeps its
  autograd graph, so training gradients through the derived update stay exact.

Synapses with a closed-form current expose :meth:`Synapse.current`; ``tests/test_synapses.py``
pins each closed form to the autograd derivation above.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .errors import WiringError
from .validate import check_axis, check_int, check_positive, check_size, is_int

__all__ = ["Synapse", "Dense", "Conv", "HopfieldMemory", "MultiHeadAttention", "Bias",
           "FunctionSynapse", "apply_on_axis"]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample inner product, shape ``(batch,)``."""
    return (a * b).reshape(a.shape[0], -1).sum(-1)


def apply_on_axis(g: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, axis: int):
    """Apply ``weight`` (out, in) to per-sample ``axis`` of ``g`` (batch first), adding ``bias``.

    Off the last axis, ``axis`` is swapped with the last one and back: a single view op each way
    (a linear map on one axis does not care how the others are ordered), where ``movedim``
    dispatches two; the token-mixing currents of every Mixer-like block pass through here.
    """
    if axis == -1 or axis == g.dim() - 2:
        return F.linear(g, weight, bias)
    ax = axis if axis < 0 else axis + 1
    return F.linear(g.transpose(ax, -1), weight, bias).transpose(ax, -1)


class Synapse(nn.Module):
    """Abstract base. Subclasses set ``arity`` and ``tied`` and implement :meth:`energy`."""

    arity: int = 2
    tied: bool = True

    def energy(self, *gs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def half_energy(self, target: int, probe: torch.Tensor, *gs: torch.Tensor) -> torch.Tensor:
        """Energy of the half of an untied synapse that drives layer ``target`` (linear in ``probe``)."""
        raise NotImplementedError(f"{type(self).__name__} has no untied form.")

    def current(self, target: int, *gs: torch.Tensor) -> torch.Tensor | None:
        """Closed-form current into slot ``target``, or ``None`` (use autograd)."""
        return None

    def energy_from_current(self, target: int, current: torch.Tensor,
                            *gs: torch.Tensor) -> torch.Tensor | None:
        """This synapse's energy, given its own closed-form current into slot ``target`` (what
        :meth:`current` returned for these ``gs``), or ``None`` when that current does not help.

        A bilinear synapse overrides it to reuse the product the current already paid for
        (:math:`E = -\\langle g_B, I_B\\rangle + \\ldots`), so recording energies during a
        descent costs no second matrix product. Tests pin every override to :meth:`energy`.
        """
        return None

    def affine_slots(self) -> frozenset[int] | None:
        """The slots in which this synapse's energy (each half energy, when untied) is affine, so
        that the current into such a slot never reads that slot's own activation; ``None`` when
        undeclared. The planner verifies a declaration numerically once, at plan time, and
        measures an undeclared synapse (docs/concepts/fast_layers.md#which-layers-are-implicit).
        """
        return None

    def frame_axis(self) -> int | None:
        """The one per-sample axis along which each closed-form current of this synapse is a
        linear map of another endpoint, the same at every position of the other axes (whatever
        their order), or ``None``. The block iterates an implicit component whose internal
        couplings all act on one such axis with that axis last (no axis move inside the loop;
        docs/concepts/fast_layers.md#iteration-layout)."""
        return None

    def frame_current(self, target: int, *gs: torch.Tensor) -> torch.Tensor:
        """:meth:`current` with the :meth:`frame_axis` moved last in every state and in the
        result (only for synapses that declare a frame axis)."""
        raise NotImplementedError(f"{type(self).__name__} declares no frame axis.")

    def check_shapes(self, shapes: Sequence[tuple[int, ...]], where: str) -> None:
        """Raise :class:`~hopfield.WiringError` if the layer shapes do not fit this synapse."""


def _need(cond: bool, where: str, msg: str):
    if not cond:
        raise WiringError(f"{where}: {msg}")


class Dense(Synapse):
    r"""Dense (bilinear) synapse between layers $A$ and $B$, acting on one axis of their states.

    $$E = -\langle g_B, W g_A + b\rangle - \langle c, g_A\rangle$$

    with $W\in\mathbb R^{\text{out}\times\text{in}}$ applied along ``axis`` of $g_A$ (the token axis
    for token mixing, the channel axis for channel mixing) and the biases broadcast over the other
    axes. Tied currents: $I_B = W g_A + b$, $I_A = W^\top g_B + c$. Untied (``tied=False``), the
    current into $A$ uses an independent ``weight_back`` $V\in\mathbb R^{\text{in}\times\text{out}}$:
    $I_A = V g_B + c$ (the second linear layer of an MLP). Edge order: ``(A, B)``; $B$'s shape is
    $A$'s with ``axis`` resized from ``in_dim`` to ``out_dim``.

    Example:
        >>> import torch, hopfield as hf
        >>> s = hf.synapses.Dense(16, 8)
        >>> s.energy(torch.randn(4, 16), torch.randn(4, 8)).shape
        torch.Size([4])
    """

    def affine_slots(self):
        return frozenset({0, 1})  # bilinear: each current reads only the other endpoint

    def __init__(self, in_dim: int, out_dim: int, *, axis: int = -1, bias: bool = True,
                 tied: bool = True):
        super().__init__()
        check_size("Dense", "in_dim", in_dim)
        check_size("Dense", "out_dim", out_dim)
        check_axis("Dense", axis)
        self.in_dim, self.out_dim, self.axis, self.tied = int(in_dim), int(out_dim), axis, tied
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None
        self.bias_back = nn.Parameter(torch.zeros(in_dim)) if bias else None
        self.weight_back = None if tied else nn.Parameter(torch.empty(in_dim, out_dim))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.xavier_uniform_(self.weight)
        if self.weight_back is not None:
            nn.init.xavier_uniform_(self.weight_back)

    def forward_current(self, g_a, axis: int | None = None):
        """$W g_A + b$: the current into $B$ (along ``axis``, default the synapse's)."""
        return apply_on_axis(g_a, self.weight, self.bias, self.axis if axis is None else axis)

    def backward_current(self, g_b, axis: int | None = None):
        """$V g_B + c$ (untied) or $W^\\top g_B + c$ (tied): the current into $A$."""
        weight = self.weight.t() if self.weight_back is None else self.weight_back
        return apply_on_axis(g_b, weight, self.bias_back, self.axis if axis is None else axis)

    def energy(self, g_a, g_b):
        e = -_dot(g_b, self.forward_current(g_a))
        if self.bias_back is not None:
            e = e - _dot(g_a, self.bias_back.reshape(self._bshape(g_a)))
        return e

    def energy_from_current(self, target, current, g_a, g_b):
        if target == 1:  # current = W g_A + b
            e = -_dot(g_b, current)
            if self.bias_back is not None:
                e = e - _dot(g_a, self.bias_back.reshape(self._bshape(g_a)))
            return e
        if self.weight_back is not None:  # untied: the current into A is not part of E
            return None
        e = -_dot(g_a, current)  # current = W^T g_B + c
        if self.bias is not None:
            e = e - _dot(g_b, self.bias.reshape(self._bshape(g_b)))
        return e

    def _bshape(self, g):
        shape = [1] * (g.dim() - 1)
        shape[self.axis] = -1
        return shape

    def half_energy(self, target, probe, g_a, g_b):
        if target == 1:
            return -_dot(probe, self.forward_current(g_a))
        return -_dot(probe, self.backward_current(g_b))

    def current(self, target, g_a, g_b):
        return self.forward_current(g_a) if target == 1 else self.backward_current(g_b)

    def frame_axis(self):
        # a subclass that computes its currents its own way keeps the declared layout, unless
        # it also says how to compute them with the axis last (its own frame_current)
        cls = type(self)
        own = all(getattr(cls, m) is getattr(Dense, m)
                  for m in ("current", "forward_current", "backward_current"))
        return self.axis if own or cls.frame_current is not Dense.frame_current else None

    def frame_current(self, target, g_a, g_b):
        return self.forward_current(g_a, -1) if target == 1 else self.backward_current(g_b, -1)

    def check_shapes(self, shapes, where):
        _need(len(shapes) == 2, where, f"Dense joins 2 layers, got {len(shapes)}.")
        sa, sb = shapes
        nd = len(sa)
        _need(-nd <= self.axis < nd, where, f"axis={self.axis} is out of range for layer shape {sa}.")
        _need(sa[self.axis] == self.in_dim, where,
              f"expected the first layer to have size in_dim={self.in_dim} on axis {self.axis}, "
              f"got shape {sa}. Set in_dim={sa[self.axis]} or change the layer.")
        expect = list(sa)
        expect[self.axis] = self.out_dim
        _need(tuple(sb) == tuple(expect), where,
              f"expected the second layer's shape {tuple(expect)} (first layer {sa} with axis "
              f"{self.axis} resized to out_dim={self.out_dim}), got {sb}.")

    def extra_repr(self):
        return (f"in_dim={self.in_dim}, out_dim={self.out_dim}, axis={self.axis}, "
                f"bias={self.bias is not None}, {'tied' if self.tied else 'untied'}")


class Conv(Synapse):
    r"""Convolutional synapse $E = -\langle g_B, \mathrm{conv}(g_A; W) + b\rangle$ between images.

    Layers: $A$ of shape ``(in_channels, H, W)``, $B$ of shape ``(out_channels, H', W')``.
    Tied currents: $I_B = \mathrm{conv}(g_A) + b$, $I_A = \mathrm{conv}^\top(g_B)$ (transposed
    convolution with the same kernel). Untied: $I_A$ uses an independent kernel ``weight_back``.
    """

    def affine_slots(self):
        return frozenset({0, 1})  # bilinear

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, bias: bool = True, tied: bool = True):
        super().__init__()
        for name, size in (("in_channels", in_channels), ("out_channels", out_channels),
                           ("kernel_size", kernel_size)):
            check_size("Conv", name, size)
        check_int("Conv", "stride", stride, minimum=1)
        check_int("Conv", "padding", padding, minimum=0)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.tied = kernel_size, stride, padding, tied
        k = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, k, k))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_back = None
        if not tied:
            self.weight_back = nn.Parameter(self.weight.detach().clone())

    def forward_current(self, g_a):
        return F.conv2d(g_a, self.weight, self.bias, self.stride, self.padding)

    def backward_current(self, g_b, out_hw):
        w = self.weight if self.weight_back is None else self.weight_back
        h_full = (g_b.shape[-2] - 1) * self.stride - 2 * self.padding + self.kernel_size
        w_full = (g_b.shape[-1] - 1) * self.stride - 2 * self.padding + self.kernel_size
        pad = (out_hw[0] - h_full, out_hw[1] - w_full)
        return F.conv_transpose2d(g_b, w, None, self.stride, self.padding, output_padding=pad)

    def energy(self, g_a, g_b):
        return -_dot(g_b, self.forward_current(g_a))

    def energy_from_current(self, target, current, g_a, g_b):
        if target == 1:  # current = conv(g_A) + b
            return -_dot(g_b, current)
        if self.weight_back is not None:  # untied: the current into A is not part of E
            return None
        e = -_dot(g_a, current)  # current = conv^T(g_B): <g_A, conv^T g_B> = <conv g_A, g_B>
        if self.bias is not None:
            e = e - (g_b.sum((-2, -1)) * self.bias).sum(-1)
        return e

    def half_energy(self, target, probe, g_a, g_b):
        if target == 1:
            return -_dot(probe, self.forward_current(g_a))
        return -_dot(probe, self.backward_current(g_b, g_a.shape[-2:]))

    def current(self, target, g_a, g_b):
        if target == 1:
            return self.forward_current(g_a)
        return self.backward_current(g_b, self._in_hw if g_a is None else g_a.shape[-2:])

    def check_shapes(self, shapes, where):
        _need(len(shapes) == 2, where, f"Conv joins 2 layers, got {len(shapes)}.")
        sa, sb = shapes
        _need(len(sa) == 3 and sa[0] == self.in_channels, where,
              f"expected the first layer shaped (in_channels={self.in_channels}, H, W), got {sa}.")
        self._in_hw = tuple(sa[1:])
        ho = (sa[1] + 2 * self.padding - self.kernel_size) // self.stride + 1
        wo = (sa[2] + 2 * self.padding - self.kernel_size) // self.stride + 1
        _need(tuple(sb) == (self.out_channels, ho, wo), where,
              f"expected the second layer shaped {(self.out_channels, ho, wo)} (the convolution's "
              f"output), got {sb}.")


class HopfieldMemory(Synapse):
    r"""Dense associative memory with the softmax hidden layer eliminated (Ramsauer et al. 2021).

    $$E = -\beta^{-1}\sum_{\text{rows}}\log\sum_\mu \exp(\beta\langle\xi_\mu, g_A\rangle)$$

    over ``num_memories`` stored patterns $\xi_\mu\in\mathbb R^{\text{dim}}$, applied along
    ``axis`` (each token separately). Tied current: $I_A = \xi^\top\mathrm{softmax}(\beta\xi g_A)$.
    Untied: the retrieved value uses independent ``values`` $\zeta$: $I_A = \zeta^\top
    \mathrm{softmax}(\beta\xi g_A)$, the probe replacing $g_A$ only in the value slot.
    """

    arity = 1

    def affine_slots(self):
        return frozenset()  # log-sum-exp: the current reads its own layer

    def __init__(self, dim: int, num_memories: int, *, beta: float = 1.0, axis: int = -1,
                 tied: bool = True):
        super().__init__()
        check_size("HopfieldMemory", "dim", dim)
        check_size("HopfieldMemory", "num_memories", num_memories)
        check_positive("HopfieldMemory", "beta", beta)
        check_axis("HopfieldMemory", axis)
        self.dim, self.num_memories, self.beta, self.axis, self.tied = dim, num_memories, float(beta), axis, tied
        self.patterns = nn.Parameter(torch.randn(num_memories, dim) / math.sqrt(dim))
        self.values = None if tied else nn.Parameter(torch.randn(num_memories, dim) / math.sqrt(dim))

    def _scores(self, g):
        return self.beta * apply_on_axis(g, self.patterns, None, self.axis)

    def energy(self, g):
        s = self._scores(g)
        ax = self.axis if self.axis < 0 else self.axis + 1
        return -torch.logsumexp(s, dim=ax).reshape(g.shape[0], -1).sum(-1) / self.beta

    def _attn_current(self, g):
        ax = self.axis if self.axis < 0 else self.axis + 1
        a = torch.softmax(self._scores(g), dim=ax)
        vals = self.patterns if self.values is None else self.values
        return apply_on_axis(a, vals.t(), None, self.axis)

    def half_energy(self, target, probe, g):
        return -_dot(probe, self._attn_current(g))

    def current(self, target, g):
        return self._attn_current(g)

    def check_shapes(self, shapes, where):
        (s,) = shapes
        _need(-len(s) <= self.axis < len(s) and s[self.axis] == self.dim, where,
              f"expected size dim={self.dim} on axis {self.axis}, got layer shape {s}.")


class MultiHeadAttention(Synapse):
    r"""Multi-head attention energy (docs/concepts/synapses.md#attention).

    $$E = -\beta^{-1}\sum_h\sum_C\log\sum_B\exp\big(\beta\,\langle K_{hB}, Q_{hC}\rangle\big),
    \quad Q = W_Q g + b_Q,\; K = W_K g' + b_K,$$

    with $\beta = 1/\sqrt{d_\text{head}}$ by default. With ``memory=True`` the edge is
    ``(queries, memory)`` and $g'$ is a clamped memory layer (a copy of the query layer): the
    current into the queries is $\sum_B \mathrm{softmax}_B(\beta Q_C\cdot K_B)\,\text{value}_B$ per
    head, with value $W_Q^\top K_B$ when tied and $W_O(W_V g'_B + b_V) + b_O$ untied — standard
    multi-head attention. With ``memory=False`` the edge is one layer and keys come from the same
    activations (the Energy Transformer's attention energy); the tied current then has a second
    term through the keys. States are ``(tokens, dim)`` per sample.
    """

    def affine_slots(self):
        return frozenset()  # softmax of query-key scores: non-linear in queries and keys

    def __init__(self, dim: int, num_heads: int, *, head_dim: int | None = None,
                 beta: float | None = None, memory: bool = True, tied: bool = True,
                 bias: bool = False, out_bias: bool = True):
        super().__init__()
        who = "MultiHeadAttention"
        check_size(who, "dim", dim)
        check_size(who, "num_heads", num_heads)
        check_size(who, "head_dim", head_dim, none_ok=True)
        check_positive(who, "beta", beta, none_ok=True)
        if head_dim is None and dim % num_heads:
            raise ValueError(f"MultiHeadAttention: dim={dim} is not divisible by "
                             f"num_heads={num_heads}; pass head_dim explicitly.")
        head_dim = dim // num_heads if head_dim is None else head_dim
        beta = 1.0 / math.sqrt(head_dim) if beta is None else beta
        self.dim, self.num_heads, self.head_dim, self.beta = dim, num_heads, head_dim, float(beta)
        self.memory, self.tied, self.arity = memory, tied, 2 if memory else 1
        inner = num_heads * head_dim
        n = 2 if tied else 3
        self.in_proj_weight = nn.Parameter(torch.empty(n * inner, dim))
        for i in range(n):
            nn.init.xavier_uniform_(self.in_proj_weight.data[i * inner:(i + 1) * inner])
        self.in_proj_bias = nn.Parameter(torch.zeros(n * inner)) if bias else None
        self.out_proj = None if tied else nn.Linear(inner, dim, bias=out_bias)

    def _proj(self, g, i):
        inner = self.num_heads * self.head_dim
        w = self.in_proj_weight[i * inner:(i + 1) * inner]
        b = None if self.in_proj_bias is None else self.in_proj_bias[i * inner:(i + 1) * inner]
        y = F.linear(g, w, b)  # (batch, tokens, heads*head_dim)
        return y.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (b, h, n, d)

    def _merge(self, y):  # (b, h, n, d) -> (b, n, h*d)
        return y.transpose(1, 2).flatten(2)

    def _split_gs(self, gs):
        return (gs[0], gs[1]) if self.memory else (gs[0], gs[0])

    def energy(self, *gs):
        g_q, g_k = self._split_gs(gs)
        q, k = self._proj(g_q, 0), self._proj(g_k, 1)
        s = self.beta * q @ k.transpose(-1, -2)  # (b, h, nq, nk)
        return -torch.logsumexp(s, dim=-1).sum((1, 2)) / self.beta

    def _value_current(self, g_q, g_k):
        """Untied current into the queries: $W_O\\,\\mathrm{softmax}(\\beta QK^\\top)(W_V g' + b_V) + b_O$."""
        q, k, v = self._proj(g_q, 0), self._proj(g_k, 1), self._proj(g_k, 2)
        y = F.scaled_dot_product_attention(q, k, v, scale=self.beta)
        return self.out_proj(self._merge(y))

    def half_energy(self, target, probe, *gs):
        g_q, g_k = self._split_gs(gs)
        if target != 0:
            raise ValueError("MultiHeadAttention: an untied synapse drives its query layer only; "
                             "the memory layer must be clamped.")
        return -_dot(probe, self._value_current(g_q, g_k))

    def current(self, target, *gs):
        g_q, g_k = self._split_gs(gs)
        if not self.tied:
            return self._value_current(g_q, g_k) if target == 0 else None
        if target != 0:
            return None  # current into a clamped memory: not needed, autograd if asked
        inner = self.num_heads * self.head_dim
        q, k = self._proj(g_q, 0), self._proj(g_k, 1)
        a = torch.softmax(self.beta * q @ k.transpose(-1, -2), dim=-1)  # (b, h, nq, nk)
        cur = self._merge(a @ k) @ self.in_proj_weight[:inner]
        if not self.memory:  # keys are the same activations: second term through W_K
            cur = cur + self._merge(a.transpose(-1, -2) @ q) @ self.in_proj_weight[inner:2 * inner]
        return cur

    def check_shapes(self, shapes, where):
        for s in shapes:
            _need(len(s) == 2 and s[-1] == self.dim, where,
                  f"expected layers shaped (tokens, dim={self.dim}), got {s}.")

    def extra_repr(self):
        return (f"dim={self.dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
                f"beta={self.beta:.4g}, memory={self.memory}, {'tied' if self.tied else 'untied'}")


class Bias(Synapse):
    r"""A single-layer bias $E = -\langle b, g_A\rangle$; current $I_A = b$ (``shape``: the layer's)."""

    arity = 1

    def affine_slots(self):
        return frozenset({0})

    def __init__(self, shape):
        super().__init__()
        dims = (shape,) if is_int(shape) else shape
        if not (isinstance(dims, Sequence) and len(dims) > 0 and all(is_int(s) for s in dims)):
            raise TypeError(f"Bias: expected shape to be an int or a non-empty tuple of ints (the "
                            f"layer's shape), got shape={shape!r}.")
        if any(s < 1 for s in dims):
            raise ValueError(f"Bias: expected positive sizes in shape, got shape={tuple(dims)}; "
                             f"every size must be >= 1.")
        shape = tuple(dims)
        self.shape = shape
        self.bias = nn.Parameter(torch.zeros(shape))

    def energy(self, g):
        return -_dot(g, self.bias.expand_as(g))

    def current(self, target, g):
        return self.bias.expand_as(g)

    def check_shapes(self, shapes, where):
        (s,) = shapes
        _need(tuple(s) == self.shape, where, f"expected layer shape {self.shape}, got {s}.")


class FunctionSynapse(Synapse):
    r"""Any tied, N-ary energy given as a function ``fn(*gs) -> (batch,)`` of activations.

    Currents come from autograd. Parameters can be attached as ``params`` (a dict of tensors,
    registered as ``nn.Parameter``\ s and passed to ``fn`` as keyword arguments).
    ``affine``: the slots ``fn`` is affine in (e.g. ``(0,)``), checked at plan time; the default
    ``None`` lets the planner measure it (docs/concepts/fast_layers.md#which-layers-are-implicit).
    """

    def __init__(self, fn: Callable[..., torch.Tensor], arity: int,
                 params: dict[str, torch.Tensor] | None = None,
                 affine: Sequence[int] | None = None):
        super().__init__()
        if affine is not None:
            bad = [i for i in affine if not (isinstance(i, int) and 0 <= i < arity)]
            if bad or not isinstance(arity, int):
                raise ValueError(f"FunctionSynapse: affine must list slot indices in "
                                 f"0..{arity - 1}, got {tuple(affine)!r}.")
        self._affine = None if affine is None else frozenset(affine)
        if not callable(fn):
            raise TypeError(f"FunctionSynapse: fn must be callable, got {type(fn).__name__}.")
        if not (is_int(arity) and arity >= 1):
            raise ValueError(f"FunctionSynapse: arity must be a positive int (the number of "
                             f"layers fn takes), got arity={arity!r}.")
        if params is not None and not (isinstance(params, Mapping) and all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in params.items())):
            raise TypeError(f"FunctionSynapse: params must be a dict of name -> tensor (or None), "
                            f"got {params!r}.")
        self.fn, self.arity = fn, arity
        self.params = nn.ParameterDict({k: nn.Parameter(v) for k, v in (params or {}).items()})

    def affine_slots(self):
        return self._affine

    def energy(self, *gs):
        e = self.fn(*gs, **dict(self.params))
        if e.shape != (gs[0].shape[0],):
            raise WiringError(f"FunctionSynapse: fn must return one energy per sample, shape "
                              f"({gs[0].shape[0]},), got {tuple(e.shape)}.")
        return e
