"""The safeguarded solver: plain iteration's cost where plain is fast, Anderson's where it is
slow (docs/concepts/fast_layers.md#convergence-and-divergence)."""

import pytest
import torch

import hopfield as hf
from hopfield.dynamics import anderson, fixed_point, safeguarded

D = torch.float64


def affine_map(rho, n=12, seed=0):
    """f(z) = A z + b, A symmetric with eigenvalues spread over [0, rho] (contraction rho)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=D))
    lam = torch.linspace(0.0, rho, n, dtype=D)
    a, b = q @ torch.diag(lam) @ q.T, torch.randn(n, generator=gen, dtype=D)
    return (lambda z: z @ a.T + b), torch.zeros(3, n, dtype=D)


@pytest.mark.parametrize("rho", [0.05, 0.2, 0.4])
def test_fast_maps_cost_what_plain_iteration_costs(rho):
    f, z0 = affine_map(rho)
    _, plain = fixed_point(f, z0, max_iter=500, tol=1e-10)
    z, st = safeguarded(f, z0, max_iter=500, tol=1e-10)
    assert st.converged and st.switched_at is None
    assert st.nfev == plain.nfev
    assert (f(z) - z).abs().max() < 1e-8


@pytest.mark.parametrize("rho", [0.9, 0.97, 0.99])
def test_slow_maps_switch_to_anderson_and_need_at_most_half(rho):
    f, z0 = affine_map(rho)
    _, plain = fixed_point(f, z0, max_iter=5000, tol=1e-10)
    _, acc = anderson(f, z0, max_iter=5000, tol=1e-10)
    z, st = safeguarded(f, z0, max_iter=5000, tol=1e-10)
    assert st.converged and st.switched_at is not None
    assert st.nfev <= 0.5 * plain.nfev, (st.nfev, plain.nfev)
    assert st.nfev <= 1.1 * acc.nfev + st.switched_at  # never far from Anderson alone
    assert (f(z) - z).abs().max() < 1e-7


def test_without_tol_it_is_plain_iteration():
    f, z0 = affine_map(0.5)
    a, _ = fixed_point(f, z0, max_iter=7)
    b, st = safeguarded(f, z0, max_iter=7, tol=None)
    assert torch.equal(a, b) and st.nfev == 7 and st.solver == "safeguarded"


@pytest.mark.parametrize("kw,match", [(dict(switch_ratio=1.0), "switch_ratio must be in"),
                                      (dict(min_plain=0), "min_plain must be an int >= 1")])
def test_bad_settings(kw, match):
    f, z0 = affine_map(0.5)
    with pytest.raises(ValueError, match=match):
        safeguarded(f, z0, tol=1e-6, **kw)


def test_a_block_can_use_it_and_says_so():
    blk = hf.blocks.imixer_block(8, 6, solver="safeguarded", tol=1e-8, max_iter=100).double()
    x = torch.randn(2, 8, 6, dtype=D)
    ref = hf.blocks.imixer_block(8, 6, solver="anderson", tol=1e-12, max_iter=200).double()
    ref.load_state_dict(blk.state_dict())
    torch.testing.assert_close(blk(x), ref(x), atol=1e-6, rtol=1e-6)
    assert "safeguarded" in blk.describe() and "switching to Anderson" in blk.describe()
