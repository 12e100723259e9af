"""The generic oracle: on random declarations, a derived block does what the energy says.

For tied declarations with contracting couplings, solved to a tight tolerance in float64:
every fast layer sits at its equilibrium $x_A = I_A(g)$ of the full energy (autograd of the
synapse energies, every activation an independent leaf), and every slow step equals the declared
step rule applied to $I = -\\partial E_{syn}/\\partial g$ at the settled state
(docs/concepts/fast_layers.md#which-layers-are-implicit). For fixed-k blocks, more iterations
approach that same equilibrium.

The declarations are drawn by hypothesis: chains, loops, lateral self-loops, N-ary
``FunctionSynapse``s with self terms, attention with a slow or a fast memory, convolutions,
clamped inputs, one or several slow layers.
"""

from __future__ import annotations

import math

import pytest
import torch
from graphs import ACTS, _scaled, vector_graph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S

D = torch.float64
TOL = 1e-13
def attention_graph(fast_memory: bool, tokens=4, dim=4):
    neurons = {"x": hf.NeuronLayer((tokens, dim), L.LayerNorm(dim, per_feature=False)),
               "h": hf.NeuronLayer((tokens, 6), L.Tanh(), tau=0)}
    if fast_memory:
        neurons["m"] = hf.NeuronLayer((tokens, dim), L.Tanh(), tau=0)
        syn = {"attn": S.MultiHeadAttention(dim, 2, memory=True), "xm": S.Dense(dim, dim)}
        edges = {"attn": ("x", "m"), "xm": ("x", "m")}
    else:
        neurons["m"] = hf.NeuronLayer((tokens, dim), copy_of="x")
        syn, edges = {"attn": S.MultiHeadAttention(dim, 2, memory=True)}, {"attn": ("x", "m")}
    syn["mlp"] = S.Dense(dim, 6)
    edges["mlp"] = ("x", "h")
    for s in syn.values():
        _scaled(s, 0.3)
    return hf.EnergyGraph(neurons, syn, edges).double(), ["x"], []


def conv_graph():
    neurons = {"x": hf.NeuronLayer((2, 6, 6), L.Tanh()),
               "h": hf.NeuronLayer((3, 4, 4), L.Sigmoid(), tau=0),
               "k": hf.NeuronLayer((3, 4, 4), L.Tanh(), tau=0)}
    syn = {"conv": _scaled(S.Conv(2, 3, 3), 0.3), "lat": S.FunctionSynapse(
        lambda h, k, lam: -lam * (h * k).flatten(1).sum(-1), 2, params={"lam": torch.tensor(0.4)})}
    return hf.EnergyGraph(neurons, syn, {"conv": ("x", "h"), "lat": ("h", "k")}).double(), \
        ["x"], []


def settled_currents(graph, xs, synapses):
    """$I_A = -\\partial E_{syn}/\\partial g_A$ of the full energy, by plain autograd."""
    with torch.enable_grad():
        gs = {n: graph.lagrangian_of(n).activation(x).detach().requires_grad_(True)
              for n, x in xs.items()}
        e = graph.synapse_energy(gs, synapses).sum()
        names = list(gs)
        grads = torch.autograd.grad(e, [gs[n] for n in names], allow_unused=True)
    return {n: (-g if g is not None else torch.zeros_like(gs[n])) for n, g in zip(names, grads, strict=True)}


def check_block(graph, slow, clamped, *, step, schedule, step_size=0.5, batch=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    blk = hf.derive(graph, slow, step=step, step_size=step_size, schedule=schedule,
                    solver="fixed_point", max_iter=2000, tol=TOL)
    states = [torch.randn(batch, *graph.neurons[n].shape, generator=gen, dtype=D) for n in slow]
    inputs = {n: torch.randn(batch, *graph.neurons[n].shape, generator=gen, dtype=D)
              for n in clamped}
    with torch.no_grad():
        out, trace = blk.run(states, inputs, trace=True)
    assert trace.steps, "the block did nothing"
    syns = list(graph.edges)
    for st_ in trace.steps:
        full = graph.fill_copies({**st_.xs, **{n: st_.before[n] for n in st_.layers}})
        cur = settled_currents(graph, full, syns)
        for comp in st_.plan.components:
            for n in comp.layers:  # every fast layer at its equilibrium
                torch.testing.assert_close(full[n], cur[n], atol=1e-8, rtol=1e-8,
                                           msg=lambda m, n=n: f"fast layer {n}: {m}")
        for n in st_.layers:  # every slow step is the declared rule of -dE/dg
            x, new = st_.before[n], st_.after[n]
            tau = graph.neurons[n].tau
            expect = x + step_size * cur[n] if step == "residual" else \
                x + (step_size / tau) * (cur[n] - x)
            torch.testing.assert_close(new, expect, atol=1e-8, rtol=1e-8)
    return blk, out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), step=st.sampled_from(["residual", "leaky"]),
       schedule=st.sampled_from(["sequential", "simultaneous"]))
def test_random_vector_hierarchies_settle_at_the_energy_equilibrium(data, step, schedule):
    torch.manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    graph, slow, clamped = vector_graph(data, width=data.draw(st.integers(2, 4), label="width"))
    check_block(graph, slow, clamped, step=step, schedule=schedule)


@pytest.mark.parametrize("fast_memory", [False, True])
def test_attention_with_slow_or_fast_memory(fast_memory):
    graph, slow, clamped = attention_graph(fast_memory)
    blk, _ = check_block(graph, slow, clamped, step="residual", schedule="sequential")
    comps = blk.plans[0].components
    if fast_memory:  # keys from a fast layer: that layer reads itself -> implicit
        assert any(c.implicit and "m" in c.layers for c in comps)
    else:
        assert all(not c.implicit for c in comps)


def test_conv_hierarchy_with_a_fast_pair():
    graph, slow, clamped = conv_graph()
    blk, _ = check_block(graph, slow, clamped, step="leaky", schedule="sequential")
    assert [c.implicit for c in blk.plans[0].components] == [True]


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_fixed_k_sweeps_approach_the_equilibrium(data):
    """With k plain sweeps, the distance to the solved block shrinks as k grows (contraction)."""
    torch.manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    graph, slow, clamped = vector_graph(data, width=3)
    solved = hf.derive(graph, slow, max_iter=2000, tol=TOL)
    if not any(c.implicit for p in solved.plans for c in p.components):
        return
    states = [torch.randn(2, 3, dtype=D) for _ in slow]
    inputs = {n: torch.randn(2, 3, dtype=D) for n in clamped}
    with torch.no_grad():
        ref = solved(*states, **inputs)
        ref = ref if isinstance(ref, tuple) else (ref,)
        errs = []
        for k in (1, 4, 16, 64):
            out = hf.derive(graph, slow, max_iter=k)(*states, **inputs)
            out = out if isinstance(out, tuple) else (out,)
            errs.append(max(float((a - b).abs().max()) for a, b in zip(out, ref, strict=True)))
    assert errs[-1] <= 1e-6 + 0.02 * errs[0], errs
    assert errs[-1] <= errs[0] + 1e-12, errs


def _chain_sweeps(graph, x, n_fast, k):
    """k plain sweeps of a fast chain h0 - ... - h{n-1}, written from the energy: start from the
    currents of the slow side (ascending), then each sweep recomputes the farthest layer and
    walks back to h0, every current by autograd (half energies when untied)."""
    names = [f"h{i}" for i in range(n_fast)]
    act = {n: graph.lagrangian_of(n).activation for n in ["x", *names]}
    gs = {"x": act["x"](x)}
    xs = {}

    def current(n, gs, synapses=None):
        full = {m: gs.get(m, torch.zeros(x.shape[0], *graph.neurons[m].shape, dtype=D))
                for m in graph.neurons}
        return graph.currents(gs=full, targets=[n], synapses=synapses, method="autograd")[n]

    for i, n in enumerate(names[:-1] if n_fast > 1 else names):  # the start: from below only
        xs[n] = current(n, gs, [f"W{i}"])
        gs[n] = act[n](xs[n])
    for _ in range(k):
        if n_fast > 1:
            last = names[-1]
            xs[last] = current(last, gs)
            gs[last] = act[last](xs[last])
        for n in reversed(names[:-1] if n_fast > 1 else names):
            xs[n] = current(n, gs)
            gs[n] = act[n](xs[n])
    return x + current("x", gs)


@settings(max_examples=25, deadline=None)
@given(n_fast=st.integers(2, 4), k=st.integers(0, 5), untied=st.lists(st.booleans(), min_size=5,
       max_size=5), act=st.sampled_from(["tanh", "relu", "sigmoid"]), seed=st.integers(0, 999))
def test_fixed_k_sweeps_equal_the_sweeps_written_from_the_energy(n_fast, k, untied, act, seed):
    torch.manual_seed(seed)
    names = ["x"] + [f"h{i}" for i in range(n_fast)]
    neurons = {"x": hf.NeuronLayer(3, L.Tanh())}
    neurons.update({n: hf.NeuronLayer(3, ACTS[act](), tau=0) for n in names[1:]})
    syns = {f"W{i}": _scaled(S.Dense(3, 3, tied=not untied[i]), 0.5) for i in range(n_fast)}
    edges = {f"W{i}": (names[i], names[i + 1]) for i in range(n_fast)}
    graph = hf.EnergyGraph(neurons, syns, edges).double()
    blk = hf.derive(graph, "x", max_iter=k)
    comp = blk.plans[0].components[0]
    assert comp.implicit and comp.eliminated == (names[-1],)
    x = torch.randn(2, 3, dtype=D)
    torch.testing.assert_close(blk(x), _chain_sweeps(graph, x, n_fast, k), atol=1e-12, rtol=1e-12)


def test_self_term_inside_a_two_layer_synapse_is_implicit():
    """E = -<g_h, W g_x> - ½λ|g_h|² with h fast and identity: x_h = W g_x / (1 - λ) exactly."""
    lam, width = 0.4, 3
    W = torch.randn(width, width, dtype=D) * 0.5

    def energy(x, h, *, W, lam):
        return -(h * (x @ W.T)).sum(-1) - 0.5 * lam * (h * h).sum(-1)

    graph = hf.EnergyGraph(
        {"x": hf.NeuronLayer(width, L.Tanh()), "h": hf.NeuronLayer(width, L.Identity(), tau=0)},
        {"E": S.FunctionSynapse(energy, 2, params={"W": W, "lam": torch.tensor(lam, dtype=D)})},
        {"E": ("x", "h")}).double()
    blk = hf.derive(graph, "x", solver="anderson", max_iter=100, tol=1e-14)
    assert blk.plans[0].components[0].implicit
    x = torch.randn(4, width, dtype=D)
    h = torch.tanh(x) @ W.T / (1 - lam)
    expect = x + h @ W  # residual step with I_x = W^T g_h
    torch.testing.assert_close(blk(x), expect, atol=1e-10, rtol=1e-10)
    assert "IMPLICIT" in blk.describe()


class _Liar(S.Synapse):
    """Declares its energy affine in both slots, but carries a self term."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.eye(3))

    def energy(self, a, b):
        return -(b * (a @ self.weight.T)).sum(-1) - 0.5 * (b * b).sum(-1)

    def affine_slots(self):
        return frozenset({0, 1})


def test_a_declaration_that_disagrees_with_the_measurement_is_an_error():
    graph = hf.EnergyGraph(
        {"x": hf.NeuronLayer(3, L.Tanh()), "h": hf.NeuronLayer(3, L.Tanh(), tau=0)},
        {"liar": _Liar()}, {"liar": ("x", "h")})
    with pytest.raises(hf.WiringError, match=r"synapse 'liar' \(_Liar\) declares its energy "
                                             r"affine in slot 1"):
        hf.derive(graph, "x")


def test_math_is_finite():  # the oracle's tolerance is meaningful in float64
    assert math.isfinite(TOL) and TOL < 1e-12


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_implicit_component_solves_its_inverse_form(data):
    """``solve_implicit`` / ``residual_map`` for each implicit component of each group: the
    components it reads settle first, and the residual map at the solution returns its input."""
    graph, slow, clamped = vector_graph(data, width=3)
    blk = hf.derive(graph, slow, solver="fixed_point", max_iter=2000, tol=TOL)
    gen = torch.Generator().manual_seed(0)
    states = [torch.randn(2, *graph.neurons[n].shape, generator=gen, dtype=D) for n in slow]
    inputs = {n: torch.randn(2, *graph.neurons[n].shape, generator=gen, dtype=D) for n in clamped}
    x = states[0] if len(states) == 1 else states
    for g, plan in enumerate(blk.plans):
        for c in range(sum(comp.implicit for comp in plan.components)):
            with torch.no_grad():
                z, y, stats = blk.solve_implicit(x, group=g, component=c, **inputs)
                assert stats.converged
                torch.testing.assert_close(blk.residual_map(z, x, group=g, component=c,
                                                            **inputs), y, atol=1e-9, rtol=1e-9)


def test_a_later_implicit_component_solves_after_the_earlier_ones():
    """x - h0 (lateral loop) and x - h2 (lateral loop): two implicit components (tied couplings
    make connected fast layers one component, so separate ones hang off slow layers); the
    second one's solution is the block's settled h2, its residual map returns its input."""
    torch.manual_seed(0)
    neurons = {"x": hf.NeuronLayer(3, L.Tanh()),
               **{h: hf.NeuronLayer(3, L.Tanh(), tau=0) for h in ("h0", "h2")}}
    synapses = {k: _scaled(S.Dense(3, 3), 0.3) for k in ("A", "C", "L0", "L2")}
    edges = {"A": ("x", "h0"), "C": ("x", "h2"), "L0": ("h0", "h0"), "L2": ("h2", "h2")}
    graph = hf.EnergyGraph(neurons, synapses, edges).double()
    blk = hf.derive(graph, "x", solver="fixed_point", max_iter=2000, tol=TOL)
    comps = blk.plans[0].components
    assert [c.implicit for c in comps] == [True, True]
    x = torch.randn(2, 3, dtype=D)
    with torch.no_grad():
        _, trace = blk.run(x, trace=True)
        for c in (0, 1):
            z, y, stats = blk.solve_implicit(x, component=c)
            torch.testing.assert_close(blk.residual_map(z, x, component=c), y, atol=1e-10,
                                       rtol=0)
            (layer,) = comps[c].state
            torch.testing.assert_close(z, trace.steps[0].xs[layer], atol=1e-10, rtol=0)
