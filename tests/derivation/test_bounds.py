"""The constants behind the guarantees are rigorous: coupling norms, the smoothness M, activation
slopes and contraction bounds dominate what they bound (docs/concepts/guarantees.md)."""

import math

import pytest
import torch
from torch.nn import functional as F

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S
from hopfield.derivation.bounds import (
    activation_lipschitz,
    builtin_synapse,
    conv_norm_bound,
    self_coupling,
    smoothness,
)
from hopfield.derivation.contraction import contraction_bound, contraction_estimate

D = torch.float64


def _power_norm(apply, shape, iters=60):
    """Power-iteration estimate of the norm of a linear map (a lower bound in the limit)."""
    v = torch.randn(1, *shape, dtype=D)
    for _ in range(iters):
        with torch.enable_grad():
            z = v.clone().requires_grad_(True)
            out = apply(z)
            (back,) = torch.autograd.grad(out, z, out)
        v = back / back.norm()
    return float(apply(v).norm())


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1), (3, 2)])
def test_conv_bound_dominates_the_operator_norm(stride, padding):
    w = torch.randn(3, 2, 3, 3, dtype=D)
    est = _power_norm(lambda x: F.conv2d(x, w, stride=stride, padding=padding), (2, 7, 7))
    assert est <= conv_norm_bound(w) + 1e-9


def test_smoothness_of_bilinear_loops_and_memories():
    dense = S.Dense(4, 4).double()
    with torch.no_grad():
        dense.weight.copy_(torch.randn(4, 4, dtype=D))
    w = dense.weight.detach()
    assert self_coupling(dense) == pytest.approx(float(torch.linalg.matrix_norm(w + w.t(), ord=2)))
    mem = S.HopfieldMemory(5, 7, beta=1.7).double()
    bound = self_coupling(mem)
    for _ in range(20):  # the Hessian of the log-sum-exp energy never exceeds beta |xi|^2 / 2
        g = 3 * torch.randn(5, dtype=D)
        hess = torch.autograd.functional.hessian(lambda v: mem.energy(v[None])[0], g)
        assert float(torch.linalg.matrix_norm(hess, ord=2)) <= bound + 1e-12
    g = hf.EnergyGraph({"a": hf.NeuronLayer(4, L.Tanh()), "b": hf.NeuronLayer(4, L.Tanh()),
                        "c": hf.NeuronLayer(4, L.Tanh(), clamped=True)},
                       {"ab": S.Dense(4, 4), "bc": S.Dense(4, 4)},
                       {"ab": ("a", "b"), "bc": ("b", "c")})
    m, _ = smoothness(g, ["a", "b"], list(g.edges))
    assert m == pytest.approx(float(torch.linalg.matrix_norm(g.synapses["ab"].weight.detach(),
                                                                ord=2)), rel=1e-6)
    assert smoothness(g, ["a"], list(g.edges))[0] == 0.0  # affine in a single layer


def test_activation_slopes():
    x = torch.randn(200, 6, dtype=D, requires_grad=True)
    for lag in (L.Tanh(), L.Sigmoid(), L.ReLU(), L.Softmax(beta=2.5), L.GELU(),
                L.LayerNorm(6, eps=1e-2, per_feature=False)):
        lag = lag.double()
        jac = torch.func.vmap(torch.func.jacrev(lambda v, lag=lag: lag.activation(v[None])[0]))(x)
        slope = torch.linalg.matrix_norm(jac.detach(), ord=2).max()
        assert float(slope) <= activation_lipschitz(lag) + 1e-9, type(lag).__name__
    assert activation_lipschitz(L.LayerNorm(6, eps=1e-6)) == pytest.approx(1e3)

    class Odd(L.Tanh):
        def activation(self, x):
            return torch.tanh(3 * x)

    class Declared(Odd):
        lipschitz = 3.0

    assert activation_lipschitz(Odd()) is None  # Tanh's slope no longer applies
    assert activation_lipschitz(Declared()) == 3.0  # the user's own declaration
    assert builtin_synapse(S.Dense(2, 2)) is S.Dense
    assert builtin_synapse(S.FunctionSynapse(lambda g: g.sum(-1), 1)) is None


def test_contraction_bound_generalises_feedback_lipschitz_and_dominates_the_estimate():
    blk = hf.blocks.tied_imixer_block(6, 4, max_iter=30, tol=1e-10).double().eval()
    comp = blk.plans[0].components[0]
    w = blk.graph.synapses["token_feedback"].weight.detach()
    bound, _, rigorous = contraction_bound(blk.graph, comp)
    assert rigorous and bound == pytest.approx(float(torch.linalg.matrix_norm(w, ord=2)) ** 2)
    assert blk.feedback_lipschitz(warn=False)["token mixing (iMLP)/0"] == pytest.approx(bound)
    est = contraction_estimate(blk, torch.randn(3, 6, 4, dtype=D))
    assert 0 < est <= bound + 1e-9
    # a three-layer fast chain: the old two-layer formula had no answer, the sweep bound has one
    g = hf.EnergyGraph({"x": hf.NeuronLayer(4, L.Tanh()),
                        "a": hf.NeuronLayer(3, L.Tanh(), tau=0),
                        "b": hf.NeuronLayer(3, L.Sigmoid(), tau=0),
                        "c": hf.NeuronLayer(2, L.Tanh(), tau=0)},
                       {"xa": S.Dense(4, 3), "ab": S.Dense(3, 3), "bc": S.Dense(3, 2)},
                       {"xa": ("x", "a"), "ab": ("a", "b"), "bc": ("b", "c")}).double()
    chain = hf.derive(g, "x", tol=1e-12, max_iter=200)
    comp = chain.plans[0].components[0]
    assert comp.implicit and set(comp.layers) == {"a", "b", "c"}
    bound, _, _ = contraction_bound(g, comp)
    assert bound is not None and math.isfinite(bound)
    est = contraction_estimate(chain, torch.randn(2, 4, dtype=D))
    assert est <= bound + 1e-9
