"""The iteration layout: an implicit component whose couplings all act on one axis is iterated
with that axis last (docs/concepts/fast_layers.md#iteration-layout).

The layout is an execution detail: on drawn declarations of matrix layers (token and channel
couplings, chains, feedback loops, lateral self-loops, tied and untied, pointwise and softmax
activations) the block that moves the axis equals the block that does not, in its outputs and
in every gradient, and it still settles at the energy's equilibrium.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from graphs import matrix_graph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_oracle import check_block

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S

D = torch.float64


def unframed(blk):
    """The same block iterated in the declared layout."""
    out = copy.deepcopy(blk)
    out.plans = tuple(p.replace(components=tuple(dataclasses.replace(c, frame=None)
                                                 for c in p.components)) for p in out.plans)
    return out


def expected_frame(graph, comp):
    """The rule, restated: implicit, every layer pointwise with one number of axes, every
    internal coupling a Dense synapse inside the component on one common axis that is not the
    last."""
    if not comp.implicit:
        return None
    nd = {len(graph.neurons[n].shape) for n in comp.layers}
    if len(nd) != 1 or not all(graph.lagrangian_of(n).pointwise for n in comp.layers):
        return None
    nd = nd.pop()
    syns = {s for n in comp.layers for s, _ in comp.internal[n]}
    if not all(isinstance(graph.synapses[s], S.Dense) and set(graph.edges[s]) <= set(comp.layers)
               for s in syns):
        return None
    axes = {graph.synapses[s].axis % nd for s in syns}
    return axes.pop() if len(axes) == 1 and axes != {nd - 1} else None


def outputs_and_grads(blk, x):
    x = x.clone().requires_grad_(True)
    y = blk(x)
    w = torch.linspace(-1, 1, y.numel(), dtype=D).reshape(y.shape)
    grads = torch.autograd.grad((y * w).sum(), [x, *blk.parameters()], allow_unused=True)
    return y.detach(), grads


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), k=st.integers(0, 4), solver=st.sampled_from([None, "fixed_point",
                                                                     "anderson"]),
       grad=st.sampled_from(["unrolled", "implicit", "phantom"]))
def test_the_moved_layout_changes_no_value_or_gradient(data, k, solver, grad):
    """Fixed k sweeps, or solved to 1e-12 (plain or Anderson; unrolled, implicit or phantom
    gradients): the packed iterate is a permutation of the declared one, which no solver's
    arithmetic depends on beyond rounding."""
    torch.manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    graph, slow = matrix_graph(data)
    opts = dict(max_iter=k) if solver is None else dict(max_iter=200, tol=1e-12, solver=solver,
                                                         grad=grad, backward_tol=1e-12)
    blk = hf.derive(graph, slow, **opts)
    for p in blk.plans:
        for c in p.components:
            assert c.frame == expected_frame(graph, c), (c.layers, c.frame)
    x = torch.randn(3, *graph.neurons["x"].shape, dtype=D)
    y, grads = outputs_and_grads(blk, x)
    y0, grads0 = outputs_and_grads(unframed(blk), x)
    tol = 1e-12 if solver is None or (solver == "fixed_point" and grad == "unrolled") else 1e-9
    torch.testing.assert_close(y, y0, atol=tol, rtol=tol)
    for g, g0 in zip(grads, grads0, strict=True):
        assert (g is None) == (g0 is None)
        if g is not None:
            torch.testing.assert_close(g, g0, atol=tol, rtol=tol)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), step=st.sampled_from(["residual", "leaky"]))
def test_moved_layout_settles_at_the_energy_equilibrium(data, step):
    torch.manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    graph, slow = matrix_graph(data, tied=True)
    check_block(graph, slow, [], step=step, schedule="sequential")


def test_imixer_token_chain_is_iterated_token_axis_last():
    blk = hf.blocks.imixer_block(6, 8, max_iter=3)
    token, channel = blk.plans
    assert [c.frame for c in token.components] == [0]
    assert all(c.frame is None for c in channel.components)


def chain(act, axes=(-2, -2, -2)):
    shapes = {"x": (4, 3), "a": (5, 3), "b": (6, 3)}
    neurons = {"x": hf.NeuronLayer(shapes["x"], L.Tanh()),
               "a": hf.NeuronLayer(shapes["a"], act(), tau=0),
               "b": hf.NeuronLayer(shapes["b"], L.Tanh(), tau=0)}
    dims = {-2: lambda a, b: (shapes[a][0], shapes[b][0]), -1: lambda a, b: (3, 3)}
    syn, edges = {}, {}
    for (a, b), ax in zip([("x", "a"), ("a", "b"), ("b", "a")], axes, strict=True):
        if ax == -1 and shapes[a] != shapes[b]:
            continue
        syn[f"{a}{b}"] = S.Dense(*dims[ax](a, b), axis=ax)
        edges[f"{a}{b}"] = (a, b)
    return hf.EnergyGraph(neurons, syn, edges).double()


class NewAct(L.Tanh):
    def activation(self, x):  # not declared pointwise: the block keeps the declared layout
        return torch.tanh(x)


@pytest.mark.parametrize("act, frame", [(L.GELU, 0), (lambda: L.Softmax(beta=1.0), None),
                                         (NewAct, None)])
def test_the_frame_needs_pointwise_activations(act, frame):
    blk = hf.derive(chain(act), "x", max_iter=2)
    assert [c.frame for c in blk.plans[0].components] == [frame]


def test_framed_currents_run_inside_the_map_only(monkeypatch):
    """k sweeps of iMixer's chain evaluate 2k frame currents (x3, then x2), none elsewhere;
    with autograd currents the declared layout is kept (no frame current at all)."""
    calls = []
    frame_current = S.Dense.frame_current

    def counted(self, target, *gs):
        calls.append(target)
        return frame_current(self, target, *gs)

    monkeypatch.setattr(S.Dense, "frame_current", counted)
    x = torch.randn(2, 6, 8)
    hf.blocks.imixer_block(6, 8, max_iter=3)(x)
    assert calls == [1, 0] * 3
    calls.clear()
    hf.blocks.imixer_block(6, 8, max_iter=3, currents="autograd")(x)
    assert calls == []


def test_builtin_pointwise_activations_commute_with_axis_moves():
    x = torch.randn(3, 4, 5, dtype=D)
    for name in ("identity", "relu", "tanh", "sigmoid", "softplus", "gelu", "exp"):
        lag = L.get(name)
        assert lag.pointwise, name
        torch.testing.assert_close(lag.activation(x.transpose(1, 2)),
                                   lag.activation(x).transpose(1, 2), atol=0, rtol=0)
    assert not L.Softmax().pointwise and not L.LayerNorm(5).pointwise
    assert not NewAct().pointwise


class ScaledDense(S.Dense):
    """A user's Dense whose currents differ from the built-in's (not just its energy)."""

    def current(self, target, g_a, g_b):
        return 0.5 * super().current(target, g_a, g_b)


class LayoutDense(ScaledDense):
    def frame_current(self, target, g_a, g_b):
        return 0.5 * super().frame_current(target, g_a, g_b)


@pytest.mark.parametrize("cls, framed", [(ScaledDense, False), (LayoutDense, True)])
def test_a_dense_subclass_with_its_own_currents_keeps_the_declared_layout(cls, framed):
    """A subclass overriding how currents are computed is iterated as declared, unless it
    also gives the currents with the axis last; either way the block follows its currents."""
    base = chain(L.GELU)
    synapses = dict(base.synapses)
    for name in ("ab", "ba"):
        old = synapses[name]
        synapses[name] = cls(old.in_dim, old.out_dim, axis=old.axis).double()
        synapses[name].load_state_dict(old.state_dict())
    graph = hf.EnergyGraph(dict(base.neurons), synapses, dict(base.edges))
    blk = hf.derive(graph, "x", max_iter=3)
    assert (blk.plans[0].components[0].frame == 0) is framed
    x = torch.randn(2, 4, 3, dtype=D)
    torch.testing.assert_close(blk(x), unframed(blk)(x), atol=1e-12, rtol=1e-12)
    plain = hf.derive(base, "x", max_iter=3)  # the same weights, the built-in currents
    assert not torch.allclose(blk(x), plain(x))
