"""derive(): plans read from the graph, the iMixer loop reproduced exactly, energy descent of
tied implicit groups, invertibility, gradient modes, reports and errors."""

import pytest
import torch
from torch.nn import functional as F

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S

D = torch.float64


def _perturb(block, scale=0.1):
    with torch.no_grad():
        for name, p in block.named_parameters():
            if "bias" in name or "lagrangian" in name or "group_lagrangians" in name:
                p.add_(scale * torch.randn_like(p))
    return block


def test_plans_explicit_and_implicit_groups():
    mixer = hf.blocks.mixer_block(8, 6)
    assert [len(p.components) for p in mixer.plans] == [1, 1]
    assert all(not c.implicit for p in mixer.plans for c in p.components)
    imixer = hf.blocks.imixer_block(8, 6)
    comp = imixer.plans[0].components[0]
    assert comp.implicit and comp.layers == ("x2", "x3")
    assert comp.state == ("x2",) and comp.eliminated == ("x3",)
    vit = hf.blocks.vit_block(8, 6, 2)
    assert vit.plans[0].copies == ("mem",) and vit.plans[0].components == ()
    et = hf.blocks.et_block(8, 6, num_heads=2)
    assert et.repeats == 4 and not et.plans[0].components[0].implicit


def hand_imixer_token_update(block, x, k):
    """The published iMLP loop, written out by hand with the block's own weights."""
    g = block.graph
    tin, tfb = g.synapses["token_in"], g.synapses["token_feedback"]
    ln = g.neurons["x"].lagrangian
    with torch.nn.utils.parametrize.cached():
        w32, w23 = tfb.weight, tfb.weight_back
        h = F.layer_norm(x, (x.shape[-1],), ln.weight, ln.bias, ln.eps).transpose(1, 2)
        x_in = F.linear(h, tin.weight, tin.bias)
        z = x_in
        for _ in range(k):
            z = F.linear(F.gelu(F.linear(F.gelu(z), w32, tfb.bias)), w23, tfb.bias_back) + x_in
        return x + F.linear(F.gelu(z), tin.weight_back, tin.bias_back).transpose(1, 2)


@pytest.mark.parametrize("k", [0, 1, 2, 4])
def test_k_plain_iterations_equal_the_hand_unrolled_loop_exactly(k):
    block = _perturb(hf.blocks.imixer_block(10, 8, max_iter=k).double()).eval()
    x = torch.randn(3, 10, 8, dtype=D)
    plan = block.plans[0]
    with torch.nn.utils.parametrize.cached():
        ours = block.group_step(plan, x, {})
    assert torch.equal(ours, hand_imixer_token_update(block, x, k))


def test_k0_is_exactly_the_mixer_token_mlp():
    imixer = _perturb(hf.blocks.imixer_block(10, 8, max_iter=0).double()).eval()
    mixer = hf.blocks.mixer_block(10, 8, token_dim=4).double().eval()
    mixer.graph.synapses["token_mlp"].load_state_dict(imixer.graph.synapses["token_in"].state_dict())
    mixer.graph.neurons["x"].lagrangian.load_state_dict(imixer.graph.neurons["x"].lagrangian.state_dict())
    x = torch.randn(2, 10, 8, dtype=D)
    torch.testing.assert_close(imixer.group_step(imixer.plans[0], x, {}),
                               mixer.group_step(mixer.plans[0], x, {}), atol=0, rtol=0)


def group_energy(block, x, states):
    """Energy of the token group at iterate x2 with x3 at its conditional optimum (x1 clamped)."""
    g = block.graph
    tin, tfb = g.synapses["token_in"], g.synapses["token_feedback"]
    lag_v, lag2, lag3 = (g.lagrangian_of(n) for n in ("x", "x2", "x3"))
    x2 = states["x2"]
    g1, g2 = lag_v.activation(x), lag2.activation(x2)
    x3 = tfb.forward_current(g2)
    g3 = lag3.activation(x3)
    return (g.neurons["x2"].energy(x2, g2, lag2) + g.neurons["x3"].energy(x3, g3, lag3)
            + tin.energy(g1, g2) + tfb.energy(g2, g3))


@pytest.mark.parametrize("seed", range(4))
def test_tied_convex_implicit_group_energy_never_increases(seed):
    torch.manual_seed(seed)
    block = _perturb(hf.blocks.tied_imixer_block(10, 8, max_iter=12, coeff=None).double(), 0.5).eval()
    with torch.no_grad():  # a strong feedback makes the iteration non-trivial
        block.graph.synapses["token_feedback"].weight.mul_(2.0)
    x = torch.randn(4, 10, 8, dtype=D)
    with torch.no_grad():
        _, trace = block.run(x, trace=True)
    (solve,) = trace.steps[0].solves  # the token group's iterates
    e = torch.stack([group_energy(block, x, st) for st in solve.iterates])
    diffs = e[1:] - e[:-1]
    assert diffs.max() <= 1e-10 * e.abs().max(), diffs.max()
    assert diffs.min() < -1e-6  # and it does move


def test_residual_map_inverts_the_solution():
    block = _perturb(hf.blocks.imixer_block(10, 8, solver="anderson", tol=1e-12,
                                            max_iter=200).double()).eval()
    x = torch.randn(2, 10, 8, dtype=D)
    z, y, stats = block.solve_implicit(x)
    assert stats.converged
    torch.testing.assert_close(block.residual_map(z, x), y, atol=1e-10, rtol=0)
    # and (1 - F) is not the identity: the input differs from the solution
    assert (z - y).abs().max() > 1e-3
    with pytest.raises(ValueError, match="has 0 implicit component"):
        block.residual_map(z, x, group=1)


@pytest.mark.parametrize("grad", ["implicit", "phantom"])
def test_gradient_modes_of_an_implicit_block(grad):
    torch.manual_seed(1)
    common = dict(solver="anderson", tol=1e-12, max_iter=300)
    ref = hf.blocks.imixer_block(10, 8, **common).double().eval()
    blk = hf.blocks.imixer_block(10, 8, grad=grad, **common).double().eval()
    blk.load_state_dict(ref.state_dict())
    x = torch.randn(2, 10, 8, dtype=D, requires_grad=True)
    w = torch.randn(2, 10, 8, dtype=D)
    gr = torch.autograd.grad((ref(x) * w).sum(), [x, *ref.parameters()])
    gb = torch.autograd.grad((blk(x) * w).sum(), [x, *blk.parameters()])
    if grad == "implicit":  # equals unrolled at convergence
        for a, b in zip(gb, gr, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    else:  # phantom: an approximation, close but not equal
        rel = (gb[0] - gr[0]).norm() / gr[0].norm()
        assert 0 < rel < 0.5


def test_autograd_and_closed_form_currents_agree_with_gradients():
    for make in (lambda: hf.blocks.imixer_block(6, 4, max_iter=2),
                 lambda: hf.blocks.vit_block(6, 4, 2),
                 lambda: hf.blocks.et_block(6, 4, num_heads=2, steps=2),
                 lambda: hf.blocks.tied_mixer_block(6, 4)):
        a = _perturb(make().double()).eval()
        b = make().double().eval()
        b.load_state_dict(a.state_dict())
        b.currents_method = "autograd"
        x = torch.randn(2, 6, 4, dtype=D, requires_grad=True)
        ga = torch.autograd.grad(a(x).square().sum(), [x, *a.parameters()])
        gb = torch.autograd.grad(b(x).square().sum(), [x, *b.parameters()])
        torch.testing.assert_close(a(x), b(x))
        for u, v in zip(ga, gb, strict=True):
            torch.testing.assert_close(u, v, atol=1e-10, rtol=1e-8)


def test_describe_and_lyapunov_report():
    text = hf.blocks.imixer_block(8, 6).describe()
    for phrase in ("IMPLICIT fast group {x2, x3}", "(1 − F)⁻¹", "exactly k = 4 iterations",
                   "explicit fast layer h_ch", "Lyapunov guarantee: NO", "GELU", "untied"):
        assert phrase in text, phrase
    tied = hf.blocks.et_block(8, 6, num_heads=2)
    rep = hf.lyapunov_report(tied)  # residual steps: no proven descent of the total energy
    assert rep.verdict == "PARTIAL" and not rep.holds
    assert [k for k, ok in rep.checks.items() if not ok] == ["step_size"]
    rep = hf.lyapunov_report(hf.blocks.tied_imixer_block(8, 6))
    assert rep.checks["convex"] and rep.checks["tied"] and not rep.checks["step_size"]
    g = hf.EnergyGraph({"a": hf.NeuronLayer(3, L.GELU())}, {}, {})
    rep = hf.lyapunov_report(g)
    assert not rep.holds and "non-convex" in str(rep)


def test_feedback_lipschitz_is_reported():
    blk = hf.blocks.imixer_block(8, 6, act="tanh").eval()
    text = blk.describe()
    assert "Lipschitz bound of F ≤" in text


def _graph():
    return hf.EnergyGraph(
        {"x": hf.NeuronLayer(4, L.Identity()), "h": hf.NeuronLayer(3, L.ReLU(), tau=0),
         "k": hf.NeuronLayer(3, L.ReLU(), tau=0), "s": hf.NeuronLayer(3, L.ReLU()),
         "u": hf.NeuronLayer(2, L.ReLU(), tau=0), "v": hf.NeuronLayer(2, L.ReLU(), tau=0)},
        {"a": S.Dense(4, 3), "b": S.Dense(4, 3), "c": S.Dense(4, 3, tied=False),
         "uv": S.Dense(2, 2)},
        {"a": ("x", "h"), "b": ("x", "s"), "c": ("x", "k"), "uv": ("u", "v")})


@pytest.mark.parametrize("kwargs,match", [
    (dict(visible="zz"), "visible='zz' is not a declared neuron"),
    (dict(visible="h"), "must be slow and not clamped"),
    (dict(visible="x", groups=[["a"], ["nope"]]), "group2 names unknown synapse 'nope'"),
    (dict(visible="x", groups=[["a"], ["a"]]), "synapse 'a' is in both group1 and group2"),
    (dict(visible="x", groups=[["b"]]), "layer 's' in group1 is neither a slow layer the block updates"),
    (dict(visible="x", groups=[["uv"]]), "no synapse of group1"),
    (dict(visible="x", groups=[["c"]], tied=True), r"synapse\(s\) \['c'\] are untied"),
    (dict(visible="x", groups=[["a"]], step="jump"), "unknown step 'jump'"),
    (dict(visible="x", groups=[["a"]], grad="magic"), "unknown grad 'magic'"),
    (dict(visible="x", groups=[["a"]], solver="newton"), "Unknown solver 'newton'"),
    (dict(visible="x", groups=[["a"]], step_size=0), "step_size must be a positive finite number"),
    (dict(visible="x", groups=[["a"]], currents="guess"), "currents must be one of"),
    (dict(visible="x", groups=[["a"]], repeats=0), "repeats must be an int >= 1"),
    (dict(visible="x", groups=[["a"]], solver_options={"memroy": 3}),
     r"group1: unknown option\(s\) 'memroy' in solver_options for solver 'fixed_point'"),
    (dict(visible="x", groups=[["a"]], solver="anderson", solver_options=[3]),
     "solver_options must be a dict"),
])
def test_derive_errors(kwargs, match):
    with pytest.raises((hf.WiringError, ValueError, TypeError), match=match):
        hf.derive(_graph(), **kwargs)


def test_disconnected_fast_group_and_bad_input_shape():
    g = hf.EnergyGraph(
        {"x": hf.NeuronLayer(4, L.Identity()), "h": hf.NeuronLayer(3, L.ReLU(), tau=0),
         "u": hf.NeuronLayer(2, L.ReLU(), tau=0), "v": hf.NeuronLayer(2, L.ReLU(), tau=0)},
        {"a": S.Dense(4, 3), "uv": S.Dense(2, 2)}, {"a": ("x", "h"), "uv": ("u", "v")})
    with pytest.raises(hf.WiringError, match=r"fast layer\(s\) \['u', 'v'\] in group1 connect to no slow"):
        hf.derive(g, "x", [["a", "uv"]])
    with pytest.raises(hf.WiringError, match=r"synapse\(s\) \['uv'\] belong to no group"):
        hf.derive(g, "x", [["a"]])
    blk = hf.derive(g, "x", [["a"]], exclude=["uv"])
    with pytest.raises(hf.WiringError, match=r"expects input \(batch, 4\), got \(2, 5\)"):
        blk(torch.randn(2, 5))


def test_input_faults_at_the_call_name_the_layer_and_the_fix():
    """An integer state, a state in another dtype than the weights, a negative repeat count and
    solver options the new solver does not take are refused before any computation."""
    blk = hf.blocks.imixer_block(4, 6, max_iter=2)
    with pytest.raises(TypeError, match=r"layer 'x' must be a floating-point tensor, got "
                                        r"torch.int64; convert it first"):
        blk(torch.ones(2, 4, 6, dtype=torch.long))
    x64 = torch.randn(2, 4, 6, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"layer 'x' is torch.float64, the weights are "
                                        r"torch.float32; convert the input"):
        blk(x64)
    assert blk.double()(x64).dtype == torch.float64  # a conversion updates what is expected
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast mixes dtypes on purpose
        assert blk.float()(x64.to(torch.bfloat16)).shape == (2, 4, 6)
    with pytest.raises(ValueError, match="repeats >= 0"):
        blk.run(torch.randn(2, 4, 6), repeats=-1)
    anderson = hf.blocks.imixer_block(4, 6, solver="anderson", tol=1e-6,
                                      solver_options={"memory": 3})
    with pytest.raises(ValueError, match=r"set_solve: .*unknown option\(s\) 'memory'"):
        anderson.set_solve(solver="fixed_point")
    assert anderson.set_solve(solver="fixed_point", solver_options={}).plans[0].solver_options == {}


def test_swapped_weights_are_read_again_before_a_dtype_error():
    """functional_call swaps parameters without a conversion: the block re-reads their dtype."""
    blk = hf.blocks.mixer_block(4, 6)
    x = torch.randn(2, 4, 6)
    blk(x)  # caches float32
    params = {k: v.double() for k, v in blk.named_parameters()}
    out = torch.func.functional_call(blk, params, (x.double(),))
    assert out.dtype == torch.float64
    assert blk(x).dtype == torch.float32


def test_derived_block_on_a_user_graph_leaky_step():
    g = hf.EnergyGraph({"x": hf.NeuronLayer(4, L.Tanh(), tau=2.0),
                        "h": hf.NeuronLayer(3, L.ReLU(), tau=0)},
                       {"W": S.Dense(4, 3)}, {"W": ("x", "h")}).double()
    blk = hf.derive(g, "x", step="leaky", step_size=0.5)
    x = torch.randn(2, 4, dtype=D)
    syn = g.synapses["W"]
    h = syn.forward_current(torch.tanh(x))
    expect = x + 0.25 * (syn.backward_current(torch.relu(h)) - x)
    torch.testing.assert_close(blk(x), expect)


def test_feedback_lipschitz_bound_and_warning():
    blk = hf.blocks.imixer_block(8, 6, coeff=0.9).eval()
    fb = blk.graph.synapses["token_feedback"]
    with torch.no_grad():  # weights far above the bound: the soft spectral norm clamps them
        fb.parametrizations.weight.original.mul_(50)
        fb.parametrizations.weight_back.original.mul_(50)
    blk.train()
    for _ in range(30):
        blk(torch.randn(2, 8, 6))
    blk.eval()
    with pytest.warns(UserWarning, match=r"Lipschitz bound is 1\.0\d+ >= 1 \(activations GELU, GELU\)"):
        bounds = blk.feedback_lipschitz()
    assert 1.0 < bounds["token mixing (iMLP)/0"] <= 1.1289**2 * 0.81 + 1e-3
    tanh = hf.blocks.imixer_block(8, 6, act="tanh").eval()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tanh.feedback_lipschitz()["token mixing (iMLP)/0"] < 1.0


def test_backward_tolerance_and_budget_are_settable_through_derive():
    blk = hf.blocks.imixer_block(8, 6, solver="anderson", tol=1e-10, max_iter=200,
                                 grad="implicit").double()
    blk.set_solve(backward_tol=1e-2, backward_max_iter=2)
    assert blk.plans[0].backward_tol == 1e-2 and blk.plans[0].backward_max_iter == 2
    x = torch.randn(2, 8, 6, dtype=D, requires_grad=True)
    blk(x).square().sum().backward()
    back = blk.last_stats["token mixing (iMLP)/0"].backward
    assert back.iterations <= 2
    with pytest.raises(ValueError, match="backward_tol must be a positive finite number"):
        hf.derive(blk.graph, "x", backward_tol=float("inf"))


def test_plain_lookups_follow_the_registered_modules_through_copies():
    """The executor's plain references (graph, layers, Lagrangians, synapses) are the registered modules,
    also after deepcopy and a pickle round trip, and add nothing to the state dict."""
    import copy
    import io

    block = hf.blocks.imixer_block(4, 6, max_iter=2)
    keys = list(block.state_dict())
    buf = io.BytesIO()
    torch.save(block, buf)
    buf.seek(0)
    for blk in (block, copy.deepcopy(block), torch.load(buf, weights_only=False)):
        g = blk.graph
        assert blk._graph is g and list(blk.state_dict()) == keys
        for n, layer in g.neurons.items():
            assert blk._layers[n] is layer
            src = layer if layer.copy_of is None else g.neurons[layer.copy_of]
            assert g.lagrangian_of(n) is src.lagrangian
        for s, (edge, syn) in g._slots.items():
            assert syn is g.synapses[s] and edge == g.edges[s]
    x = torch.randn(2, 4, 6)
    torch.testing.assert_close(copy.deepcopy(block).eval()(x), block.eval()(x))
