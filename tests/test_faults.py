"""Faults in declarations and numerics: every invalid graph raises the documented error naming the
culprit; every valid one gives finite energies and currents; NaN/Inf and divergence are caught;
half precision works or says it is unsupported. (Training and file faults: test_faults_train.py.)"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S

LAGS = [lambda d: L.Identity(), lambda d: L.Tanh(), lambda d: L.ReLU(),
        lambda d: L.Softmax(beta=1.2), lambda d: L.GELU(), lambda d: L.LayerNorm(d)]

FAULTS = ["none", "unknown_neuron", "bad_in_dim", "bad_out_dim", "arity", "missing_edge",
          "extra_edge", "bad_copy", "copy_of_copy", "copy_shape", "bad_beta", "bad_tau",
          "bad_shape", "bad_name", "bad_lagrangian_type", "duplicate_name"]


@st.composite
def declarations(draw):
    """A random graph description, possibly with one injected fault (and the expected culprit)."""
    n = draw(st.integers(2, 4))
    sizes = [draw(st.integers(2, 5)) for _ in range(n)]
    neurons = {f"n{i}": (sizes[i], draw(st.integers(0, len(LAGS) - 1))) for i in range(n)}
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=4, unique=True))
    synapses = {f"s{k}": ("dense", sizes[i], sizes[j], (f"n{i}", f"n{j}"))
                for k, (i, j) in enumerate(chosen)}
    fault = draw(st.sampled_from(FAULTS))
    return neurons, synapses, fault, draw(st.integers(0, 2**16))


def build(neurons, synapses, fault):
    """Build the declaration, injecting ``fault``; returns (thunk, expected culprit regex)."""
    ns = {k: hf.NeuronLayer(s, LAGS[li](s)) for k, (s, li) in neurons.items()}
    syn = {k: S.Dense(a, b) for k, (_, a, b, _) in synapses.items()}
    edges = {k: e for k, (_, _, _, e) in synapses.items()}
    first = next(iter(synapses))
    culprit = None
    if fault == "unknown_neuron":
        edges[first] = (edges[first][0], "ghost")
        culprit = r"edge 's0'.*unknown neuron\(s\) \['ghost'\]"
    elif fault == "bad_in_dim":
        syn[first] = S.Dense(synapses[first][1] + 7, synapses[first][2])
        culprit = r"edge 's0'.*in_dim="
    elif fault == "bad_out_dim":
        syn[first] = S.Dense(synapses[first][1], synapses[first][2] + 7)
        culprit = r"edge 's0'.*second layer's shape"
    elif fault == "arity":
        edges[first] = edges[first][:1]
        culprit = r"edge 's0'.*joins 2 layer\(s\), but the edge names 1"
    elif fault == "missing_edge":
        del edges[first]
        culprit = r"synapse\(s\) \['s0'\] have no edge"
    elif fault == "extra_edge":
        edges["zz"] = ("n0", "n1")
        culprit = r"edge\(s\) \['zz'\] name no declared synapse"
    elif fault == "bad_copy":
        ns["mem"] = hf.NeuronLayer(3, copy_of="nobody")
        culprit = r"neuron 'mem': copy_of='nobody'"
    elif fault == "copy_of_copy":
        ns["mem"] = hf.NeuronLayer(ns["n0"].shape, copy_of="n0")
        ns["mem2"] = hf.NeuronLayer(ns["n0"].shape, copy_of="mem")
        culprit = r"neuron 'mem2': copies 'mem', which is itself a copy"
    elif fault == "copy_shape":
        ns["mem"] = hf.NeuronLayer(ns["n0"].shape[0] + 1, copy_of="n0")
        culprit = r"neuron 'mem': a copy must have the shape of 'n0'"
    elif fault == "bad_beta":
        return (lambda: L.Softmax(beta=-0.5)), "positive finite beta"
    elif fault == "bad_tau":
        return (lambda: hf.NeuronLayer(3, L.Identity(), tau=float("nan"))), "tau must be a finite"
    elif fault == "bad_shape":
        return (lambda: hf.NeuronLayer((2, -1), L.Identity())), "must be positive"
    elif fault == "bad_name":
        ns = {"a.b" if k == "n0" else k: v for k, v in ns.items()}
        edges = {k: tuple("a.b" if x == "n0" else x for x in e) for k, e in edges.items()}
        culprit = r"names must be non-empty strings without '\.', got 'a\.b'"
    elif fault == "duplicate_name":
        ns["s0"] = hf.NeuronLayer(2, L.Identity())
        culprit = r"name\(s\) \['s0'\] are used for both a neuron and a synapse"
    elif fault == "bad_lagrangian_type":
        return (lambda: hf.NeuronLayer(3, torch.nn.Tanh())), "must be a hopfield.lagrangians"
    return (lambda: hf.EnergyGraph(ns, syn, edges)), culprit


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(declarations())
def test_fuzzed_declarations(decl):
    neurons, synapses, fault, seed = decl
    thunk, culprit = build(neurons, synapses, fault)
    if culprit is not None:
        with pytest.raises((hf.WiringError, ValueError, TypeError), match=culprit):
            thunk()
        return
    graph = thunk().double()
    gen = torch.Generator().manual_seed(seed)
    xs = graph.init_states(2, std=1.0, dtype=torch.float64, generator=gen)
    assert torch.isfinite(graph.energy(xs)).all()
    assert all(torch.isfinite(c).all() for c in graph.currents(xs).values())
    # an invalid state dict is refused with the neuron's name
    bad = dict(xs)
    bad["n0"] = bad["n0"].clone()
    bad["n0"][0, 0] = float("inf")
    with pytest.raises(ValueError, match="state of neuron 'n0' contains NaN or Inf"):
        graph.energy(bad)


def test_nan_images_are_rejected_by_models():
    model = hf.models.create_model("mixer_tiny", depth=1)
    x = torch.randn(2, 1, 28, 28)
    x[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"input images contain NaN or Inf \(1 of 1568 values\)"):
        model(x)
    with pytest.raises(ValueError, match=r"expected images shaped \(batch, 1, 28, 28\)"):
        model(torch.randn(2, 3, 28, 28))


def test_solver_divergence_stops_with_a_diagnostic():
    block = hf.blocks.imixer_block(8, 8, 8, 8, coeff=None, solver="fixed_point", tol=1e-6,
                                   max_iter=200, act="relu")
    with torch.no_grad():
        fb = block.graph.synapses["token_feedback"]
        fb.weight.copy_(3.0 * torch.eye(8))  # |F| grows 9x per iteration: no fixed point nearby
        fb.weight_back.copy_(3.0 * torch.eye(8))
        fb.bias.fill_(1.0)
    with pytest.raises(hf.dynamics.DivergenceError, match="apply spectral normalisation"):
        block(torch.randn(2, 8, 8))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["mixer_tiny", "imixer_tiny", "vit_tiny", "et_tiny"])
def test_half_precision_works(name, dtype):
    model = hf.models.create_model(name, depth=1).to(dtype)
    y = model(torch.randn(2, 1, 28, 28, dtype=dtype))
    assert y.dtype == dtype and torch.isfinite(y).all()
    y.float().sum().backward()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_solvers(dtype):
    block = hf.blocks.imixer_block(8, 8, solver="anderson", tol=1e-2, max_iter=30).to(dtype)
    assert torch.isfinite(block(torch.randn(2, 8, 8, dtype=dtype))).all()
    with pytest.raises(ValueError, match="broyden: .* is not supported"):
        hf.dynamics.broyden(lambda z: z, torch.zeros(2, 3, dtype=dtype))
