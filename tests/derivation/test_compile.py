"""Derived blocks compile with ``torch.compile(fullgraph=True)``: the fixed-k catalogue, blocks
that solve to a ``tol`` (masked solves, docs/concepts/fast_layers.md#masked-solves) and blocks
whose currents come from ``torch.func`` (docs/concepts/synapses.md#currents-under-torch-func).

The tests use the ``eager`` and ``aot_eager`` backends (dynamo's tracing is what ``fullgraph``
checks); one ``slow`` test compiles a solve with inductor.
"""

import copy
import warnings

import pytest
import torch
from catalogue import DIM, FIXED_K, N

import hopfield as hf
from hopfield.dynamics import masked, solve_fixed_point
from hopfield.dynamics.solvers import ConvergenceWarning

D = torch.float64
B = hf.blocks


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def compiled_pair(blk, backend="eager"):
    """``(eager, compiled)``: two copies with the same parameters and buffers."""
    other = copy.deepcopy(blk)
    return blk, torch.compile(other, fullgraph=True, backend=backend)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", sorted(FIXED_K))
def test_fixed_k_blocks_compile_with_fullgraph(name, mode):
    eager, comp = compiled_pair(FIXED_K[name]().to(D).train(mode == "train"))
    x = torch.randn(2, N, DIM, dtype=D)
    torch.testing.assert_close(comp(x), eager(x), atol=1e-12, rtol=1e-12)
    for (k, a), b in zip(eager.named_buffers(), comp.buffers(), strict=True):  # same side effects
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12, msg=k)


@pytest.mark.parametrize("solver", ["fixed_point", "anderson"])
def test_a_block_that_solves_to_a_tol_compiles_with_fullgraph(solver):
    blk = B.imixer_block(N, DIM, 3, 3, 5, max_iter=16, tol=1e-6, solver=solver, coeff=0.5)
    blk = blk.to(D).eval()
    eager, comp = compiled_pair(blk)
    x = torch.randn(3, N, DIM, dtype=D)
    with torch.no_grad():
        ref = eager(x)
        ran = eager.last_stats["token mixing (iMLP)/0"]
        out = comp(x)
    assert ran.converged and ran.iterations < 16
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    (stats,) = comp.last_stats.values()  # honest: nothing was read while compiled
    assert not stats.checked and not stats.converged and stats.iterations == 16
    assert stats.residuals[-1] < 1e-6


def test_a_compiled_tol_block_trains_like_the_eager_one():
    blk = B.imixer_block(N, DIM, 3, 3, 5, max_iter=12, tol=1e-6, coeff=0.5).to(D).train()
    eager, comp = compiled_pair(blk)
    x = torch.randn(2, N, DIM, dtype=D)
    for model in (eager, comp):
        model(x).square().sum().backward()
    (ran,) = eager.last_stats.values()
    assert ran.converged and ran.iterations < 12  # the compiled solve froze its last iterations
    for (k, a), b in zip(eager.named_parameters(), comp.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-6, msg=k)


def _map(x):
    return lambda z: 0.5 * torch.tanh(z) + x


@pytest.mark.parametrize("solver", ["fixed_point", "anderson"])
def test_masked_solvers_equal_the_eager_ones(solver):
    x = torch.randn(4, 6, dtype=D)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref, st = solve_fixed_point(_map(x), x, solver=solver, max_iter=50, tol=1e-9)
    z, stats = masked.static_solver(solver, None)(_map(x), x, max_iter=50, tol=1e-9)
    assert st.converged and st.iterations < 50
    torch.testing.assert_close(z, ref, atol=1e-14, rtol=0)
    assert stats.iterations == 50 and not stats.checked and stats.residuals[-1] < 1e-9


def test_per_sample_freezing_and_the_empty_batch():
    x = torch.randn(4, 6, dtype=D) * torch.tensor([1e-3, 1.0, 3.0, 10.0], dtype=D)[:, None]
    z, _ = masked.masked_fixed_point(_map(x), x, max_iter=60, tol=1e-8, per_sample=True)
    torch.testing.assert_close(z, _map(x)(z), atol=1e-7, rtol=0)
    empty = torch.zeros(0, 6, dtype=D)
    assert masked.masked_fixed_point(_map(empty), empty, max_iter=5, tol=1e-6)[0] is empty


def test_a_solver_without_a_masked_variant_says_why():
    x = torch.randn(3, 2, 4, dtype=D)
    with pytest.raises(ValueError, match="cannot solve to a tol under torch.compile"):
        torch.func.vmap(lambda v: solve_fixed_point(_map(v), v, solver="broyden", max_iter=5,
                                                    tol=1e-6)[0])(x)


def test_vmap_of_a_tol_solve_equals_a_loop():
    x = torch.randn(3, 2, 4, dtype=D)
    out = torch.func.vmap(lambda v: solve_fixed_point(_map(v), v, max_iter=60, tol=1e-10)[0])(x)
    loop = torch.stack([solve_fixed_point(_map(v), v, max_iter=60, tol=1e-10)[0] for v in x])
    torch.testing.assert_close(out, loop, atol=1e-14, rtol=0)


@pytest.mark.slow
def test_inductor_compiles_a_solve_to_a_tol():
    def run(x):
        return solve_fixed_point(_map(x), x, max_iter=30, tol=1e-6)[0]

    x = torch.randn(3, 5)
    torch.testing.assert_close(torch.compile(run, fullgraph=True)(x), run(x), atol=1e-6, rtol=0)
