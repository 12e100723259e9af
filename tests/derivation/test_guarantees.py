"""Guarantees from checks (docs/concepts/guarantees.md): the Lyapunov report answers YES only
where the energy provably never rises under exactly the dynamics that run.

The property test draws graphs (chains, small loops, lateral self-loops with symmetric weights,
Hopfield memories; identity/tanh/sigmoid/ReLU/softmax layers; clamped and fast layers; random
weight scales) and checks that wherever ``lyapunov_report(graph, step_size=α, rule="leaky")``
says YES, 50 steps of ``descend(graph, xs, step_size=α, rule="leaky")`` never raise the energy.
"""

import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S

D = torch.float64
KINDS = ("identity", "tanh", "sigmoid", "relu", "softmax")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (10x slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_graph(pick, num, seed: int) -> hf.EnergyGraph:
    """A random graph; ``pick(options)`` and ``num(lo, hi)`` make the structural choices."""
    n = pick([2, 3, 4])
    neurons, synapses, edges, dims = {}, {}, {}, []
    for i in range(n):
        kind, dim = pick(KINDS), pick([2, 3, 4])
        lag = L.Softmax(beta=num(0.5, 3.0)) if kind == "softmax" else L.get(kind)
        role = pick(["slow", "clamped"] if i == 0 else ["slow", "slow", "fast", "clamped"])
        tau = 0.0 if role == "fast" else pick([0.5, 1.0, 2.0])
        neurons[f"l{i}"] = hf.NeuronLayer(dim, lag, tau=tau, clamped=role == "clamped")
        dims.append(dim)
    for i in range(1, n):  # a chain
        synapses[f"c{i}"], edges[f"c{i}"] = S.Dense(dims[i - 1], dims[i]), (f"l{i - 1}", f"l{i}")
    if n > 2 and pick([True, False]):  # a small loop
        synapses["loop"], edges["loop"] = S.Dense(dims[0], dims[n - 1]), ("l0", f"l{n - 1}")
    if pick([True, False]):  # a lateral self-loop
        k = pick(range(n))
        synapses["lateral"], edges["lateral"] = S.Dense(dims[k], dims[k]), (f"l{k}", f"l{k}")
    if pick([True, False, False]):  # a Hopfield memory (log-sum-exp) on one layer
        k = pick(range(n))
        synapses["memory"] = S.HopfieldMemory(dims[k], 3, beta=num(0.5, 2.0))
        edges["memory"] = (f"l{k}",)
    graph = hf.EnergyGraph(neurons, synapses, edges).double()
    scale = num(0.05, 1.5)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, syn in graph.synapses.items():
            for p in syn.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=D) * (0.3 if p.dim() < 2 else
                                                                        scale))
            if name == "lateral":  # symmetric lateral weight
                syn.weight.copy_(0.5 * (syn.weight + syn.weight.t()))
    return graph


def max_rise(graph, step_size, seed, steps=50):
    """Largest energy rise over ``steps`` of descend, relative to the size of the energy terms."""
    gen = torch.Generator().manual_seed(seed)
    xs = graph.init_states(3, std=1.0, generator=gen, dtype=D)
    _, stats = hf.dynamics.descend(graph, xs, steps=steps, step_size=step_size, rule="leaky")
    e = stats.energy_matrix()
    scale = torch.stack([sum(t.abs() for t in terms.values()) for terms in stats.energy_terms])
    return float(((e[1:] - e[:-1]) / scale[:-1].clamp(min=1.0)).max())


def _seeded(seed):
    rng = random.Random(seed)
    return build_graph(lambda o: rng.choice(list(o)), rng.uniform, seed)


def _step(report, fraction):
    alpha = report.max_step_size
    return None if alpha is None or alpha == float("inf") else fraction * alpha


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_yes_means_the_energy_never_rises(data):
    graph = build_graph(lambda o: data.draw(st.sampled_from(list(o))),
                        lambda lo, hi: data.draw(st.floats(lo, hi)),
                        data.draw(st.integers(0, 2**31 - 1)))
    alpha = _step(hf.lyapunov_report(graph), data.draw(st.sampled_from([1.0, 0.5, 0.1])))
    if alpha is None:
        return
    report = hf.lyapunov_report(graph, step_size=alpha, rule="leaky")
    if report.verdict == "YES":
        assert max_rise(graph, alpha, seed=1) <= 1e-12, str(report)


def test_yes_on_a_good_fraction_and_the_bound_is_nearly_tight():
    yes, risen = 0, 0
    for seed in range(60):
        graph = _seeded(seed)
        alpha = _step(hf.lyapunov_report(graph), 1.0)
        if alpha is None:
            continue
        report = hf.lyapunov_report(graph, step_size=alpha, rule="leaky")
        if report.verdict != "YES":
            continue
        yes += 1
        assert max_rise(graph, alpha, seed) <= 1e-12, (seed, str(report))
        taus = [l.tau for l in graph.neurons.values() if not l.clamped and not l.is_fast]
        if max_rise(graph, min(3 * alpha, min(taus)), seed) > 1e-9:
            risen += 1
    assert yes >= 20, yes  # the property test above cannot pass vacuously
    assert risen >= 1, risen  # at 3x the bound the energy does rise somewhere


# ---------------------------------------------------------------------- verdicts
def _pair(kind, norm):
    g = hf.EnergyGraph({"a": hf.NeuronLayer(4, L.get(kind)), "b": hf.NeuronLayer(4, L.get(kind))},
                       {"W": S.Dense(4, 4, bias=False)}, {"W": ("a", "b")}).double()
    with torch.no_grad():
        w = g.synapses["W"].weight
        w.mul_(norm / torch.linalg.matrix_norm(w, ord=2))
    return g


def test_unbounded_energy_is_never_yes():
    assert hf.lyapunov_report(_pair("identity", 0.5), step_size=0.5).verdict == "YES"
    rep = hf.lyapunov_report(_pair("identity", 2.0), step_size=0.1)
    assert rep.verdict == "NO" and rep.status["bounded_below"] == "failed"
    assert "UNBOUNDED" in str(rep)
    g = _pair("relu", 2.0)  # ReLU on the cone: only the positive part of W counts
    with torch.no_grad():
        g.synapses["W"].weight.copy_(-2.0 * torch.eye(4, dtype=D))
    assert hf.lyapunov_report(g, step_size=0.1).status["bounded_below"] == "proved"
    with torch.no_grad():
        g.synapses["W"].weight.copy_(2.0 * torch.eye(4, dtype=D))
    assert hf.lyapunov_report(g, step_size=0.1).status["bounded_below"] == "failed"


def test_step_rule_and_size_are_the_ones_that_run():
    g = _pair("tanh", 3.0)
    rep = hf.lyapunov_report(g, step_size=1.0)
    assert rep.verdict == "PARTIAL" and rep.status["step_size"] == "unverified"
    assert hf.lyapunov_report(g, step_size=rep.max_step_size).verdict == "YES"
    res = hf.lyapunov_report(g, step_size=0.01, rule="residual")
    assert res.status["step_size"] == "failed" and "residual" in res.details["step_size"]
    with pytest.raises(ValueError, match="unknown rule 'jump'"):
        hf.lyapunov_report(g, rule="jump")
    with pytest.raises(ValueError, match="pass rule only for a graph"):
        hf.lyapunov_report(hf.blocks.et_block(4, 8, 2), rule="leaky")


def test_layer_norm_bound_is_reported_vacuous():
    g = hf.EnergyGraph({"x": hf.NeuronLayer(4, L.LayerNorm(4, per_feature=False)),
                        "h": hf.NeuronLayer(4, L.Tanh())},
                       {"W": S.Dense(4, 4)}, {"W": ("x", "h")})
    rep = hf.lyapunov_report(g, step_size=0.1)
    assert rep.verdict == "PARTIAL" and "√ε" in rep.details["step_size"]


def test_non_bilinear_coupling_and_self_dependent_fast_layer():
    attn = hf.EnergyGraph({"x": hf.NeuronLayer((3, 4), L.Tanh())},
                          {"a": S.MultiHeadAttention(4, 2, memory=False)}, {"a": ("x",)})
    rep = hf.lyapunov_report(attn, step_size=0.01)
    assert rep.status["step_size"] == "unverified" and "M of its gradient" in str(rep)
    fast = hf.EnergyGraph({"x": hf.NeuronLayer(4, L.Tanh()),
                           "h": hf.NeuronLayer(4, L.Tanh(), tau=0)},
                          {"W": S.Dense(4, 4), "m": S.HopfieldMemory(4, 3)},
                          {"W": ("x", "h"), "m": ("h",)})
    rep = hf.lyapunov_report(fast, step_size=0.1)
    assert rep.verdict != "YES" and rep.status["fast_layers"] == "failed"


def test_unverified_lagrangian_is_never_yes():
    class Quartic(L.Lagrangian):
        def forward(self, x):
            return (x ** 4).flatten(1).sum(-1) / 4

    g = hf.EnergyGraph({"x": hf.NeuronLayer(3, Quartic())}, {"b": S.Bias(3)}, {"b": ("x",)})
    rep = hf.lyapunov_report(g, step_size=0.1)
    assert rep.status["convex"] == "unverified" and rep.verdict != "YES"
    L.check_convexity(g.neurons["x"].lagrangian, (3,), samples=32).mark()
    rep = hf.lyapunov_report(g, step_size=0.1)
    assert rep.status["convex"] == "estimated" and rep.verdict == "PARTIAL"
    assert "convex on 32 samples (not a proof)" in str(rep)


def test_catalogue_verdicts():
    got = {name: hf.lyapunov_report(make()) for name, make in {
        "mixer": lambda: hf.blocks.mixer_block(6, 4),
        "vit": lambda: hf.blocks.vit_block(6, 4, 2),
        "imixer": lambda: hf.blocks.imixer_block(6, 4),
        "tied_imixer": lambda: hf.blocks.tied_imixer_block(6, 4),
        "tied_mixer": lambda: hf.blocks.tied_mixer_block(6, 4),
        "et": lambda: hf.blocks.et_block(6, 4, num_heads=2)}.items()}
    verdicts = {k: r.verdict for k, r in got.items()}
    assert verdicts == {"mixer": "NO", "vit": "NO", "imixer": "NO", "tied_imixer": "PARTIAL",
                        "tied_mixer": "PARTIAL", "et": "PARTIAL"}
    assert got["tied_imixer"].iterations_descend
    assert got["tied_imixer"].status["contraction"] == "proved"
    assert got["et"].status["step_size"] == "failed"  # residual steps
    for r in got.values():
        text = str(r)
        assert text.startswith(f"Lyapunov guarantee: {r.verdict}")
        assert "docs/concepts/guarantees.md" in text and r.holds == (r.verdict == "YES")


def test_one_group_leaky_block_with_explicit_fast_layer_is_yes():
    g = hf.EnergyGraph({"x": hf.NeuronLayer(4, L.Tanh(), tau=2.0),
                        "h": hf.NeuronLayer(3, L.ReLU(), tau=0)},
                       {"W": S.Dense(4, 3)}, {"W": ("x", "h")})
    assert hf.lyapunov_report(hf.derive(g, "x", step="leaky", step_size=0.5)).verdict == "YES"
    assert hf.lyapunov_report(hf.derive(g, "x", step="leaky", step_size=3.0)).status[
        "step_size"] == "failed"  # alpha > tau overshoots


def test_reports_never_change_state():
    blk = hf.blocks.imixer_block(6, 4, act="tanh").train()
    before = {k: v.clone() for k, v in blk.state_dict().items()}
    text = blk.describe()
    rep = hf.lyapunov_report(blk, x=torch.randn(2, 6, 4))
    blk.feedback_lipschitz(warn=False)
    assert blk.training and "Lipschitz bound of F ≤" in text and "ESTIMATE" in str(rep)
    after = blk.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
