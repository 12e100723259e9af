"""EnergyGraph: the public contract, currents by autograd, validation errors, energy descent."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S

D = torch.float64


def contract_graph():
    return hf.EnergyGraph(
        neurons={"v": hf.NeuronLayer(16, L.Identity()),
                 "h": hf.NeuronLayer(8, L.Softmax(beta=2.0))},
        synapses={"W": S.Dense(16, 8)},
        edges={"W": ("v", "h")})


def test_public_contract():
    g = contract_graph()
    xs = g.init_states(batch_size=4)
    assert set(xs) == {"v", "h"} and xs["v"].shape == (4, 16) and xs["h"].shape == (4, 8)
    assert g.energy(xs).shape == (4,)
    terms = g.energy_terms(xs)
    assert set(terms) == {"v", "h", "W"} and all(t.shape == (4,) for t in terms.values())
    cur = g.currents(xs)
    assert set(cur) == {"v", "h"} and cur["v"].shape == (4, 16)


def three_layer(tied=True, dtype=D):
    g = hf.EnergyGraph(
        neurons={"img": hf.NeuronLayer(6, L.Identity()),
                 "hid": hf.NeuronLayer(5, L.Tanh()),
                 "lab": hf.NeuronLayer(3, L.Softmax(beta=1.5))},
        synapses={"W1": S.Dense(6, 5, tied=tied), "W2": S.Dense(5, 3, tied=tied),
                  "b": S.Bias(5)},
        edges={"W1": ("img", "hid"), "W2": ("hid", "lab"), "b": ("hid",)})
    return g.to(dtype)


def test_currents_are_minus_synapse_energy_gradient_and_energy_identity():
    g = three_layer()
    xs = g.init_states(3, std=1.0, dtype=D)
    gs = {n: v.clone().requires_grad_() for n, v in g.activations(xs).items()}
    e = g.synapse_energy(gs).sum()
    grads = torch.autograd.grad(e, list(gs.values()))
    cur = g.currents(xs)
    for (n, _), gr in zip(gs.items(), grads, strict=True):
        torch.testing.assert_close(cur[n], -gr)
        torch.testing.assert_close(g.currents(xs, method="closed_form")[n], -gr)
    # dE/dg = x - I (Legendre shortcut) equals the chain-rule gradient through g = grad L(x)
    xr = {n: v.clone().requires_grad_() for n, v in xs.items()}
    (dx,) = torch.autograd.grad(g.energy(xr).sum(), xr["hid"])
    hess = torch.autograd.functional.jacobian(lambda z: L.Tanh().activation(z), xs["hid"][0])
    torch.testing.assert_close(dx[0], hess @ (xs["hid"][0] - cur["hid"][0]))


def test_graph_energy_gradcheck():
    g = three_layer()
    xs = g.init_states(2, std=1.0, dtype=D)
    names = list(xs)
    leaves = tuple(xs[n].requires_grad_() for n in names)
    assert torch.autograd.gradcheck(lambda *a: g.energy(dict(zip(names, a, strict=True))), leaves)
    # currents are differentiable too (training differentiates through them)
    assert torch.autograd.gradcheck(
        lambda *a: g.currents(dict(zip(names, a, strict=True)))["hid"], leaves)


def test_untied_currents_use_the_back_weights():
    g = three_layer(tied=False)
    xs = g.init_states(2, std=1.0, dtype=D)
    gs = g.activations(xs)
    cur = g.currents(xs)
    w1 = g.synapses["W1"]
    torch.testing.assert_close(cur["img"], gs["hid"] @ w1.weight_back.t() + w1.bias_back)
    torch.testing.assert_close(cur["lab"], g.synapses["W2"].forward_current(gs["hid"]))


def test_currents_float32_and_no_grad_mode():
    g = three_layer(dtype=torch.float32)
    xs = g.init_states(2, std=1.0)
    with torch.no_grad():
        cur = g.currents(xs)
    assert cur["hid"].dtype == torch.float32 and not cur["hid"].requires_grad


@pytest.mark.gpu
def test_currents_on_cuda():
    g = three_layer(dtype=torch.float32).cuda()
    xs = g.init_states(2, std=1.0, device="cuda")
    cur = g.currents(xs)
    assert cur["hid"].is_cuda
    ref = three_layer(dtype=torch.float32)
    ref.load_state_dict({k: v.cpu() for k, v in g.state_dict().items()})
    torch.testing.assert_close(cur["hid"].cpu(), ref.currents({k: v.cpu() for k, v in xs.items()})["hid"])


# ----------------------------------------------------------------------------- errors
def _n(shape=4, **kw):
    return hf.NeuronLayer(shape, L.Identity(), **kw)


@pytest.mark.parametrize("build,match", [
    (lambda: hf.EnergyGraph({"a": _n()}, {"W": S.Dense(4, 4)}, {"W": ("a", "zz")}),
     r"edge 'W' \('a', 'zz'\): unknown neuron\(s\) \['zz'\]"),
    (lambda: hf.EnergyGraph({"a": _n(), "b": _n()}, {"W": S.Dense(4, 4)}, {"W": ("a",)}),
     r"edge 'W' \('a',\): Dense joins 2 layer\(s\), but the edge names 1"),
    (lambda: hf.EnergyGraph({"a": _n(4), "b": _n(3)}, {"W": S.Dense(5, 3)}, {"W": ("a", "b")}),
     r"edge 'W'.*in_dim=5 on axis -1, got shape \(4,\)"),
    (lambda: hf.EnergyGraph({"a": _n(4), "b": _n(2)}, {"W": S.Dense(4, 3)}, {"W": ("a", "b")}),
     r"expected the second layer's shape \(3,\).*got \(2,\)"),
    (lambda: hf.EnergyGraph({"a": _n()}, {"W": S.Dense(4, 4)}, {}),
     r"synapse\(s\) \['W'\] have no edge"),
    (lambda: hf.EnergyGraph({"a": _n()}, {}, {"W": ("a", "a")}),
     r"edge\(s\) \['W'\] name no declared synapse"),
    (lambda: hf.EnergyGraph({"a.b": _n()}, {}, {}), r"without '\.'"),
    (lambda: hf.EnergyGraph({}, {}, {}), "at least one neuron layer"),
    (lambda: hf.EnergyGraph({"a": torch.nn.Linear(2, 2)}, {}, {}),
     "neuron 'a' must be a hopfield NeuronLayer"),
    (lambda: hf.EnergyGraph({"a": _n(), "m": hf.NeuronLayer(4, copy_of="zz")}, {}, {}),
     "copy_of='zz' names no declared neuron"),
    (lambda: hf.EnergyGraph({"a": _n(), "m": hf.NeuronLayer(3, copy_of="a")}, {}, {}),
     r"a copy must have the shape of 'a', expected \(4,\), got \(3,\)"),
    (lambda: hf.EnergyGraph({"a": _n(), "m": hf.NeuronLayer(4, copy_of="a"),
                             "k": hf.NeuronLayer(4, copy_of="m")}, {}, {}),
     "which is itself a copy"),
])
def test_wiring_errors(build, match):
    with pytest.raises((hf.WiringError, TypeError), match=match):
        build()


def test_state_errors():
    g = contract_graph()
    xs = g.init_states(2)
    with pytest.raises(hf.WiringError, match=r"missing \['h'\], extra \[\]"):
        g.energy({"v": xs["v"]})
    with pytest.raises(hf.WiringError, match=r"missing \[\], extra \['q'\]"):
        g.energy({**xs, "q": xs["v"]})
    with pytest.raises(hf.WiringError, match=r"state of neuron 'h': expected shape \(batch, 8\), got \(2, 7\)"):
        g.energy({"v": xs["v"], "h": torch.zeros(2, 7)})
    with pytest.raises(hf.WiringError, match="has batch size 3, others have 2"):
        g.energy({"v": xs["v"], "h": torch.zeros(3, 8)})
    with pytest.raises(ValueError, match="state of neuron 'v' contains NaN or Inf"):
        g.currents({"v": torch.full((2, 16), float("nan")), "h": xs["h"]})
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        g.currents(xs, method="magic")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        g.init_states(0)
    with pytest.raises(ValueError, match="std must be a finite number >= 0"):
        g.init_states(2, std=-1.0)
    with pytest.raises(TypeError, match=r"layer 'v' must be a floating-point tensor, got "
                                        r"torch.int64"):
        g.energy({"v": xs["v"].long(), "h": xs["h"]})
    with pytest.raises(TypeError, match=r"layer 'v' is torch.float64, the weights are "
                                        r"torch.float32; convert the input"):
        hf.dynamics.descend(g, {"v": xs["v"].double(), "h": xs["h"].double()}, steps=1)
    g64 = contract_graph().double()  # a conversion changes what is expected
    g64.energy({k: v.double() for k, v in xs.items()})
    with pytest.raises(hf.WiringError, match=r"unknown target layer\(s\) \['zz'\]"):
        g.currents(xs, targets=["zz"])
    with pytest.raises(TypeError, match="expected axis as an int"):
        S.Dense(4, 3, axis=1.5)


# ----------------------------------------------------------------------------- descent
CONVEX = [lambda d: L.Identity(), lambda d: L.Tanh(), lambda d: L.Sigmoid(),
          lambda d: L.Softmax(beta=1.3), lambda d: L.LayerNorm(d, per_feature=False),
          lambda d: L.SphericalNorm(d), lambda d: L.ReLU(), lambda d: L.Softplus()]


@st.composite
def tied_convex_graphs(draw):
    n = draw(st.integers(2, 4))
    sizes = [draw(st.integers(2, 5)) for _ in range(n)]
    lags = [CONVEX[draw(st.integers(0, len(CONVEX) - 1))](sizes[i]) for i in range(n)]
    neurons = {f"n{i}": hf.NeuronLayer(sizes[i], lags[i], tau=draw(st.sampled_from([1.0, 2.0])))
               for i in range(n)}
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=len(pairs), unique=True))
    synapses, edges = {}, {}
    for k, (i, j) in enumerate(chosen):
        synapses[f"s{k}"] = S.Dense(sizes[i], sizes[j])
        edges[f"s{k}"] = (f"n{i}", f"n{j}")
    if draw(st.booleans()):
        synapses["mem"] = S.HopfieldMemory(sizes[0], 3, beta=2.0)
        edges["mem"] = ("n0",)
    seed = draw(st.integers(0, 2**16))
    return hf.EnergyGraph(neurons, synapses, edges).double(), seed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tied_convex_graphs())
def test_energy_never_increases_under_small_step_descent(case):
    graph, seed = case
    gen = torch.Generator().manual_seed(seed)
    xs = graph.init_states(3, std=1.0, dtype=D, generator=gen)
    _, stats = hf.dynamics.descend(graph, xs, steps=30, step_size=0.02)
    e = stats.energy_matrix()
    assert torch.isfinite(e).all()
    rises = (e[1:] - e[:-1]) / (1 + e[:-1].abs())
    assert rises.max() <= 1e-10, f"energy rose by {rises.max().item():.3g}"
    assert e[-1].mean() < e[0].mean()


def test_descent_clamped_layers_do_not_move_and_fast_layers_settle():
    g = hf.EnergyGraph(
        {"img": hf.NeuronLayer(4, L.Identity(), clamped=True),
         "hid": hf.NeuronLayer(3, L.ReLU(), tau=0),
         "lab": hf.NeuronLayer(2, L.Softmax())},
        {"a": S.Dense(4, 3), "b": S.Dense(3, 2)}, {"a": ("img", "hid"), "b": ("hid", "lab")}).double()
    xs = g.init_states(2, std=1.0, dtype=D)
    out, st = hf.dynamics.descend(g, xs, steps=50, step_size=0.5)
    torch.testing.assert_close(out["img"], xs["img"])
    cur = g.currents(out)
    torch.testing.assert_close(out["hid"], cur["hid"])
    e = st.energy_matrix()
    assert (e[1:] - e[:-1]).max() <= 1e-10


def test_descent_errors():
    g = contract_graph()
    xs = g.init_states(2)
    with pytest.raises(ValueError, match="unknown rule 'sideways'"):
        hf.dynamics.descend(g, xs, rule="sideways")
    with pytest.raises(ValueError, match="step_size must be positive"):
        hf.dynamics.descend(g, xs, step_size=0)
    with pytest.raises(ValueError, match="step_size must be positive and finite, got inf"):
        hf.dynamics.descend(g, xs, step_size=float("inf"), rule="residual")
    for tol in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"tol must be a positive number \(finite, or None\)"):
            hf.dynamics.descend(g, xs, tol=tol)
    with pytest.raises(ValueError, match="steps must be an int >= 0, got True"):
        hf.dynamics.descend(g, xs, steps=True)
    with pytest.raises(ValueError, match=r"step_size=2 exceeds tau=1 of neuron"):
        hf.dynamics.descend(g, xs, step_size=2)
