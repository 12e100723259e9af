"""The compiled descent in chunks (hopfield.dynamics.descend_compiled, hopfield.dynamics.chunk).

The reference is :func:`hopfield.dynamics.descend`: on random declarations (tests/graphs.py),
for every chunk length, step count, rule and tolerance, the chunked descent returns the same
states, the same number of steps and convergence flag, and the same stats (energies, per-term
energies, gradient norms) to round-off (docs/concepts/dynamics.md#compiled-descent). The chunk
runs eagerly here (``compile=False``: the same function ``torch.compile`` receives); the
compiled tests below compile a small graph once per chunk length.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from graphs import vector_graph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S
from hopfield.dynamics.chunk import make_descent_chunk


def _assert_same(graph, xs, *, steps, step_size, rule, tol, chunk, compile=False, record=True):
    a, sa = hf.dynamics.descend(graph, xs, steps=steps, step_size=step_size, rule=rule, tol=tol,
                                record=record)
    b, sb = hf.dynamics.descend_compiled(graph, xs, steps=steps, step_size=step_size, rule=rule,
                                         tol=tol, chunk=chunk, compile=compile, record=record)
    assert (sb.steps, sb.converged) == (sa.steps, sa.converged)
    for n in a:
        torch.testing.assert_close(b[n], a[n], rtol=1e-12, atol=1e-12, msg=f"layer {n}")
    assert len(sb.energy) == len(sa.energy) == len(sb.grad_norm) == len(sb.energy_terms)
    if sa.energy:
        torch.testing.assert_close(sb.energy_matrix(), sa.energy_matrix(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(torch.stack(sb.grad_norm), torch.stack(sa.grad_norm),
                                   rtol=1e-10, atol=1e-10)
        for ta, tb in zip(sa.energy_terms, sb.energy_terms, strict=True):
            assert list(ta) == list(tb)
            for k in ta:
                torch.testing.assert_close(tb[k], ta[k], rtol=1e-10, atol=1e-10, msg=k)
    return sa


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), steps=st.integers(0, 11), chunk=st.integers(1, 5),
       rule=st.sampled_from(["leaky", "residual"]), stop=st.sampled_from([None, "mid", "never"]),
       record=st.booleans())
def test_chunked_descent_equals_descend_on_random_declarations(data, steps, chunk, rule, stop,
                                                               record):
    graph, _, _ = vector_graph(data, width=3)
    step_size = 0.1 if rule == "leaky" else 0.05
    xs = graph.init_states(3, std=1.0, generator=torch.Generator().manual_seed(steps),
                           dtype=torch.float64)
    tol = None
    if stop is not None:  # a tolerance met at a step drawn inside the run, or never
        _, ref = hf.dynamics.descend(graph, xs, steps=steps, step_size=step_size, rule=rule)
        norms = [float(g.max()) for g in ref.grad_norm[1:]]
        k = data.draw(st.integers(0, max(len(norms) - 1, 0)), label="stop step")
        tol = norms[k] * 1.000001 if stop == "mid" and norms else 1e-300
    sa = _assert_same(graph, xs, steps=steps, step_size=step_size, rule=rule, tol=tol,
                      chunk=chunk, record=record)
    if stop == "never":
        assert not sa.converged


def test_a_tolerance_met_inside_a_chunk_freezes_the_rest_of_it(f64):
    graph = _small_graph()
    xs = graph.init_states(2, std=1.0)
    _, ref = hf.dynamics.descend(graph, xs, steps=9, step_size=0.5)
    norms = [float(g.max()) for g in ref.grad_norm]  # norms[j]: after step j

    def first_hit(tol):
        return next(j for j in range(1, len(norms)) if norms[j] < tol)

    # a tolerance first met after step 5, 6 or 7: inside the second chunk of 4
    tol = next(t for t in (n * 1.000001 for n in norms[1:]) if 5 <= first_hit(t) <= 7)
    hit = first_hit(tol)
    fn = make_descent_chunk(graph, length=4, step_size=0.5, record=False, with_tol=True)
    cur = graph.currents(gs=graph.activations(graph.fill_copies(xs)), method="auto")
    done = torch.zeros((), dtype=torch.bool)
    x1, c1, done, out = fn(graph.fill_copies(xs), cur, done, torch.tensor(tol))
    assert out["active"].tolist() == [True] * 4 and not bool(done)
    x2, _, done, out = fn(x1, c1, done, torch.tensor(tol))
    assert out["active"].tolist() == [j <= hit for j in range(5, 9)] and bool(done)
    a, sa = hf.dynamics.descend(graph, xs, steps=9, step_size=0.5, tol=tol)
    assert sa.steps == hit and sa.converged
    for n in a:
        torch.testing.assert_close(x2[n], a[n], rtol=0, atol=0)


def _small_graph():
    torch.manual_seed(0)
    return hf.EnergyGraph(
        neurons={"image": hf.NeuronLayer(7, L.Identity(), clamped=True),
                 "hidden": hf.NeuronLayer(5, L.ReLU()),
                 "fast": hf.NeuronLayer(4, L.Tanh(), tau=0.0),
                 "label": hf.NeuronLayer(3, L.Softmax())},
        synapses={"W1": S.Dense(7, 5), "W2": S.Dense(5, 3), "W3": S.Dense(5, 4, bias=False)},
        edges={"W1": ("image", "hidden"), "W2": ("hidden", "label"),
               "W3": ("hidden", "fast")}).double()


# ---------------------------------------------------------------------- energies from currents
@settings(max_examples=40)
@given(kind=st.sampled_from(["dense", "conv"]), bias=st.booleans(), tied=st.booleans(),
       axis=st.sampled_from([-1, 0]), seed=st.integers(0, 10_000))
def test_bilinear_energies_read_off_their_currents(kind, bias, tied, axis, seed):
    gen = torch.Generator().manual_seed(seed)
    if kind == "dense":
        syn = S.Dense(4, 3, axis=axis, bias=bias, tied=tied).double()
        shape_a, shape_b = ((4, 2), (3, 2)) if axis == 0 else ((2, 4), (2, 3))
    else:
        syn = S.Conv(2, 3, 3, padding=1, stride=1 + seed % 2, bias=bias, tied=tied).double()
        shape_a = (2, 5, 5)
        shape_b = (3, 5, 5) if syn.stride == 1 else (3, 3, 3)
        syn.check_shapes([shape_a, shape_b], "test")
    with torch.no_grad():
        for p in syn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    ga = torch.randn(2, *shape_a, generator=gen, dtype=torch.float64)
    gb = torch.randn(2, *shape_b, generator=gen, dtype=torch.float64)
    want = syn.energy(ga, gb)
    for slot in (0, 1):
        got = syn.energy_from_current(slot, syn.current(slot, ga, gb), ga, gb)
        if slot == 0 and not tied:
            assert got is None  # the untied back current is not part of the energy
        else:
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_currents_and_energies_equal_currents_and_energy_terms(data):
    graph, _, _ = vector_graph(data, width=3)
    xs = graph.init_states(2, std=1.0, generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64)
    gs = graph.activations(xs)
    cur, syn_e = graph.currents_and_energies(gs)
    want_cur = graph.currents(gs=gs, method="auto")
    terms = graph.energy_terms(xs)
    assert list(cur) == list(want_cur) and list(syn_e) == list(graph.edges)
    for n in cur:
        torch.testing.assert_close(cur[n], want_cur[n], rtol=0, atol=1e-14)
    for s in syn_e:
        torch.testing.assert_close(syn_e[s], terms[s], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- arguments
def test_bad_chunk_and_tol_are_refused():
    graph = _small_graph()
    xs = graph.init_states(2, std=1.0, dtype=torch.float64)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="chunk must be an int >= 1"):
            hf.dynamics.descend_compiled(graph, xs, chunk=bad, compile=False)
    for bad in (0, -1e-3, "1e-3"):
        with pytest.raises(ValueError, match="tol must be a positive number"):
            hf.dynamics.descend_compiled(graph, xs, tol=bad, compile=False)


# ---------------------------------------------------------------------- compiled
def test_compiled_chunks_equal_descend_with_stats_and_tolerance(f64, needs_compile):
    graph = _small_graph()
    xs = graph.init_states(3, std=1.0)
    _, ref = hf.dynamics.descend(graph, xs, steps=6, step_size=0.5)
    norms = [float(g.max()) for g in ref.grad_norm]
    tol = norms[5] * 1.000001  # first met after step 5
    assert min(norms[1:5]) > tol, "pick a graph whose tolerance is first met at step 5"
    torch._dynamo.utils.counters.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", hf.dynamics.CompileFallbackWarning)
        for _ in range(2):  # the second call reuses both graphs
            sa = _assert_same(graph, xs, steps=6, step_size=0.5, rule="leaky", tol=tol,
                              chunk=3, compile=True)
    assert sa.steps == 5 and sa.converged  # inside the second chunk
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # no recompiles


def test_compiled_descent_under_grad_compiles_each_chunk_once(f64, needs_compile):
    graph = _small_graph()
    xs = graph.init_states(2, std=1.0)
    torch._dynamo.utils.counters.clear()
    out, _ = hf.dynamics.descend_compiled(graph, xs, steps=6, chunk=2, record=False)
    ref, _ = hf.dynamics.descend(graph, xs, steps=6, record=False)
    (out["label"].sum() + out["hidden"].sum()).backward()
    got = [None if p.grad is None else p.grad.clone() for p in graph.parameters()]
    graph.zero_grad(set_to_none=True)
    (ref["label"].sum() + ref["hidden"].sum()).backward()
    assert sum(g is not None for g in got) >= 4
    for g, p in zip(got, graph.parameters(), strict=True):
        if g is None:
            assert p.grad is None
        else:
            torch.testing.assert_close(g, p.grad, rtol=1e-10, atol=1e-12)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


@pytest.mark.gpu
def test_compiled_descent_on_cuda_replays_cuda_graphs():
    torch.manual_seed(0)
    graph = hf.EnergyGraph(
        neurons={"image": hf.NeuronLayer(64, L.Identity()), "hidden": hf.NeuronLayer(32, L.ReLU()),
                 "label": hf.NeuronLayer(10, L.Softmax())},
        synapses={"W1": S.Dense(64, 32, bias=False), "W2": S.Dense(32, 10, bias=False)},
        edges={"W1": ("image", "hidden"), "W2": ("hidden", "label")}).cuda()
    xs = graph.init_states(16, std=1.0, device="cuda")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", hf.dynamics.CompileFallbackWarning)
        a, sa = hf.dynamics.descend_compiled(graph, xs, steps=10, chunk=4)  # CUDA graphs
        a2, _ = hf.dynamics.descend_compiled(graph, xs, steps=10, chunk=4)  # replayed
        b, sb = hf.dynamics.descend(graph, xs, steps=10)
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(a2[n], a[n], rtol=0, atol=0)
    torch.testing.assert_close(sa.energy_matrix(), sb.energy_matrix(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", ["mixer", "vit", "imixer", "et"])
def test_chunked_descent_equals_descend_on_catalogue_graphs(f64, name):
    """Attention, memory copies, layer norms, spectral-normed feedback: the catalogue graphs."""
    build = {"mixer": lambda: hf.blocks.mixer_graph(5, 8),
             "vit": lambda: hf.blocks.vit_graph(5, 8, 2),
             "imixer": lambda: hf.blocks.imixer_graph(5, 8),
             "et": lambda: hf.blocks.et_graph(5, 8, 2)}
    # eval mode: in training mode every read of a spectral-normed weight runs power iterations,
    # so the two loops (which read the weights a different number of times) would differ
    graph = build[name]()[0].double().eval()
    xs = graph.init_states(2, std=0.5)
    _assert_same(graph, xs, steps=5, step_size=0.1, rule="leaky", tol=None, chunk=2)
