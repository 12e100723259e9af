"""Honest solvers: NaN/Inf results, converged/diverged flags, empty batches, argument checks."""

import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopfield import dynamics as dyn
from hopfield.dynamics import solvers as solvers_module

D = torch.float64
SOLVERS = ["fixed_point", "anderson", "broyden"]
NAN, INF = float("nan"), float("inf")


def _solve(name, f, z0, **kw):
    return dyn.get_solver(name)(f, z0, **kw)


def _nan_after(calls):
    """A map that is a contraction for ``calls`` evaluations, then returns NaN."""
    count = [0]

    def f(z):
        count[0] += 1
        return 0.5 * z + 1 if count[0] <= calls else z * NAN

    return f


@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("tol", [None, 1e-6])
@pytest.mark.parametrize("bad", [NAN, INF])
def test_non_finite_maps_raise_with_honest_stats(name, tol, bad):
    where = "after the loop" if tol is None else "at iteration 1"
    with pytest.raises(dyn.DivergenceError, match=f"{name}: .*diverged {where}") as info:
        _solve(name, lambda z: z * bad, torch.ones(2, 3), max_iter=5, tol=tol)
    stats = info.value.stats
    assert stats.solver == name and stats.diverged and not stats.converged
    assert "apply spectral normalisation" in str(info.value) and "damp" in str(info.value)
    assert "solver='anderson'" in str(info.value)


@pytest.mark.parametrize("name", SOLVERS)
def test_late_nan_is_caught_once_after_the_loop(name):
    with pytest.raises(dyn.DivergenceError, match="after the loop") as info:
        _solve(name, _nan_after(3), torch.ones(2, 3, dtype=D), max_iter=8, tol=None)
    assert info.value.stats.iterations == 8 and info.value.stats.diverged


def test_expanding_map_diverges_with_and_without_tol():
    f = lambda z: 3 * z + 1  # noqa: E731
    z, stats = dyn.fixed_point(f, torch.ones(2, 3), max_iter=3, tol=None)
    assert torch.isfinite(z).all() and stats.converged  # 3 finite iterations were asked for
    with pytest.raises(dyn.DivergenceError, match=r"after the loop \(200 iterations") as info:
        dyn.fixed_point(f, torch.ones(2, 3), max_iter=200, tol=None)  # overflows to Inf
    assert not info.value.stats.converged and info.value.stats.diverged
    with pytest.raises(dyn.DivergenceError, match="diverged at iteration"):
        dyn.fixed_point(f, torch.ones(2, 3), max_iter=200, tol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_relative_residual_never_reports_an_overflow_as_convergence(dtype):
    # |f(z) - z| / |f(z)| stays 1/2 for z -> 2z + 1 until |f(z)| overflows, when it would read 0
    with pytest.raises(dyn.DivergenceError, match="diverged at iteration") as info:
        dyn.fixed_point(lambda z: 2 * z + 1, torch.ones(2, 3, dtype=dtype), max_iter=2000,
                        tol=1e-8, stop_mode="rel")
    assert not info.value.stats.converged and info.value.stats.diverged


@pytest.mark.parametrize("name", SOLVERS)
def test_warn_false_does_not_hide_divergence(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(dyn.DivergenceError, match="diverged"):
            _solve(name, lambda z: z * NAN, torch.ones(2, 3), max_iter=4, tol=1e-6, warn=False)
        with pytest.raises(dyn.DivergenceError, match="after the loop"):
            _solve(name, lambda z: z * NAN, torch.ones(2, 3), max_iter=4, tol=None, warn=False)


def test_non_finite_start_is_named_and_zero_iterations_are_checked():
    z0 = torch.ones(2, 3)
    z, stats = dyn.fixed_point(lambda z: z, z0, max_iter=0)
    assert z is z0 and stats.converged and stats.iterations == 0
    z0[0, 0] = NAN
    with pytest.raises(dyn.DivergenceError, match="z0 already held NaN/Inf"):
        dyn.fixed_point(lambda z: z, z0, max_iter=0)


@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("tol", [None, 1e-6])
def test_empty_batch_returns_at_once(name, tol):
    calls = []
    z0 = torch.zeros(0, 4, 3)
    z, stats = _solve(name, lambda z: calls.append(1) or z.reshape(0, -1), z0, max_iter=5, tol=tol)
    assert z is z0 and not calls
    assert stats.converged and not stats.diverged and stats.iterations == 0 and stats.nfev == 0


@pytest.mark.parametrize("grad", ["unrolled", "implicit", "phantom"])
def test_empty_batch_through_solve_fixed_point(grad):
    w = torch.randn(3, 3, requires_grad=True)
    z0 = torch.zeros(0, 3)
    z, stats = dyn.solve_fixed_point(lambda z: z @ w, z0, grad=grad, max_iter=4, tol=1e-6)
    assert z.shape == (0, 3) and stats.converged and stats.iterations == 0


BAD_TOL = [(NAN, ValueError), (INF, ValueError), (0, ValueError), (0.0, ValueError),
           (-1e-3, ValueError), ("1e-3", TypeError), (True, TypeError)]


@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("tol,exc", BAD_TOL)
def test_invalid_tol(name, tol, exc):
    with pytest.raises(exc, match=f"{name}: tol must be positive or None .*got tol="):
        _solve(name, lambda z: z, torch.zeros(1, 2), tol=tol)


@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("max_iter,exc", [(-1, ValueError), (2.5, TypeError), (True, TypeError),
                                          ("3", TypeError), (None, TypeError)])
def test_invalid_max_iter(name, max_iter, exc):
    with pytest.raises(exc, match=f"{name}: max_iter must be an int >= 0, got max_iter="):
        _solve(name, lambda z: z, torch.zeros(1, 2), max_iter=max_iter)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(f="not callable"), TypeError, "f must be callable"),
    (dict(z0=torch.tensor(1.0)), ValueError, r"z0 must be a tensor with the batch first"),
    (dict(z0=[1.0, 2.0]), TypeError, r"z0 must be a tensor with the batch first"),
    (dict(stop_mode="max"), ValueError, "stop_mode must be 'rel' or 'abs'"),
])
def test_invalid_solver_arguments(kw, exc, match):
    args = {"f": lambda z: z, "z0": torch.zeros(1, 2), **kw}
    with pytest.raises(exc, match=match):
        dyn.anderson(args.pop("f"), args.pop("z0"), **args)


def test_invalid_damping_and_memory():
    with pytest.raises(ValueError, match=r"fixed_point: damping must be in \(0, 1\], got nan"):
        dyn.fixed_point(lambda z: z, torch.zeros(1, 2), damping=NAN)
    with pytest.raises(ValueError, match="anderson: memory must be an int >= 1"):
        dyn.anderson(lambda z: z, torch.zeros(1, 2), memory=0)


class _Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self, z):
        self.calls += 1
        return 0.5 * z


@pytest.mark.parametrize("kw,exc,match", [
    (dict(backward_tol=NAN), ValueError, "backward_tol must be positive or None"),
    (dict(backward_tol=0.0), ValueError, "backward_tol must be positive or None"),
    (dict(backward_tol="tiny"), TypeError, "backward_tol must be positive or None"),
    (dict(backward_max_iter=0), ValueError, "backward_max_iter must be an int >= 1 or None"),
    (dict(backward_max_iter=2.0), TypeError, "backward_max_iter must be an int >= 1 or None"),
    (dict(backward_max_iter=True), TypeError, "backward_max_iter must be an int >= 1 or None"),
    (dict(phantom_steps=0), ValueError, "expected phantom_steps >= 1 as an int"),
    (dict(phantom_steps=True), TypeError, "expected phantom_steps >= 1 as an int"),
    (dict(tol=-1.0), ValueError, "solve_fixed_point: tol must be positive or None"),
    (dict(max_iter=1.5), TypeError, "solve_fixed_point: max_iter must be an int >= 0"),
    (dict(solver_options={"memory": 3}), ValueError,
     r"unknown option\(s\) 'memory' in solver_options for solver 'fixed_point'; valid options: "
     r"stop_mode, damping, divergence_factor, warn, record"),
    (dict(solver="anderson", solver_options={"damping": 0.5, "beta": 1}), ValueError,
     r"unknown option\(s\) 'beta', 'damping' .*'anderson'; valid options: stop_mode, memory"),
    (dict(solver_options={"max_iter": 3}), ValueError, "solver_options may not set max_iter"),
    (dict(solver_options=[("damping", 0.5)]), TypeError, "solver_options must be a dict"),
    (dict(solver="newton"), ValueError, "Unknown solver 'newton'"),
])
@pytest.mark.parametrize("grad", ["unrolled", "implicit", "phantom"])
def test_solve_fixed_point_validates_before_solving(kw, exc, match, grad):
    f = _Counter()
    with pytest.raises(exc, match=match):
        dyn.solve_fixed_point(f, torch.ones(2, 3, requires_grad=True), grad=grad, **kw)
    assert f.calls == 0


def test_valid_solver_options_pass_and_kwargs_solvers_accept_any(monkeypatch):
    z, _ = dyn.solve_fixed_point(lambda z: 0.5 * z + 1, torch.zeros(2, 3, dtype=D),
                                 solver="anderson", max_iter=50, tol=1e-10,
                                 solver_options={"memory": 3, "mixing": 0.9})
    torch.testing.assert_close(z, torch.full_like(z, 2.0))
    seen = {}

    def custom(f, z0, *, max_iter, tol, **opts):
        seen.update(opts)
        return dyn.fixed_point(f, z0, max_iter=max_iter, tol=tol)

    monkeypatch.setitem(solvers_module._SOLVERS, "custom", custom)
    dyn.solve_fixed_point(lambda z: 0.5 * z, torch.ones(1, 2), solver="custom",
                          solver_options={"anything": 1})
    assert seen == {"anything": 1}


@pytest.mark.parametrize("name", SOLVERS)
def test_compiled_solve_keeps_one_graph_and_skips_the_check(name):
    out = {}

    def run(x):
        z, out["stats"] = _solve(name, lambda z: z * NAN, x, max_iter=3, tol=None)
        return z

    compiled = torch.compile(run, fullgraph=True, backend="eager")
    z = compiled(torch.ones(2, 3))
    assert torch.isnan(z).all()
    assert not out["stats"].checked and not out["stats"].converged


def test_fx_traced_fast_path_is_the_plain_loop():
    class Loop(torch.nn.Module):
        def forward(self, x):
            return dyn.fixed_point(lambda z: 0.5 * torch.tanh(z) + x, x, max_iter=3)[0]

    traced = torch.fx.symbolic_trace(Loop())
    x = torch.randn(2, 3)
    assert torch.equal(traced(x), Loop()(x))
    assert [n.op for n in traced.graph.nodes].count("call_function") == 9  # 3 x (mul, tanh, add)


@st.composite
def affine_maps(draw, max_scale):
    seed = draw(st.integers(0, 2**16))
    n = draw(st.integers(1, 6))
    batch = draw(st.integers(1, 3))
    scale = draw(st.floats(0.0, max_scale))
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, dtype=D, generator=gen)
    a = scale * a / torch.linalg.matrix_norm(a, 2).clamp_min(1e-12)
    b = torch.randn(batch, n, dtype=D, generator=gen)
    return a, b


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(affine_maps(max_scale=0.9), st.sampled_from(SOLVERS))
def test_contracting_affine_maps_converge(ab, name):
    a, b = ab
    f = lambda z: z @ a.t() + b  # noqa: E731
    z, stats = _solve(name, f, torch.zeros_like(b), max_iter=1000, tol=1e-10)
    assert stats.converged and not stats.diverged and stats.checked
    assert (f(z) - z).norm(dim=-1).max() <= 1e-8 * (1 + z.norm(dim=-1).max())


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(affine_maps(max_scale=4.0), st.sampled_from(SOLVERS), st.integers(0, 120))
def test_fixed_count_claims_convergence_only_when_finite(ab, name, max_iter):
    a, b = (t.float() for t in ab)  # float32 overflows to Inf within the allowed iterations
    f = lambda z: z @ a.t() + b  # noqa: E731
    try:
        z, stats = _solve(name, f, torch.zeros_like(b),
                          max_iter=max_iter, tol=None)
    except dyn.DivergenceError as err:
        assert not err.stats.converged and err.stats.diverged
    else:
        assert stats.converged == bool(torch.isfinite(z).all()) and stats.converged


def test_implicit_backward_divergence_names_the_backward_solve():
    w = (2.0 * torch.eye(3, dtype=D)).requires_grad_()  # u = v + J^T u with J = 2I: no solution
    b = torch.randn(2, 3, dtype=D)
    f = lambda z: z @ w.t() - b  # noqa: E731  (z = b is a fixed point, found at once from b)
    z, stats = dyn.solve_fixed_point(f, b.clone(), grad="implicit", max_iter=50, tol=1e-10,
                                     backward_max_iter=1100)  # 2**1100 overflows float64
    assert stats.converged
    with pytest.raises(dyn.DivergenceError, match="implicit backward solve .* diverged") as info:
        z.sum().backward()
    assert info.value.stats.diverged and not info.value.stats.converged
