"""Derived blocks and graph energies compose with ``torch.func``
(docs/concepts/synapses.md#currents-under-torch-func).

Every catalogue block, in eval and training mode: ``jacrev`` equals
``torch.autograd.functional.jacobian``, ``vmap`` over an extra leading axis equals a loop, and
``functional_call`` with substituted parameters equals loading them. A spectral norm under a
transform writes nothing (docs/concepts/fast_layers.md#spectral-norm-schedule), so the training
mode comparisons start every call from the same buffers. Graph energies and currents: ``jvp``
equals autograd and finite differences. The ``torch.func`` route of the currents equals the
``torch.autograd.grad`` route, forward and training gradients (second order).
"""

import copy

import pytest
import torch
from catalogue import DIM, FIXED_K, N

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S
from hopfield.core import autodiff

D = torch.float64
B = hf.blocks
BUILDERS = {
    **FIXED_K,
    "imixer_k1": lambda: B.imixer_block(N, DIM, 3, 3, 5, max_iter=1),
    "imixer_iteration": lambda: B.imixer_block(N, DIM, 3, 3, 5, max_iter=2,
                                               spectral_schedule="iteration"),
}
MODES = ["eval", "train"]


def make(name, mode, *, advancing=False):
    if advancing and name == "imixer_iteration" and mode == "train":
        # refreshed before every iteration, the spectral norms of a loop of calls advance from
        # one iteration to the next; under a transform they write nothing, so every iteration
        # uses the first one's weights (docs/concepts/fast_layers.md#spectral-norm-schedule)
        pytest.skip("spectral norms do not advance between iterations under a transform")
    blk = BUILDERS[name]().to(D).train(mode == "train")
    with torch.no_grad():  # biases away from zero, so that every parameter matters
        for p in blk.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return blk


def buffers(blk):
    return {k: v.clone() for k, v in blk.named_buffers()}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_jacrev_equals_the_autograd_jacobian(name, mode):
    blk = make(name, mode, advancing=True)
    x = torch.randn(2, N, DIM, dtype=D)
    before = buffers(blk)
    jac = torch.func.jacrev(blk)(x)
    after = buffers(blk)
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing written
    ref = torch.autograd.functional.jacobian(blk, x)
    assert jac.shape == (2, N, DIM, 2, N, DIM)
    torch.testing.assert_close(jac, ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_vmap_over_a_leading_axis_equals_a_loop(name, mode):
    blk = make(name, mode, advancing=True)
    xs = torch.randn(3, 2, N, DIM, dtype=D)
    start = buffers(blk)
    out = torch.func.vmap(blk)(xs)
    loop = []
    for x in xs:
        blk.load_state_dict(start, strict=False)
        loop.append(blk(x))
    torch.testing.assert_close(out, torch.stack(loop), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_functional_call_equals_load_state_dict(name, mode):
    blk = make(name, mode)
    other = copy.deepcopy(blk)
    x = torch.randn(2, N, DIM, dtype=D)
    params = {k: p.detach() + 0.1 * torch.randn_like(p) for k, p in blk.named_parameters()}
    kept = {k: p.detach().clone() for k, p in blk.named_parameters()}
    out = torch.func.functional_call(blk, params, (x,))
    assert all(torch.equal(p, kept[k]) for k, p in blk.named_parameters())
    other.load_state_dict(params, strict=False)
    torch.testing.assert_close(out, other(x), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", ["imixer", "imixer_autograd", "et_autograd", "vit"])
def test_grad_over_parameters_equals_backward(name):
    """``torch.func.grad`` of a loss over ``functional_call`` parameters (the spectral norms then
    see transformed weights) equals the training step's backward."""
    blk = make(name, "train")
    x = torch.randn(2, N, DIM, dtype=D)
    params = {k: p.detach() for k, p in blk.named_parameters()}
    start = buffers(blk)
    grads = torch.func.grad(lambda p: torch.func.functional_call(blk, p, (x,)).square().sum())(
        params)
    blk.load_state_dict(start, strict=False)
    blk(x).square().sum().backward()
    for k, p in blk.named_parameters():
        torch.testing.assert_close(grads[k], p.grad, atol=1e-10, rtol=1e-10, msg=k)


def _pair(a, h, *, lam):
    return -(a * h[:, :3]).sum(-1) * 0.4 - 0.5 * lam * (h * h).sum(-1)


def user_graph():
    """A Dense (tied), a FunctionSynapse (autograd only) and an untied Dense (probes)."""
    return hf.EnergyGraph(
        neurons={"x": hf.NeuronLayer(3, L.Tanh()), "h": hf.NeuronLayer(4, L.Sigmoid()),
                 "k": hf.NeuronLayer(4, L.Tanh(), tau=0)},
        synapses={"W": S.Dense(3, 4),
                  "F": S.FunctionSynapse(_pair, 2, params={"lam": torch.tensor(0.3)}),
                  "U": S.Dense(4, 4, tied=False)},
        edges={"W": ("x", "h"), "F": ("x", "h"), "U": ("h", "k")}).to(D)


def _states(graph, batch=2):
    return {n: torch.randn(batch, *layer.shape, dtype=D) for n, layer in graph.neurons.items()}


def test_jvp_of_the_energy_equals_autograd_and_finite_differences():
    graph = user_graph()
    xs, ts = _states(graph), _states(graph)
    e, de = torch.func.jvp(graph.energy, (xs,), (ts,))
    names = list(xs)
    _, ref = torch.autograd.functional.jvp(
        lambda *v: graph.energy(dict(zip(names, v, strict=True))), tuple(xs.values()),
        tuple(ts.values()))
    torch.testing.assert_close(de, ref, atol=1e-12, rtol=1e-12)
    h = 1e-6
    fd = (graph.energy({n: xs[n] + h * ts[n] for n in xs})
          - graph.energy({n: xs[n] - h * ts[n] for n in xs})) / (2 * h)
    torch.testing.assert_close(de, fd.detach(), atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("method", ["autograd", "auto"])
def test_jvp_of_the_currents_equals_autograd_and_finite_differences(method):
    graph = user_graph()
    xs, ts = _states(graph), _states(graph)

    def currents(xs):
        return graph.currents(xs, method=method)

    out, dout = torch.func.jvp(currents, (xs,), (ts,))
    names = list(xs)
    _, ref = torch.autograd.functional.jvp(
        lambda *v: tuple(currents(dict(zip(names, v, strict=True))).values()),
        tuple(xs.values()), tuple(ts.values()))
    ref = dict(zip(out, ref, strict=True))
    h = 1e-6
    plus = currents({n: xs[n] + h * ts[n] for n in xs})
    minus = currents({n: xs[n] - h * ts[n] for n in xs})
    assert set(dout) == {"x", "h", "k"}
    for n in dout:
        torch.testing.assert_close(dout[n], ref[n], atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(dout[n], ((plus[n] - minus[n]) / (2 * h)).detach(),
                                   atol=1e-7, rtol=1e-7)


def test_vmap_of_energy_and_currents_equals_a_loop():
    graph = user_graph()
    xs = {n: torch.randn(3, 2, *layer.shape, dtype=D) for n, layer in graph.neurons.items()}
    energy = torch.func.vmap(graph.energy)(xs)
    currents = torch.func.vmap(lambda s: graph.currents(s, method="autograd"))(xs)
    for i in range(3):
        one = {n: v[i] for n, v in xs.items()}
        torch.testing.assert_close(energy[i], graph.energy(one), atol=1e-12, rtol=1e-12)
        loop = graph.currents(one, method="autograd")
        for n in loop:
            torch.testing.assert_close(currents[n][i], loop[n], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", ["imixer", "tied_imixer", "imixer_autograd"])
def test_vmap_of_the_fixed_point_map(name):
    blk = make(name, "eval")
    xs = torch.randn(3, 2, N, DIM, dtype=D)
    with torch.no_grad():
        z = torch.func.vmap(lambda x: blk.solve_implicit(x)[0])(xs)
        z_loop = torch.stack([blk.solve_implicit(x)[0] for x in xs])
        torch.testing.assert_close(z, z_loop, atol=1e-12, rtol=1e-12)
        res = torch.func.vmap(blk.residual_map)(z, xs)
        res_loop = torch.stack([blk.residual_map(zi, x) for zi, x in zip(z, xs, strict=True)])
        torch.testing.assert_close(res, res_loop, atol=1e-12, rtol=1e-12)
        _, _, (fmap, z0, _, _) = blk._implicit(xs[0], 0, 0, {})  # the map itself, over iterates
        zs = torch.randn(5, *z0.shape, dtype=D)
        torch.testing.assert_close(torch.func.vmap(fmap)(zs), torch.stack([fmap(v) for v in zs]),
                                   atol=1e-12, rtol=1e-12)


def test_implicit_gradients_under_a_transform_say_why_not():
    blk = B.imixer_block(N, DIM, 3, 3, 5, max_iter=30, tol=1e-10, grad="implicit").to(D).eval()
    x = torch.randn(2, N, DIM, dtype=D)
    with pytest.raises(ValueError, match="grad='implicit' attaches its gradient with an autograd"):
        torch.func.jacrev(blk)(x)
    phantom = copy.deepcopy(blk).set_solve(grad="phantom")  # one step from the solution
    torch.testing.assert_close(torch.func.jacrev(phantom)(x),
                               torch.autograd.functional.jacobian(phantom, x), atol=1e-10, rtol=0)
    with torch.no_grad():  # values only: no gradient to attach
        torch.testing.assert_close(torch.func.vmap(blk)(x[None])[0], blk(x), atol=1e-12, rtol=0)


def user_block():
    return hf.derive(user_graph(), ["x", "h"], max_iter=3, currents="autograd").train()


@pytest.mark.parametrize("name", ["et_autograd", "imixer_autograd", "user"])
def test_the_func_route_equals_the_autograd_route(name, monkeypatch):
    """Forward and the training gradients through the currents (second order) agree."""
    blk = user_block() if name == "user" else make(name, "train")
    n_in = len(blk.slow)
    shapes = [blk.graph.neurons[n].shape for n in blk.slow]
    xs = [torch.randn(2, *s, dtype=D) for s in shapes]
    start = buffers(blk)

    def step():
        blk.load_state_dict(start, strict=False)
        blk.zero_grad()
        leaves = [x.clone().requires_grad_(True) for x in xs]
        out = blk(*leaves)
        out = out if isinstance(out, tuple) else (out,)
        sum(o.square().sum() for o in out).backward()
        return [o.detach() for o in out], [x.grad for x in leaves], {
            k: p.grad.clone() for k, p in blk.named_parameters() if p.grad is not None}

    plain = step()
    monkeypatch.setattr(autodiff, "ALWAYS_FUNC", True)
    func = step()
    assert len(plain[0]) == n_in and plain[2].keys() == func[2].keys()
    for a, b in zip(plain[0] + plain[1] + list(plain[2].values()),
                    func[0] + func[1] + list(func[2].values()), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
