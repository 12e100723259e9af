"""Lagrangians: closed-form oracles, activations pinned to autograd, convexity flags, gradcheck."""

import math

import pytest
import torch
from torch.nn import functional as F

import hopfield as hf
from hopfield import lagrangians as L

D = torch.float64


def all_lagrangians():
    return {
        "identity": L.Identity(),
        "relu": L.ReLU(),
        "rpow3": L.RectifiedPower(3),
        "exp": L.Exp(),
        "tanh": L.Tanh(),
        "sigmoid": L.Sigmoid(),
        "softplus": L.Softplus(),
        "gelu": L.GELU(),
        "softmax": L.Softmax(beta=1.7),
        "softmax_axis0": L.Softmax(beta=0.5, axis=0),
        "layernorm_scalar": L.LayerNorm(5, per_feature=False),
        "layernorm_feature": L.LayerNorm(5, per_feature=True),
        "layernorm_axis0": L.LayerNorm(3, axis=0, per_feature=False),
        "spherical": L.SphericalNorm(5),
    }


def _randomise(lag):
    with torch.no_grad():
        for p in lag.parameters():
            p.add_(0.3 * torch.randn_like(p))
            if p.dim() == 0:  # scalar gains stay positive (convex)
                p.abs_()
    return lag.double()


@pytest.mark.parametrize("name", sorted(all_lagrangians()))
def test_activation_equals_autograd_gradient(name):
    lag = _randomise(all_lagrangians()[name])
    x = torch.randn(4, 3, 5, dtype=D) * 2
    g = lag.activation(x)
    g_auto = lag.activation_autograd(x)
    if lag.exact:
        torch.testing.assert_close(g, g_auto, atol=1e-10, rtol=1e-9)
    else:  # per-feature gain: declared relaxation, the closed form is NOT the gradient
        assert not torch.allclose(g, g_auto, atol=1e-6)


@pytest.mark.parametrize("name", sorted(all_lagrangians()))
def test_gradcheck_value_and_activation(name):
    lag = _randomise(all_lagrangians()[name])
    x = torch.randn(2, 3, 5, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: lag(x), (x,))
    assert torch.autograd.gradcheck(lambda x: lag.activation(x), (x,))


def test_closed_form_oracles():
    x = torch.linspace(-6, 6, 25, dtype=D).reshape(1, 25)
    torch.testing.assert_close(L.Tanh()(x), torch.log(torch.cosh(x)).sum(-1))
    torch.testing.assert_close(L.Sigmoid()(x), F.softplus(x).sum(-1))
    torch.testing.assert_close(L.Identity()(x), 0.5 * (x * x).sum(-1))
    torch.testing.assert_close(L.Softmax(beta=2.0)(x), torch.logsumexp(2 * x, -1) / 2)
    # -Li2(-e^x): Li2(-1) = -pi^2/12, and the inversion formula at x = 0 and a scipy reference
    torch.testing.assert_close(L.Softplus()(torch.zeros(1, 1, dtype=D)),
                               torch.tensor([math.pi**2 / 12], dtype=D))
    from scipy.special import spence  # spence(z) = Li2(1 - z)

    xs = torch.tensor([[-3.0, -0.5, 0.7, 4.0]], dtype=D)
    ref = sum(-spence(1 + math.exp(v)) for v in xs[0].tolist())
    torch.testing.assert_close(L.Softplus()(xs), torch.tensor([ref], dtype=D))
    # integral of GELU from -inf: check with scipy quadrature
    from scipy.integrate import quad
    from scipy.stats import norm

    ref = quad(lambda s: s * norm.cdf(s), -40, 1.3)[0]
    torch.testing.assert_close(L.GELU()(torch.tensor([[1.3]], dtype=D)),
                               torch.tensor([ref], dtype=D), atol=1e-9, rtol=1e-9)


def test_layernorm_matches_torch_layernorm():
    ln = torch.nn.LayerNorm(7, eps=1e-6).double()
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    lag = L.LayerNorm(7, eps=1e-6).double()
    lag.load_state_dict(ln.state_dict())
    x = torch.randn(3, 4, 7, dtype=D)
    torch.testing.assert_close(lag.activation(x), ln(x))
    assert not lag.exact


def test_stable_for_large_inputs():
    x = torch.tensor([[-800.0, 800.0]], dtype=torch.float32)
    for lag in (L.Tanh(), L.Sigmoid(), L.Softplus(), L.Softmax()):
        assert torch.isfinite(lag(x)).all() and torch.isfinite(lag.activation(x)).all()


def test_learnable_beta_gets_exact_gradient():
    lag = L.Softmax(beta=1.5, learnable_beta=True).double()
    x = torch.randn(2, 6, dtype=D)
    assert torch.autograd.gradcheck(lambda b: (torch.logsumexp(b * x, -1) / b).sum(),
                                    (lag.beta.detach().clone().requires_grad_(),))
    lag(x).sum().backward()
    assert lag.beta.grad is not None and torch.isfinite(lag.beta.grad)


def test_registry_and_errors():
    assert isinstance(L.get("gelu"), L.GELU)
    assert isinstance(L.get("softmax", beta=2.0), L.Softmax)
    with pytest.raises(ValueError, match="Unknown Lagrangian 'swish'.*valid names"):
        L.get("swish")
    with pytest.raises(ValueError, match="positive finite beta"):
        L.Softmax(beta=0.0)
    with pytest.raises(ValueError, match="positive finite beta"):
        L.Softmax(beta=-1.0)
    with pytest.raises(ValueError, match="power n > 1"):
        L.RectifiedPower(1)
    with pytest.raises(ValueError, match="expected size 5 along axis -1"):
        L.LayerNorm(5).activation(torch.randn(2, 4))
    with pytest.raises(ValueError, match="axis=3 is out of range"):
        L.Softmax(axis=3)(torch.randn(2, 4))


def test_neuron_legendre_energy_and_derivatives():
    lag = L.LayerNorm(5, per_feature=False).double()
    with torch.no_grad():
        lag.weight.fill_(1.3)
    layer = hf.NeuronLayer(5, lag)
    x = torch.randn(3, 5, dtype=D, requires_grad=True)
    e = layer.energy(x)
    g = lag.activation(x)
    torch.testing.assert_close(e, (x * g).sum(-1) - lag(x))
    # dE/dx = H x (exact; a detached activation would give g instead)
    (dx,) = torch.autograd.grad(e.sum(), x)
    hx = torch.autograd.functional.jvp(lambda z: lag.activation(z), x.detach(), x.detach())[1]
    torch.testing.assert_close(dx, hx)
    # dE/d(gamma) against a hand-written energy as a function of gamma
    w = lag.weight.detach().clone().requires_grad_()

    def e_of_w(w):
        xm = x.detach()
        var = xm.var(-1, unbiased=False)
        g = w * (xm - xm.mean(-1, keepdim=True)) / torch.sqrt(var + lag.eps)[:, None] + lag.bias
        return ((xm * g).sum(-1) - (w * 5 * torch.sqrt(var + lag.eps) + (xm * lag.bias).sum(-1))).sum()

    layer.energy(x.detach()).sum().backward()
    (ref,) = torch.autograd.grad(e_of_w(w), w)
    torch.testing.assert_close(lag.weight.grad, ref)
    # Legendre identity: E_neuron = L*(g) = <x, g> - L(x) for the quadratic: 0.5 ||g||^2
    idl = hf.NeuronLayer(5, L.Identity())
    torch.testing.assert_close(idl.energy(x.detach()), 0.5 * (x.detach() ** 2).sum(-1))


def test_neuron_layer_errors():
    with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
        hf.NeuronLayer(3, L.Identity(), tau=-1.0)
    with pytest.raises(ValueError, match="every size in shape must be positive"):
        hf.NeuronLayer((3, 0), L.Identity())
    with pytest.raises(TypeError, match="shape must be an int or a tuple of ints"):
        hf.NeuronLayer("3", L.Identity())
    with pytest.raises(TypeError, match="must be a hopfield.lagrangians.Lagrangian"):
        hf.NeuronLayer(3, torch.nn.ReLU())
    with pytest.raises(TypeError, match="a Lagrangian is required"):
        hf.NeuronLayer(3)
    with pytest.raises(ValueError, match="clamped layer cannot also be fast"):
        hf.NeuronLayer(3, L.Identity(), tau=0, clamped=True)


# ---------------------------------------------------------------------- convexity declarations
def _vmap_hessian_eigs(lag, shape=(3, 5), n=64, scale=3.0):
    """Hessian eigenvalues of ``lag`` at ``n`` random float64 states, by vmap(hessian)."""
    gen = torch.Generator().manual_seed(1)
    pts = scale * torch.randn(n, math.prod(shape), generator=gen, dtype=D)
    hess = torch.func.vmap(torch.func.hessian(lambda v: lag(v.reshape(1, *shape))[0]))(pts)
    return torch.linalg.eigvalsh(0.5 * (hess + hess.transpose(-1, -2))).detach()


@pytest.mark.parametrize("name", sorted(all_lagrangians()))
def test_every_builtin_declares_convexity_and_the_hessian_agrees(name):
    lag = _randomise(all_lagrangians()[name])
    assert lag.convexity_source == "declared" and lag.is_convex in (True, False)
    eigs = _vmap_hessian_eigs(lag)
    if lag.is_convex:
        assert eigs.min() > -1e-8 * max(1.0, float(eigs.abs().max())), name
    else:  # GELU: a negative eigenvalue must be found
        assert eigs.min() < -1e-3, name


def test_user_lagrangians_are_unverified_until_checked():
    class Quartic(L.Lagrangian):
        def forward(self, x):
            return (x**4).flatten(1).sum(-1) / 4

    class SteeperTanh(L.Tanh):  # overrides the activation: the Tanh declaration no longer holds
        def activation(self, x):
            return torch.tanh(2 * x)

    class ClaimsConvex(L.GELU):  # a declaration is trusted only where a test pins it
        is_convex = True

    class PlainTanh(L.Tanh):  # same function: keeps the built-in's declaration
        pass

    for cls in (Quartic, SteeperTanh, ClaimsConvex):
        assert cls().is_convex is None and cls().convexity_source is None
        assert "convexity unverified" in repr(cls())
    assert PlainTanh().is_convex is True and PlainTanh().convexity_source == "declared"
    quartic = Quartic()
    check = L.check_convexity(quartic, (2, 3), samples=16)
    assert check.convex and check.samples == 16 and quartic.is_convex is None  # not yet marked
    assert check.mark() is quartic and quartic.is_convex and quartic.convexity_source == "sampled"
    assert check.summary == "convex on 16 samples (not a proof)"
    gelu_like = ClaimsConvex()
    bad = L.check_convexity(gelu_like, 4, samples=64).mark()
    assert bad.is_convex is False and bad.convexity_source == "counterexample"
    assert gelu_like.__dict__["_convexity_check"].min_eigenvalue < 0


def test_check_convexity_errors_and_leaves_the_lagrangian_alone():
    lag = L.LayerNorm(4, per_feature=False)
    before = {k: v.clone() for k, v in lag.state_dict().items()}
    assert L.check_convexity(lag, (2, 4), samples=8).convex
    assert all(torch.equal(v, lag.state_dict()[k]) for k, v in before.items())
    assert lag.weight.dtype == torch.float32
    with pytest.raises(TypeError, match="expected a hopfield Lagrangian"):
        L.check_convexity(torch.nn.Tanh(), 3)
    with pytest.raises(ValueError, match="samples must be an int >= 1"):
        L.check_convexity(lag, (2, 4), samples=0)
    with pytest.raises(ValueError, match="shape must be positive ints"):
        L.check_convexity(lag, (0, 4))


def test_elementwise_runs_in_memory_order_with_the_same_values_strides_and_gradients():
    from hopfield.core.lagrangians import elementwise

    base = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    for x in (base, base.transpose(1, 2), base.permute(2, 0, 1), base[:, ::2]):
        got, want = elementwise(torch.nn.functional.gelu, x), torch.nn.functional.gelu(x)
        assert torch.equal(got, want) and got.stride() == want.stride()
        (g1,) = torch.autograd.grad(got.square().sum(), base)
        (g2,) = torch.autograd.grad(want.square().sum(), base)
        assert torch.equal(g1, g2)
