r"""The energy graph: named neuron layers, named synapses, and the edges that join them.

Total energy (docs/concepts/synapses.md#total-energy):

$$E = \sum_A \big(\langle x_A, g_A\rangle - L_A(x_A)\big) + \sum_s E_s(g_{s_1}, \dots, g_{s_k}).$$

The current into layer $A$ is $I_A = -\partial(\sum_s E_s)/\partial g_A$ (a closed form, or
``torch.func``: docs/concepts/synapses.md#currents-under-torch-func; untied synapses through probes,
docs/concepts/untying.md#probes), so that $\partial E/\partial g_A = x_A - I_A$.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from .autodiff import energy_grads, is_batched, probe_grad
from .dtypes import WeightsDtype
from .errors import WiringError
from .lagrangians import Lagrangian
from .neurons import NeuronLayer
from .synapses import Synapse
from .validate import is_finite_real, is_int

__all__ = ["EnergyGraph", "slot_current"]

_METHODS = ("autograd", "closed_form", "auto")


def _check_name(kind: str, name) -> None:
    if not isinstance(name, str) or not name or "." in name:
        raise WiringError(f"{kind} names must be non-empty strings without '.', got {name!r}.")


def slot_current(syn: Synapse, i: int, gs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The current a synapse sends into its slot ``i`` given its slots' activations ``gs``:
    $-\\partial E_s/\\partial g_i$ when tied (through a fresh alias of ``gs[i]``, so the
    derivative does not follow paths through activations computed from it), the derivative of
    the target's half energy at a zero probe when untied (docs/concepts/synapses.md). It keeps
    the autograd graph to every ``gs`` when grad mode is on."""
    if not syn.tied:  # the target's half energy, differentiated at a zero probe
        return -probe_grad(lambda p: syn.half_energy(i, p, *gs).sum(), gs[i], modules=[syn])

    def energy(g):  # g: a fresh alias of the slot's activation
        return syn.energy(*gs[:i], g, *gs[i + 1:]).sum()

    return -energy_grads(energy, [gs[i]], modules=[syn])[0]


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise ValueError(f"currents: unknown method {method!r}; valid: {', '.join(_METHODS)}.")


class EnergyGraph(WeightsDtype):
    """A hierarchical Hopfield energy, validated at construction.

    Args:
        neurons: ``{name: NeuronLayer}``.
        synapses: ``{name: Synapse}``.
        edges: ``{synapse name: (neuron name, ...)}`` – the layers each synapse joins, in the
            synapse's slot order.

    Example:
        >>> import hopfield as hf
        >>> g = hf.EnergyGraph(
        ...     neurons={"v": hf.NeuronLayer(16, hf.lagrangians.Identity()),
        ...              "h": hf.NeuronLayer(8, hf.lagrangians.Softmax(beta=2.0))},
        ...     synapses={"W": hf.synapses.Dense(16, 8)},
        ...     edges={"W": ("v", "h")})
        >>> xs = g.init_states(batch_size=4)
        >>> g.energy(xs).shape
        torch.Size([4])
    """

    def __init__(self, neurons: Mapping[str, NeuronLayer], synapses: Mapping[str, Synapse],
                 edges: Mapping[str, Iterable[str]]):
        super().__init__()
        for kind, d, typ in (("neurons", neurons, NeuronLayer), ("synapses", synapses, Synapse)):
            if not isinstance(d, Mapping):
                raise TypeError(f"EnergyGraph: {kind} must be a dict of name -> {typ.__name__}, "
                                f"got {type(d).__name__}.")
            for name, obj in d.items():
                _check_name(kind[:-1].capitalize(), name)
                if not isinstance(obj, typ):
                    raise TypeError(f"EnergyGraph: {kind[:-1]} {name!r} must be a hopfield "
                                    f"{typ.__name__}, got {type(obj).__name__}.")
        if not neurons:
            raise WiringError("EnergyGraph: declare at least one neuron layer.")
        if not isinstance(edges, Mapping):
            raise TypeError(f"EnergyGraph: edges must be a dict of synapse name -> tuple of neuron "
                            f"names, got {type(edges).__name__}.")
        clash = sorted(set(neurons) & set(synapses))
        if clash:
            raise WiringError(f"EnergyGraph: name(s) {clash} are used for both a neuron and a "
                              f"synapse; energy terms are keyed by name, so rename one of each.")
        missing = sorted(set(synapses) - set(edges))
        extra = sorted(set(edges) - set(synapses))
        if missing:
            raise WiringError(f"EnergyGraph: synapse(s) {missing} have no edge; add edges={{name: "
                              f"(layer, ...)}} for each.")
        if extra:
            raise WiringError(f"EnergyGraph: edge(s) {extra} name no declared synapse; declared "
                              f"synapses: {sorted(synapses)}.")
        self.neurons = nn.ModuleDict(dict(neurons))
        self.synapses = nn.ModuleDict(dict(synapses))
        self.edges: dict[str, tuple[str, ...]] = {}
        for name, edge in edges.items():
            edge = (edge,) if isinstance(edge, str) else tuple(edge)
            where = f"edge {name!r} {edge}"
            unknown = [n for n in edge if n not in neurons]
            if unknown:
                raise WiringError(f"{where}: unknown neuron(s) {unknown}; declared neurons: "
                                  f"{sorted(neurons)}.")
            syn = synapses[name]
            if len(edge) != syn.arity:
                raise WiringError(f"{where}: {type(syn).__name__} joins {syn.arity} layer(s), but "
                                  f"the edge names {len(edge)}.")
            syn.check_shapes([neurons[n].shape for n in edge], where)
            self.edges[name] = edge
        for name, layer in neurons.items():
            if layer.copy_of is None:
                continue
            src = layer.copy_of
            if src not in neurons:
                raise WiringError(f"neuron {name!r}: copy_of={src!r} names no declared neuron; "
                                  f"declared: {sorted(neurons)}.")
            if neurons[src].copy_of is not None:
                raise WiringError(f"neuron {name!r}: copies {src!r}, which is itself a copy; copy "
                                  f"the original layer instead (copies of copies form cycles).")
            if neurons[src].shape != layer.shape:
                raise WiringError(f"neuron {name!r}: a copy must have the shape of {src!r}, "
                                  f"expected {neurons[src].shape}, got {layer.shape}.")
        # plain lookups for the per-call paths (a declaration is fixed once built): a module's
        # submodules are otherwise found through nn.Module.__getattr__ on every access
        self._lagrangians = {n: (layer.lagrangian if layer.copy_of is None
                                 else neurons[layer.copy_of].lagrangian)
                             for n, layer in neurons.items()}
        self._slots = {s: (edge, synapses[s]) for s, edge in self.edges.items()}

    # ------------------------------------------------------------------ helpers
    def lagrangian_of(self, name: str) -> Lagrangian:
        """The Lagrangian of layer ``name`` (a memory copy's is its source's)."""
        return self._lagrangians[name]

    def init_states(self, batch_size: int, *, std: float = 0.0, device=None, dtype=None,
                    generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """States ``{name: (batch_size, *shape)}``: zeros, or Gaussian with standard deviation ``std``."""
        if not (is_int(batch_size) and batch_size > 0):
            raise ValueError(f"init_states: batch_size must be a positive int, got {batch_size!r}.")
        if not (is_finite_real(std) and std >= 0):
            raise ValueError(f"init_states: std must be a finite number >= 0 (0: zeros), got "
                             f"{std!r}.")
        dtype = dtype or torch.get_default_dtype()
        xs = {}
        for name, layer in self.neurons.items():
            shape = (batch_size, *layer.shape)
            if std > 0:
                xs[name] = std * torch.randn(shape, device=device, dtype=dtype, generator=generator)
            else:
                xs[name] = torch.zeros(shape, device=device, dtype=dtype)
        return self.fill_copies(xs)

    def fill_copies(self, xs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Set every copy layer's state to the state of the layer it copies."""
        xs = dict(xs)
        for name, layer in self.neurons.items():
            if layer.copy_of is not None and layer.copy_of in xs:
                xs[name] = xs[layer.copy_of]
        return xs

    def check_states(self, xs: Mapping[str, torch.Tensor], *, finite: bool = True) -> None:
        """Raise a clear error if ``xs`` does not fit the graph (names, shapes, NaN/Inf; under
        ``torch.func.vmap`` values cannot be read, and NaN/Inf are not looked for)."""
        if not isinstance(xs, Mapping):
            raise TypeError(f"states must be a dict of neuron name -> tensor, got {type(xs).__name__}.")
        missing = sorted(set(self.neurons) - set(xs))
        extra = sorted(set(xs) - set(self.neurons))
        if missing or extra:
            raise WiringError(f"state dict does not match the graph: missing {missing}, extra "
                              f"{extra}; expected exactly {sorted(self.neurons)} "
                              f"(graph.init_states(batch_size) builds one).")
        batch = None
        for name, layer in self.neurons.items():
            x = xs[name]
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"state of neuron {name!r} must be a tensor, got {type(x).__name__}.")
            self.check_state_dtype("EnergyGraph", name, x)
            if tuple(x.shape[1:]) != layer.shape or x.dim() != len(layer.shape) + 1:
                raise WiringError(f"state of neuron {name!r}: expected shape (batch, "
                                  f"{', '.join(map(str, layer.shape))}), got {tuple(x.shape)}.")
            if batch is not None and x.shape[0] != batch:
                raise WiringError(f"state of neuron {name!r} has batch size {x.shape[0]}, others "
                                  f"have {batch}; every state must share the batch size.")
            batch = x.shape[0]
            if finite and not is_batched(x) and not torch.isfinite(x).all():  # vmap: unread
                raise ValueError(f"state of neuron {name!r} contains NaN or Inf; check the input "
                                 f"(or the step size, if it came from a diverging update).")

    def activations(self, xs, lagrangians: Mapping[str, Lagrangian] | None = None):
        """``{name: g}`` with $g_A = \\nabla L_A(x_A)$; ``lagrangians`` overrides some layers'."""
        over = lagrangians or {}
        return {n: (over.get(n) or self.lagrangian_of(n)).activation(x) for n, x in xs.items()}

    # ------------------------------------------------------------------ energies
    def synapse_energy(self, gs, synapses: Iterable[str] | None = None) -> torch.Tensor:
        names = list(self.edges if synapses is None else synapses)
        return sum(self.synapses[s].energy(*(gs[n] for n in self.edges[s])) for s in names)

    def energy_terms(self, xs, lagrangians=None, *, check: bool = True) -> dict[str, torch.Tensor]:
        """Per-term energies ``{name: (batch,)}``: one Legendre term per neuron layer (keyed by the
        neuron's name) and one per synapse (keyed by the synapse's name)."""
        if check:
            self.check_states(xs)
        over = lagrangians or {}
        terms = {}
        gs = self.activations(xs, over)
        for n, layer in self.neurons.items():
            terms[n] = layer.energy(xs[n], gs[n], over.get(n) or self.lagrangian_of(n))
        for s, edge in self.edges.items():
            terms[s] = self.synapses[s].energy(*(gs[n] for n in edge))
        return terms

    def energy(self, xs, lagrangians=None, *, check: bool = True) -> torch.Tensor:
        """Total energy per sample, shape ``(batch,)``."""
        return sum(self.energy_terms(xs, lagrangians, check=check).values())

    # ------------------------------------------------------------------ currents
    def currents(self, xs=None, *, gs=None, targets: Iterable[str] | None = None,
                 synapses: Iterable[str] | None = None, method: str = "autograd",
                 lagrangians=None) -> dict[str, torch.Tensor]:
        """Currents $I_A = -\\partial(\\sum_s E_s)/\\partial g_A$ into ``targets`` (default: every
        layer that is not clamped), from ``synapses`` (default: all).

        ``method``: ``"autograd"`` (derive every current by autograd), ``"closed_form"`` (use the
        synapses' closed forms, which tests pin to autograd; error if one has none) or ``"auto"``
        (closed form where available). The result is differentiable when grad mode is on.
        """
        _check_method(method)
        if gs is None:
            if xs is None:
                raise TypeError("currents: pass the states xs (or their activations gs).")
            self.check_states(xs)
            gs = self.activations(xs, lagrangians)
        syn_names = list(self.edges if synapses is None else synapses)
        for s in syn_names:
            if s not in self.edges:
                raise WiringError(f"currents: unknown synapse {s!r}; declared: {sorted(self.edges)}.")
        return self._currents(gs, syn_names, targets, method)[0]

    def currents_and_energies(self, gs, *, method: str = "auto"
                              ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(currents, synapse_energies)`` at activations ``gs``: the currents of
        :meth:`currents` into every non-clamped layer, and ``{synapse: (batch,)}`` energies.

        A synapse whose closed-form current already holds its energy's costly product returns
        its energy from that current (:meth:`Synapse.energy_from_current`), so a descent that
        records energies pays for each product once; other synapses evaluate :meth:`Synapse.energy`.
        """
        _check_method(method)
        out, closed = self._currents(gs, list(self.edges), None, method)
        energies = {}
        for s, (edge, syn) in self._slots.items():
            loc = [gs[n] for n in edge]
            e = None
            for i in range(len(edge)):
                if e is None and (s, i) in closed:
                    e = syn.energy_from_current(i, closed[s, i], *loc)
            energies[s] = syn.energy(*loc) if e is None else e
        return out, energies

    def _currents(self, gs, syn_names, targets, method):
        """Currents from ``syn_names`` into ``targets`` (default: every non-clamped layer):
        ``(summed per layer, {(synapse, slot): closed-form current})``; slots without a closed
        form (or every slot, for ``method="autograd"``) by autograd, untouched layers zero."""
        if targets is None:
            targets = [n for n in self.neurons if not self.neurons[n].clamped]
        else:
            unknown = [n for n in targets if n not in self.neurons]
            if unknown:
                raise WiringError(f"currents: unknown target layer(s) {unknown}; declared: "
                                  f"{sorted(self.neurons)}.")
        out: dict[str, torch.Tensor | None] = dict.fromkeys(targets)
        closed, pending = {}, []
        for s in syn_names:
            edge, syn = self._slots[s]
            for i, n in enumerate(edge):
                if n not in out:
                    continue
                c = None
                if method != "autograd":
                    c = syn.current(i, *(gs[m] for m in edge))
                    if c is None and method == "closed_form":
                        raise ValueError(f"synapse {s!r} ({type(syn).__name__}) has no closed-form "
                                         f"current into slot {i}; use method='auto'.")
                if c is None:
                    pending.append((s, i))
                else:
                    closed[s, i] = c
                    out[n] = c if out[n] is None else out[n] + c
        if pending:
            self._autograd_currents(gs, pending, out)
        for n in out:
            if out[n] is None:  # no synapse touches this layer: zero current
                out[n] = torch.zeros_like(gs[n])
        return out, closed

    def slot_currents(self, pairs, gs: Mapping[str, torch.Tensor], *, method: str = "auto",
                      batch: int | None = None, like: torch.Tensor | None = None,
                      frame: bool = False):
        """Sum of the currents of ``pairs`` ``[(synapse, slot), ...]`` (all into one layer).

        The derivation wing asks the graph for every current this way. ``method="auto"`` uses a
        synapse's closed form where it has one, else autograd of the energy (tied) or of the
        target's half energy (untied), one slot at a time. An activation missing from ``gs`` is
        read as zeros of the layer's shape: the planner calls this only for currents it has
        verified not to read that activation (docs/concepts/fast_layers.md#which-layers-are-implicit).
        Returns ``None`` for an empty ``pairs``. With ``frame=True`` every state in ``gs`` and
        the result have the synapses' common :meth:`~hopfield.synapses.Synapse.frame_axis`
        last (the planner checks that they share one; docs/concepts/fast_layers.md#iteration-layout).
        """
        out = None
        for s, i in pairs:
            edge, syn = self._slots[s]
            if frame:
                c = syn.frame_current(i, *map(gs.get, edge))
            else:
                c = syn.current(i, *map(gs.get, edge)) if method == "auto" else None
                if c is None:
                    c = self._slot_autograd(s, i, gs, like)
            out = c if out is None else out + c
        return out

    def _slot_autograd(self, s, i, gs, like):
        edge, syn = self.edges[s], self.synapses[s]
        ref = like if like is not None else next(iter(gs.values()))
        loc = [gs[n] if n in gs else ref.new_zeros((ref.shape[0], *self.neurons[n].shape))
               for n in edge]
        return slot_current(syn, i, loc)

    def _autograd_currents(self, gs, pending, out):
        """Add the currents of ``pending`` ``[(synapse, slot)]`` into ``out`` (keyed by the
        target layers) by ``torch.func`` (docs/concepts/synapses.md#currents-under-torch-func)."""

        def add(n, c):
            out[n] = c if out[n] is None else out[n] + c

        tied = [(s, i) for s, i in pending if self.synapses[s].tied]
        untied = [(s, i) for s, i in pending if not self.synapses[s].tied]
        if tied:
            syns = sorted({s for s, _ in tied})
            pend = set(tied)
            # One gradient call serves all targets unless some slot of these synapses was
            # already answered in closed form (then the energy would count it twice).
            clash = any(n in out and (s, i) not in pend
                        for s in syns for i, n in enumerate(self.edges[s]))
            jobs = ([(syns, sorted({self.edges[s][i] for s, i in tied}))] if not clash else
                    [(sorted({s for s, i in tied if self.edges[s][i] == n}), [n])
                     for n in sorted({self.edges[s][i] for s, i in tied})])
            for job_syns, names in jobs:
                # the targets enter as arguments: fresh aliases, so the partial derivative does
                # not follow paths through other activations computed from them, while the
                # training graph stays intact (no stop-gradient, docs/concepts/untying.md)
                def energy(*g, names=names, job_syns=job_syns):
                    return self.synapse_energy({**gs, **dict(zip(names, g, strict=True))},
                                               job_syns).sum()

                grads = energy_grads(energy, [gs[n] for n in names],
                                     modules=[self.synapses[s] for s in job_syns])
                for n, gr in zip(names, grads, strict=True):
                    add(n, -gr)
        for s, i in untied:
            syn, edge = self.synapses[s], self.edges[s]
            loc = [gs[m] for m in edge]
            add(edge[i], -probe_grad(lambda p, syn=syn, i=i, loc=loc:
                                     syn.half_energy(i, p, *loc).sum(), loc[i], modules=[syn]))

    def extra_repr(self) -> str:
        return "edges: " + ", ".join(f"{s}={e}" for s, e in self.edges.items())
