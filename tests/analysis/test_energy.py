"""Energy recording during inference (hopfield.analysis.record) and the compiled descent path.

On tied, convex groups the recorded energy never increases across solver iterations or descent
steps (docs/concepts/fast_layers.md#tied-descent,
docs/concepts/dynamics.md#energy-descent-during-inference); untied blocks are labelled as
surrogate + residual records.
"""

import json
import math
import warnings

import numpy as np
import pytest
import torch

import hopfield as hf
from hopfield import lagrangians as L
from hopfield.analysis.record import (
    LABEL_LYAPUNOV,
    LABEL_UNTIED,
    EnergyRecord,
    record_block,
    record_descent,
    record_energy,
    record_model,
)
from hopfield.cli.energy import load_model

TOL = 1e-10  # float64 round-off allowance, relative to max(|E|, 1)


def _assert_never_increases(rec, block=None, group=None):
    assert rec.max_increase(block, group) <= TOL, rec.max_increase(block, group)


# ---------------------------------------------------------------------- tied, convex: descent
@pytest.mark.parametrize("seed", range(4))
def test_tied_imixer_iterations_never_increase_energy(f64, seed):
    torch.manual_seed(seed)
    blk = hf.blocks.tied_imixer_block(num_tokens=8, dim=6, max_iter=10)
    rec = record_block(blk, 2.0 * torch.randn(5, 8, 6))
    s = rec.series(0, "token mixing (iMLP)")
    assert s["kind"] == "iteration" and s["energy"].shape == (11, 5)
    assert s["lyapunov"] and s["label"] == LABEL_LYAPUNOV and s["tied"] and s["convex"]
    _assert_never_increases(rec, 0, "token mixing (iMLP)")
    assert s["energy"][-1].mean() < s["energy"][0].mean()  # it does descend
    assert s["residual"][-1].max() < s["residual"][0].max()


def test_imixer_residual_matches_solver_stats(f64):
    torch.manual_seed(0)
    blk = hf.blocks.tied_imixer_block(num_tokens=8, dim=6, max_iter=5,
                                      solver_options={"record": True})
    rec = record_block(blk, torch.randn(3, 8, 6))
    s = rec.series(0, "token mixing (iMLP)")
    stats = blk.last_stats["token mixing (iMLP)/0"]
    # residual of iterate i is ||z_i - f(z_i)||, which the solver records as ||z_{i+1} - z_i||
    np.testing.assert_allclose(s["residual"][:-1].max(1),
                               [float(a) for a in stats.abs_residuals], rtol=1e-9)
    # tied: the recorded gradient norm over the iterated layers is the same residual
    np.testing.assert_allclose(s["grad_norm"], s["residual"], rtol=1e-8, atol=1e-10)


def test_imixer_energy_terms_match_graph_energy_at_solution(f64):
    torch.manual_seed(1)
    blk = hf.blocks.tied_imixer_block(num_tokens=8, dim=6, max_iter=4)
    x = torch.randn(3, 8, 6)
    rec = record_block(blk, x)
    plan = blk.plans[0]
    blk.eval()
    with torch.no_grad():
        _, xs, _, _ = blk.group_step(plan, x, {}, return_states=True)
        xs = {n: xs.get(n, torch.zeros(3, *blk.graph.neurons[n].shape)) for n in blk.graph.neurons}
        terms = blk.graph.energy_terms(xs)
    s = rec.series(0, "token mixing (iMLP)")
    for k in ("x", "x2", "x3", "token_in", "token_feedback"):
        np.testing.assert_allclose(s["terms"][k][-1], terms[k].numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_et_block_descent_never_increases_energy(f64, seed):
    torch.manual_seed(seed)
    blk = hf.blocks.et_block(num_tokens=6, dim=8, num_heads=2, steps=8, step_size=0.1)
    rec = record_block(blk, torch.randn(4, 6, 8))
    s = rec.series(0)
    assert s["kind"] == "step" and s["energy"].shape == (9, 4)  # T steps: T + 1 states
    # residual steps carry no proven descent of the total energy (the report says PARTIAL,
    # docs/concepts/guarantees.md); the recorded E_syn still falls on these inputs
    assert not s["lyapunov"] and s["label"] != LABEL_LYAPUNOV
    assert "x" not in s["terms"]  # residual steps: the visible Legendre term is excluded
    _assert_never_increases(rec)


def test_et_energy_is_attention_plus_eliminated_memory(f64):
    torch.manual_seed(0)
    blk = hf.blocks.et_block(num_tokens=5, dim=8, num_heads=2, steps=1)
    x = torch.randn(3, 5, 8)
    rec = record_block(blk, x)
    g = blk.graph.lagrangian_of("x").activation(x)
    xi = blk.graph.synapses["hopfield"].weight
    expect = blk.graph.synapses["attn"].energy(g) - 0.5 * (torch.relu(g @ xi.t()) ** 2).sum((1, 2))
    np.testing.assert_allclose(rec.series(0)["energy"][0], expect.detach().numpy(), rtol=1e-10)


def _random_graph(gen, n_layers):
    lags = [lambda d: L.Identity(), lambda d: L.ReLU(), lambda d: L.Softmax(beta=1.5),
            lambda d: L.Tanh(), lambda d: L.Sigmoid(),
            lambda d: L.LayerNorm(d, per_feature=False)]
    neurons, synapses, edges = {}, {}, {}
    dims = [int(torch.randint(2, 7, (), generator=gen)) for _ in range(n_layers)]
    for i, d in enumerate(dims):
        lag = lags[int(torch.randint(len(lags), (), generator=gen))](d)
        fast = i > 0 and i == n_layers - 1 and bool(torch.randint(2, (), generator=gen))
        neurons[f"l{i}"] = hf.NeuronLayer(d, lag, tau=0 if fast else 1.0)
    for i in range(1, n_layers):  # a chain plus one random extra edge
        synapses[f"s{i}"] = hf.synapses.Dense(dims[i - 1], dims[i])
        edges[f"s{i}"] = (f"l{i - 1}", f"l{i}")
    a, b = sorted(torch.randperm(n_layers, generator=gen)[:2].tolist())
    synapses["extra"] = hf.synapses.Dense(dims[a], dims[b])
    edges["extra"] = (f"l{a}", f"l{b}")
    graph = hf.EnergyGraph(neurons, synapses, edges)
    with torch.no_grad():
        for s in graph.synapses.values():
            s.weight.mul_(0.8)
            s.bias.normal_(0, 0.3)
    return graph


@pytest.mark.parametrize("seed", range(12))
def test_random_tied_convex_graphs_descend(f64, seed):
    gen = torch.Generator().manual_seed(seed)
    graph = _random_graph(gen, n_layers=int(torch.randint(2, 5, (), generator=gen)))
    xs = graph.init_states(4, std=1.0, generator=gen)
    rec = record_descent(graph, xs, steps=40, step_size=0.1)
    s = rec.series(0)
    # the label follows the report (YES only where every condition is proved: an unbounded
    # energy or a layer-norm step bound it does not meet is not)
    assert s["lyapunov"] == hf.lyapunov_report(graph, step_size=0.1).holds
    assert (s["label"] == LABEL_LYAPUNOV) == s["lyapunov"]
    # step 0 may start with unsettled fast layers; descend settles them at every step
    _assert_never_increases(rec)


def test_record_descent_matches_descend_stats(f64):
    gen = torch.Generator().manual_seed(3)
    graph = _random_graph(gen, 3)
    xs = graph.init_states(2, std=1.0, generator=gen)
    rec = record_descent(graph, xs, steps=7, step_size=0.2)
    _, stats = hf.dynamics.descend(graph, xs, steps=7, step_size=0.2)
    s = rec.series(0)
    np.testing.assert_allclose(s["energy"], stats.energy_matrix().numpy(), rtol=1e-12)
    np.testing.assert_allclose(s["grad_norm"], torch.stack(stats.grad_norm).numpy(), rtol=1e-12)
    assert rec.outputs["l0"].shape == (2, *graph.neurons["l0"].shape)


def test_record_descent_residual_rule_drops_moving_legendre_terms(f64):
    gen = torch.Generator().manual_seed(5)
    graph = _random_graph(gen, 3)
    rec = record_descent(graph, graph.init_states(2, std=1.0, generator=gen), steps=3,
                         rule="residual", step_size=0.05)
    terms = rec.series(0)["terms"]
    moving = [n for n, l in graph.neurons.items() if not l.is_fast]
    assert not set(moving) & set(terms)


# ---------------------------------------------------------------------- labels and flags
def test_untied_block_is_labelled_surrogate(f64):
    torch.manual_seed(0)
    blk = hf.blocks.imixer_block(num_tokens=8, dim=8, max_iter=3, act="relu")
    rec = record_block(blk, torch.randn(2, 8, 8))
    for g in rec.groups(0):
        s = rec.series(0, g)
        assert not s["tied"] and not s["lyapunov"] and s["label"] == LABEL_UNTIED
    assert rec.blocks[0]["label"] == LABEL_UNTIED and "untied" in rec.blocks[0]["report"]
    assert all(r["label"].startswith("untied") and r["tied"] is False for r in rec.to_rows())


def test_tied_nonconvex_block_has_no_guarantee(f64):
    blk = hf.blocks.imixer_block(num_tokens=8, dim=8, max_iter=2, act="gelu", tied=True)
    s = record_block(blk, torch.randn(2, 8, 8)).series(0, "token mixing (iMLP)")
    assert s["tied"] and not s["convex"] and not s["lyapunov"]
    assert s["label"].startswith("tied but non-convex") and "no descent guarantee" in s["label"]


def test_vit_and_mixer_blocks_record(f64):
    for blk in (hf.blocks.vit_block(5, 8, 2), hf.blocks.mixer_block(5, 8)):
        rec = record_block(blk, torch.randn(2, 5, 8))
        assert len(rec.groups(0)) == 2
        for g in rec.groups(0):
            s = rec.series(0, g)
            assert s["energy"].shape == (2, 2) and np.isfinite(s["energy"]).all()
            assert s["label"] == LABEL_UNTIED


# ---------------------------------------------------------------------- model, files, checkpoints
def _small_model(name="imixer_tied_tiny", **kw):
    return hf.models.create_model(name, depth=2, dim=16, **kw)


def test_record_model_every_block_and_files(tmp_path):
    model = _small_model()
    images = torch.randn(3, 1, 28, 28)
    rec = record_model(model, images, n_iter=3)
    assert [rec.blocks[b]["name"] for b in sorted(rec.blocks)] == ["blocks.0", "blocks.1"]
    assert rec.series(1, "token mixing (iMLP)")["energy"].shape == (4, 3)
    assert all(p.max_iter == 2 for b in model.blocks for p in b.plans)  # settings restored
    with torch.no_grad():  # recording leaves the forward pass unchanged
        torch.testing.assert_close(record_model(model, images).outputs, model.eval()(images))
    rows = rec.to_rows()
    assert len(rows) == len(rec.points) * 3
    rec.to_csv(tmp_path / "e.csv")
    rec.to_json(tmp_path / "e.json")
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert len(lines) == len(rows) + 1 and lines[0].startswith("source,block,")
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["format"] == "hopfield.energy/1" and len(doc["rows"]) == len(rows)
    back = EnergyRecord.from_json(tmp_path / "e.json")
    np.testing.assert_allclose(back.series(0)["energy"], rec.series(0)["energy"])


def test_record_energy_dispatch_and_bad_settings():
    blk = hf.blocks.tied_imixer_block(4, 4, max_iter=1)
    assert record_energy(blk, torch.randn(1, 4, 4)).groups(0)
    with pytest.raises(ValueError, match="Unknown solver"):
        record_block(blk, torch.randn(1, 4, 4), solver="newton")
    with pytest.raises(ValueError, match="n_iter"):
        record_block(blk, torch.randn(1, 4, 4), n_iter=-1)
    with pytest.raises(hf.WiringError, match="expects input"):
        record_block(blk, torch.randn(1, 5, 4))
    with pytest.raises(TypeError, match="no DerivedBlock"):
        record_model(torch.nn.Linear(2, 2), torch.randn(1, 2))


def test_overrides_solver_and_et_steps():
    blk = hf.blocks.tied_imixer_block(6, 4, max_iter=2)
    rec = record_block(blk, torch.randn(2, 6, 4), solver="anderson", tol=1e-6, n_iter=30)
    s = rec.series(0, "token mixing (iMLP)")
    assert s["residual"][-1].max() < 1e-4
    assert not s["lyapunov"] and "solver 'anderson'" in s["label"]  # no monotonicity promise
    et = hf.blocks.et_block(4, 8, 2, steps=2)
    assert record_block(et, torch.randn(1, 4, 8), n_iter=5).series(0)["energy"].shape[0] == 6
    assert et.repeats == 2


def test_load_model_from_checkpoints(tmp_path):
    model = _small_model()
    images = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        ref = model.eval()(images)
    torch.save({"model": model.state_dict(), "config": model.config}, tmp_path / "a.pt")
    torch.save({"model": model.state_dict(), "model_config": model.config,
                "config": {"model": "imixer_tied_tiny", "epochs": 1},
                "normalize": {"mean": [0.5], "std": [0.25]}}, tmp_path / "b.pt")
    torch.save(model.state_dict(), tmp_path / "c.pt")
    for name, kw in (("a.pt", {}), ("b.pt", {}), ("c.pt", {"name": "imixer_tied_tiny"})):
        if name == "c.pt":
            kw.update(depth=2, dim=16)
        loaded, info = load_model(tmp_path / name, **kw)
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(images), ref)
    assert load_model(tmp_path / "b.pt")[1]["normalize"]["std"] == [0.25]
    with pytest.raises(ValueError, match="--model NAME"):
        load_model(tmp_path / "c.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


# ---------------------------------------------------------------------- compiled descent
def _bench_like_graph(image=12, hidden=8, label=3):
    return hf.EnergyGraph(
        neurons={"image": hf.NeuronLayer(image, L.Identity()),
                 "hidden": hf.NeuronLayer(hidden, L.ReLU()),
                 "label": hf.NeuronLayer(label, L.Softmax())},
        synapses={"W1": hf.synapses.Dense(image, hidden, bias=False),
                  "W2": hf.synapses.Dense(hidden, label, bias=False)},
        edges={"W1": ("image", "hidden"), "W2": ("hidden", "label")})


def test_descend_compiled_eager_path_equals_descend(f64):
    gen = torch.Generator().manual_seed(0)
    graph = _random_graph(gen, 4)
    xs = graph.init_states(3, std=1.0, generator=gen)
    a, sa = hf.dynamics.descend(graph, xs, steps=6, step_size=0.1)
    b, sb = hf.dynamics.descend_compiled(graph, xs, steps=6, step_size=0.1, compile=False)
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=0)
    torch.testing.assert_close(sa.energy_matrix(), sb.energy_matrix())
    with pytest.raises(ValueError, match="unknown rule"):
        hf.dynamics.descend_compiled(graph, xs, rule="newton")
    with pytest.raises(ValueError, match="either mode or options"):
        hf.dynamics.descend_compiled(graph, xs, mode="default", options={"cpp.threads": 1})
    with pytest.raises(ValueError, match="Unexpected optimization option no_such_option"):
        hf.dynamics.descend_compiled(graph, xs, steps=1, options={"no_such_option": 1})


@pytest.mark.slow
def test_descend_compiled_matches_eager(f64, needs_compile):
    torch.manual_seed(0)
    graph = _bench_like_graph()
    xs = graph.init_states(4, std=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", hf.dynamics.CompileFallbackWarning)
        a, _ = hf.dynamics.descend_compiled(graph, xs, steps=20, record=False)
    b, _ = hf.dynamics.descend(graph, xs, steps=20, record=False)
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_descend_compiled_falls_back_with_warning(f64, needs_compile):
    # a synapse whose energy reads a tensor back into Python cannot be captured in one graph
    graph = hf.EnergyGraph(
        neurons={"a": hf.NeuronLayer(3, L.Identity()), "b": hf.NeuronLayer(2, L.Tanh())},
        synapses={"f": hf.synapses.FunctionSynapse(
            lambda ga, gb: -(ga[:, :2] * gb).sum(-1) * (2.0 if bool(ga.sum() > 1e9) else 1.0),
            2)},
        edges={"f": ("a", "b")})
    xs = graph.init_states(2, std=1.0)
    with pytest.warns(hf.dynamics.CompileFallbackWarning, match="falling back"):
        a, _ = hf.dynamics.descend_compiled(graph, xs, steps=3, record=False)
    b, _ = hf.dynamics.descend(graph, xs, steps=3, record=False)
    for n in a:
        torch.testing.assert_close(a[n], b[n])
    assert math.isfinite(float(a["a"].detach().sum()))


def test_records_refuse_nan_energies_unless_asked():
    from hopfield.analysis.record import record_block

    blk = hf.blocks.et_block(6, 4, num_heads=2, steps=2).eval()
    x = torch.randn(2, 6, 4)
    x[1, 0, 0] = float("nan")
    with pytest.raises(hf.NonFiniteError, match=r"energy is NaN/Inf .* sample\(s\) \[1\]"):
        record_block(blk, x)
