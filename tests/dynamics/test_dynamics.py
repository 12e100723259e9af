"""Solvers, gradients through equilibria, and spectral normalisation."""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hopfield as hf
from hopfield import dynamics as dyn

D = torch.float64


def contraction(scale=0.5, n=6, batch=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, n, dtype=D, generator=gen)
    w = (scale * w / torch.linalg.matrix_norm(w, 2)).requires_grad_()
    b = torch.randn(batch, n, dtype=D, generator=gen).requires_grad_()
    return w, b, (lambda z: torch.tanh(z @ w.t()) + b)


@pytest.mark.parametrize("name", ["fixed_point", "anderson", "broyden"])
def test_solvers_converge_and_report(name):
    _, _, f = contraction()
    z, st = dyn.get_solver(name)(f, torch.zeros(3, 6, dtype=D), max_iter=200, tol=1e-11)
    assert st.converged and not st.diverged and st.nfev >= st.iterations > 0
    assert (f(z) - z).abs().max() < 1e-9
    assert st.residuals[-1] < 1e-11 and len(st.residuals) == st.iterations
    assert set(st.as_dict()) >= {"solver", "iterations", "nfev", "converged", "residuals"}


def test_anderson_needs_fewer_evaluations_on_a_slow_contraction():
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(32, 32, dtype=D, generator=gen))
    a = q @ torch.diag(torch.linspace(-0.95, 0.95, 32, dtype=D)) @ q.t()
    b = torch.randn(3, 32, dtype=D, generator=gen)
    f = lambda z: 0.1 * torch.tanh(z) + z @ a * 0.9 + b  # noqa: E731
    _, plain = dyn.fixed_point(f, torch.zeros(3, 32, dtype=D), max_iter=2000, tol=1e-6)
    _, acc = dyn.anderson(f, torch.zeros(3, 32, dtype=D), max_iter=2000, tol=1e-6)
    assert plain.converged and acc.converged
    assert acc.nfev < 0.6 * plain.nfev


def test_fixed_iteration_count_equals_hand_loop_exactly():
    _, _, f = contraction()
    z0 = torch.randn(3, 6, dtype=D)
    z, st = dyn.fixed_point(f, z0, max_iter=7, tol=None)
    ref = z0
    for _ in range(7):
        ref = f(ref)
    assert torch.equal(z, ref) and st.iterations == 7 and st.converged


def test_nonconvergence_warns_and_divergence_raises():
    _, _, f = contraction(scale=0.99)
    with pytest.warns(dyn.ConvergenceWarning, match="no convergence after 3 iterations"):
        _, st = dyn.fixed_point(f, torch.zeros(3, 6, dtype=D), max_iter=3, tol=1e-12)
    assert not st.converged
    with pytest.raises(dyn.DivergenceError, match="diverged at iteration"):
        dyn.fixed_point(lambda z: 3 * z + 1, torch.ones(2, 3), max_iter=50, tol=1e-6)
    with pytest.raises(dyn.DivergenceError, match="diverged"):
        dyn.anderson(lambda z: z * float("nan"), torch.ones(2, 3), max_iter=5, tol=1e-6)


def test_solver_argument_errors():
    f = lambda z: z  # noqa: E731
    with pytest.raises(ValueError, match="Unknown solver 'newton'; valid solvers: anderson"):
        dyn.get_solver("newton")
    with pytest.raises(TypeError, match="unexpected keyword argument 'tolerance'"):
        dyn.fixed_point(f, torch.zeros(1, 2), tolerance=1e-3)
    with pytest.raises(ValueError, match="max_iter must be an int >= 0"):
        dyn.anderson(f, torch.zeros(1, 2), max_iter=-1)
    with pytest.raises(ValueError, match="tol must be positive or None"):
        dyn.fixed_point(f, torch.zeros(1, 2), tol=0.0)
    with pytest.raises(ValueError, match="Unknown gradient mode 'magic'"):
        dyn.solve_fixed_point(f, torch.zeros(1, 2), grad="magic")


@pytest.mark.parametrize("solver", ["fixed_point", "anderson"])
def test_implicit_gradient_equals_unrolled_at_convergence(solver):
    w, b, f = contraction(scale=0.7)
    z0 = torch.zeros(3, 6, dtype=D)
    wt = torch.randn(3, 6, dtype=D)
    z_u, _ = dyn.solve_fixed_point(f, z0, solver="fixed_point", grad="unrolled", max_iter=200,
                                   tol=None)
    gu = torch.autograd.grad((z_u * wt).sum(), (w, b))
    z_i, _ = dyn.solve_fixed_point(f, z0, solver=solver, grad="implicit", max_iter=200, tol=1e-13,
                                   backward_tol=1e-13)
    gi = torch.autograd.grad((z_i * wt).sum(), (w, b))
    torch.testing.assert_close(z_i, z_u, atol=1e-11, rtol=0)
    for a, c in zip(gi, gu, strict=True):
        torch.testing.assert_close(a, c, atol=1e-6, rtol=1e-6)


def test_gradcheck_through_solvers():
    gen = torch.Generator().manual_seed(1)
    w = (0.4 * torch.randn(4, 4, dtype=D, generator=gen) / 2).requires_grad_()
    b = torch.randn(2, 4, dtype=D, generator=gen).requires_grad_()

    def run(w, b, grad, solver):
        f = lambda z: torch.tanh(z @ w.t()) + b  # noqa: E731
        return dyn.solve_fixed_point(f, torch.zeros(2, 4, dtype=D), solver=solver, grad=grad,
                                     max_iter=300, tol=None if grad == "unrolled" else 1e-13,
                                     backward_tol=1e-13)[0]

    assert torch.autograd.gradcheck(lambda w, b: run(w, b, "unrolled", "fixed_point"), (w, b))
    assert torch.autograd.gradcheck(lambda w, b: run(w, b, "implicit", "anderson"), (w, b),
                                    atol=1e-5)


def test_implicit_memory_does_not_keep_the_iterations():
    w, b, f = contraction(scale=0.7)
    z, _ = dyn.solve_fixed_point(f, torch.zeros(3, 6, dtype=D), grad="implicit", max_iter=100,
                                 tol=1e-12)
    # the autograd graph holds exactly one application of f (tanh, matmul, add)
    seen, stack = set(), [z.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack.extend(nxt for nxt, _ in fn.next_functions)
    assert sum("Tanh" in type(fn).__name__ for fn in seen) == 1


def test_phantom_gradient_is_one_step_through_the_solution():
    w, b, f = contraction(scale=0.5)
    z, _ = dyn.solve_fixed_point(f, torch.zeros(3, 6, dtype=D), grad="phantom", max_iter=100,
                                 tol=1e-13)
    (gp,) = torch.autograd.grad(z.sum(), b)
    torch.testing.assert_close(gp, torch.ones_like(b))  # d/db [tanh(z* W^T) + b] with z* fixed


# ----------------------------------------------------------------------------- spectral norm
def test_soft_spectral_norm_eval_formula_and_bound():
    lin = torch.nn.Linear(20, 30).double()
    with torch.no_grad():
        lin.weight.mul_(10)
    dyn.spectral_norm(lin, coeff=0.9, n_power_iterations=50)
    lin.train()
    _ = lin.weight  # power iterations in train mode
    lin.eval()
    sn = dyn.spectral_norm_of(lin)
    w0 = lin.parametrizations.weight.original
    sigma = sn.u @ w0 @ sn.v
    torch.testing.assert_close(lin.weight, w0 / torch.clamp(sigma / 0.9, min=1.0))
    torch.testing.assert_close(dyn.operator_norm(lin.weight), torch.tensor(0.9, dtype=D),
                               atol=1e-6, rtol=0)


def test_spectral_norm_leaves_small_weights_alone_and_passes_gradients():
    dense = hf.synapses.Dense(8, 8).double()
    with torch.no_grad():
        dense.weight.mul_(0.01)
    w0 = dense.weight.detach().clone()
    dyn.spectral_norm(dense, "weight", coeff=0.9)
    torch.testing.assert_close(dense.weight, w0)
    dense.weight.sum().backward()
    assert dense.parametrizations.weight.original.grad is not None


def test_spectral_norm_errors():
    with pytest.raises(ValueError, match="coeff must be positive"):
        dyn.spectral_norm(torch.nn.Linear(2, 2), coeff=0)
    with pytest.raises(ValueError, match="has no tensor attribute 'nope'"):
        dyn.spectral_norm(torch.nn.Linear(2, 2), "nope")


def test_no_warning_for_fixed_iteration_budget():
    _, _, f = contraction()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dyn.fixed_point(f, torch.zeros(3, 6, dtype=D), max_iter=2, tol=None)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 300), scale=st.sampled_from([0.0, 1e-20, 1.0, 1e20]),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 999))
def test_power_iteration_normalises_exactly_like_f_normalize(n, scale, dtype, seed):
    """The spectral norm's vector normalisation equals ``F.normalize(dim=0)`` bit for bit (with
    and without ``out``), so a refresh matches the published hook exactly."""
    from torch.nn import functional as F

    from hopfield.dynamics.spectral import _unit

    x = torch.randn(n, dtype=dtype, generator=torch.Generator().manual_seed(seed)) * scale
    assert torch.equal(_unit(x, 1e-12, None), F.normalize(x, dim=0, eps=1e-12))
    out, ref = torch.empty_like(x), torch.empty_like(x)
    _unit(x, 1e-12, out)
    F.normalize(x, dim=0, eps=1e-12, out=ref)
    assert torch.equal(out, ref)
