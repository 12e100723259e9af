"""Synapses: energies (gradcheck), closed-form currents pinned to autograd, tied/untied halves."""

import pytest
import torch

import hopfield as hf
from hopfield import synapses as S

D = torch.float64


def cases():
    """(name, synapse, per-sample layer shapes) for every synapse type, tied and untied."""
    out = []
    for tied in (True, False):
        t = "tied" if tied else "untied"
        out += [
            (f"dense_last_{t}", S.Dense(5, 3, tied=tied), [(4, 5), (4, 3)]),
            (f"dense_token_{t}", S.Dense(4, 6, axis=-2, tied=tied), [(4, 5), (6, 5)]),
            (f"dense_axis0_{t}", S.Dense(4, 2, axis=0, tied=tied), [(4, 5), (2, 5)]),
            (f"conv_{t}", S.Conv(2, 3, 3, stride=2, padding=1, tied=tied), [(2, 7, 7), (3, 4, 4)]),
            (f"memory_{t}", S.HopfieldMemory(5, 7, beta=1.3, tied=tied), [(4, 5)]),
            (f"mha_memory_{t}", S.MultiHeadAttention(6, 2, memory=True, tied=tied, bias=True),
             [(4, 6), (5, 6)]),
        ]
    out += [
        ("mha_self_tied", S.MultiHeadAttention(6, 2, memory=False, tied=True), [(4, 6)]),
        ("mha_self_untied", S.MultiHeadAttention(6, 3, memory=False, tied=False), [(4, 6)]),
        ("bias", S.Bias((4, 5)), [(4, 5)]),
        ("function_3ary", S.FunctionSynapse(
            lambda a, b, c, w: -(a.sum(-1) * b.sum(-1) * (c * w).sum(-1)), 3,
            params={"w": torch.randn(2)}), [(3,), (3,), (2,)]),
    ]
    return out


CASES = {name: (syn, shapes) for name, syn, shapes in cases()}


def _setup(name, batch=2):
    syn, shapes = CASES[name]
    syn = syn.double()
    with torch.no_grad():
        for p in syn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    syn.check_shapes(shapes, name)
    gs = [torch.randn(batch, *s, dtype=D) for s in shapes]
    return syn, gs


@pytest.mark.parametrize("name", sorted(CASES))
def test_energy_shape_and_gradcheck(name):
    syn, gs = _setup(name)
    assert syn.energy(*gs).shape == (2,)
    gs = [g.requires_grad_() for g in gs]
    assert torch.autograd.gradcheck(lambda *a: syn.energy(*a), tuple(gs))


@pytest.mark.parametrize("name", sorted(CASES))
def test_closed_form_current_matches_autograd(name):
    syn, gs = _setup(name)
    for i in range(len(gs)):
        closed = syn.current(i, *gs)
        if closed is None:
            continue
        if syn.tied:
            leaf = [g.clone().requires_grad_() for g in gs]
            (ref,) = torch.autograd.grad(syn.energy(*leaf).sum(), leaf[i])
            ref = -ref
        else:
            probe = torch.zeros_like(gs[i], requires_grad=True)
            (ref,) = torch.autograd.grad(syn.half_energy(i, probe, *gs).sum(), probe)
            ref = -ref
        torch.testing.assert_close(closed, ref, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("name", ["dense_last_untied", "dense_token_untied", "conv_untied",
                                  "memory_untied"])
def test_untied_with_tied_weights_is_the_energy_gradient(name):
    syn, gs = _setup(name)
    with torch.no_grad():
        if isinstance(syn, S.Dense):
            syn.weight_back.copy_(syn.weight.t())
        elif isinstance(syn, S.Conv):
            syn.weight_back.copy_(syn.weight)
        else:
            syn.values.copy_(syn.patterns)
    for i in range(len(gs)):
        leaf = [g.clone().requires_grad_() for g in gs]
        (ref,) = torch.autograd.grad(syn.energy(*leaf).sum(), leaf[i])
        if isinstance(syn, S.Dense) and i == 0 and syn.bias_back is not None:
            pass  # the bias term -<c, g_A> is in both
        torch.testing.assert_close(syn.current(i, *gs), -ref, atol=1e-12, rtol=1e-10)


def test_tied_attention_value_is_wq_transpose_k():
    """docs/concepts/synapses.md#attention: tied, the attention current is sum_B softmax(beta Q.K)
    W_Q^T K_B."""
    syn = S.MultiHeadAttention(4, 1, memory=True, tied=True).double()
    gq, gk = torch.randn(1, 3, 4, dtype=D), torch.randn(1, 5, 4, dtype=D)
    wq, wk = syn.in_proj_weight[:4], syn.in_proj_weight[4:]
    q, k = gq @ wq.t(), gk @ wk.t()
    a = torch.softmax(syn.beta * q @ k.transpose(-1, -2), -1)
    torch.testing.assert_close(syn.current(0, gq, gk), a @ k @ wq)


def test_untied_attention_is_standard_multihead_attention():
    syn = S.MultiHeadAttention(8, 2, memory=True, tied=False, bias=True).double()
    mha = torch.nn.MultiheadAttention(8, 2, bias=True, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(syn.in_proj_weight)
        mha.in_proj_bias.copy_(syn.in_proj_bias)
        mha.out_proj.weight.copy_(syn.out_proj.weight)
        mha.out_proj.bias.copy_(syn.out_proj.bias)
    g = torch.randn(3, 5, 8, dtype=D)
    torch.testing.assert_close(syn.current(0, g, g), mha(g, g, g, need_weights=False)[0])


def test_probe_gives_exact_training_gradients_where_stop_gradient_fails():
    """docs/concepts/untying.md#stop-gradient-trap: the probe keeps the input gradient exact; an sg
    split does not."""
    dense = S.Dense(4, 6, axis=-2, tied=False).double()
    gelu = hf.lagrangians.GELU()
    x = torch.randn(2, 4, 3, dtype=D, requires_grad=True)

    def reference(x):  # x + W2 gelu(W1 x + b1) + b2 on the token axis
        h = dense.forward_current(x)
        return x + dense.backward_current(gelu.activation(h))

    graph = hf.EnergyGraph({"v": hf.NeuronLayer((4, 3), hf.lagrangians.Identity()),
                            "h": hf.NeuronLayer((6, 3), gelu, tau=0)},
                           {"s": dense}, {"s": ("v", "h")})

    def derived(x):
        h = graph.currents(gs={"v": x, "h": torch.zeros(2, 6, 3, dtype=D)}, targets=["h"],
                           method="autograd")["h"]
        cur = graph.currents(gs={"v": x, "h": gelu.activation(h)}, targets=["v"],
                             method="autograd")["v"]
        return x + cur

    def stop_gradient(x):  # one energy with sg halves: right forward, wrong gradients
        xr = x.detach().requires_grad_() if not x.requires_grad else x
        h = dense.forward_current(xr)
        g_h = gelu.activation(h)
        with torch.enable_grad():
            u = g_h.detach().requires_grad_()
            e = -(u * dense.forward_current(xr.detach())).sum() - (
                (xr * dense.backward_current(g_h.detach())).sum())
            (cur,) = torch.autograd.grad(e, xr, create_graph=True)
        return x - cur

    w = torch.randn(2, 4, 3, dtype=D)
    (g_ref,) = torch.autograd.grad((reference(x) * w).sum(), x)
    (g_der,) = torch.autograd.grad((derived(x) * w).sum(), x)
    torch.testing.assert_close(derived(x), reference(x))
    torch.testing.assert_close(g_der, g_ref, atol=1e-12, rtol=1e-10)
    (g_sg,) = torch.autograd.grad((stop_gradient(x) * w).sum(), x)
    torch.testing.assert_close(stop_gradient(x), reference(x))
    assert (g_sg - g_ref).abs().max() > 1e-3


@pytest.mark.parametrize("bad,match", [
    (lambda: S.Dense(0, 3), "positive sizes"),
    (lambda: S.HopfieldMemory(4, 3, beta=0), "positive finite beta"),
    (lambda: S.MultiHeadAttention(4, 2, beta=-1.0), "positive finite beta"),
    (lambda: S.MultiHeadAttention(4, 0), "num_heads >= 1"),
    (lambda: S.FunctionSynapse("not callable", 1), "fn must be callable"),
    (lambda: S.FunctionSynapse(lambda g: g.sum(-1), 0), "arity must be a positive int"),
])
def test_construction_errors(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bad()


def test_function_synapse_checks_its_output_shape():
    syn = S.FunctionSynapse(lambda g: g, 1)
    with pytest.raises(hf.WiringError, match="one energy per sample"):
        syn.energy(torch.randn(2, 3))
