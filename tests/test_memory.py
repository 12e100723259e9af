"""Associative memories (hopfield.memory): the updates descend the graph's energy, stored patterns
are fixed points, known entries stay clamped, the fast paths equal the graph, and the CLI and the
capacity study run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hopfield as hf
from hopfield import memory
from hopfield.cli import main

ROOT = Path(__file__).resolve().parents[1]
ALL = memory.energy_names()
CONTINUOUS = [e for e in ALL if e not in memory.BINARY]


def random_patterns(k, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (k, n), generator=gen).double() * 2 - 1


def build(energy, xi, **kwargs):
    if energy in CONTINUOUS:
        kwargs.setdefault("dtype", torch.float64)
    return memory.store(energy, xi, **kwargs)


def rises(energy_trace, rel=1e-10):
    """Largest energy increase between records, relative to the energy's scale."""
    scale = energy_trace.abs().max().clamp(min=1.0)
    return float((energy_trace[1:] - energy_trace[:-1]).max() / scale) > rel


# ------------------------------------------------------------------ binary: exact coordinate descent
@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 8), n=st.integers(4, 20), seed=st.integers(0, 10_000),
       energy=st.sampled_from(memory.BINARY), beta=st.floats(0.1, 3.0))
def test_asynchronous_updates_never_raise_the_graph_energy(k, n, seed, energy, beta):
    xi = random_patterns(k, n, seed)
    mem = build(energy, xi, **({"beta": beta} if energy == "exp" else {}))
    gen = torch.Generator().manual_seed(seed)
    query = torch.randint(-1, 2, (3, n), generator=gen).double()  # -1, 0 (unknown), +1
    # one record after every single-unit update: the trace follows each flip
    result = mem.recall(query, records_per_sweep=n, steps=4, generator=gen)
    assert result.energy.shape == (1 + n * result.steps, 3)
    assert not rises(result.energy)
    # the fast decision equals the graph: E(s_i=+1) - E(s_i=-1) from graph.energy
    state = torch.where(query == 0, 1.0, query)
    for i in range(n):
        up, down = state.clone(), state.clone()
        up[:, i], down[:, i] = 1.0, -1.0
        gap = mem.graph.energy({"v": up}) - mem.graph.energy({"v": down})
        torch.testing.assert_close(mem.energy_gap(state, i), gap, rtol=1e-9, atol=1e-9)


def test_classical_update_is_the_sign_of_the_local_field_from_the_graph():
    xi = random_patterns(6, 40, 1)
    mem = memory.classical(xi)
    state = memory.flip_pixels(xi, 0.3, generator=torch.Generator().manual_seed(0))
    field = mem.graph.currents({"v": state})["v"]  # W s, zero diagonal
    weight = xi.T @ xi / 40
    weight.fill_diagonal_(0)
    torch.testing.assert_close(field, state @ weight)
    for i in range(40):
        gap = mem.energy_gap(state, i)
        assert torch.equal(-torch.sign(gap), torch.sign(field[:, i]))
    terms = mem.graph.energy_terms({"v": state})
    assert torch.equal(terms["v"], torch.zeros(6, dtype=torch.float64))  # Sign: no neuron term
    torch.testing.assert_close(terms["W"], -0.5 * ((state @ weight) * state).sum(-1))


def test_exp_decisions_are_demircigils():
    """The log-domain graph decides every flip as Demircigil's E = -sum_mu exp(beta m_mu)."""
    xi = random_patterns(12, 16, 2)
    mem = memory.exponential(xi, beta=0.7)
    state = random_patterns(5, 16, 3)
    for i in range(16):
        up, down = state.clone(), state.clone()
        up[:, i], down[:, i] = 1.0, -1.0
        raw = -(torch.exp(0.7 * up @ xi.T).sum(-1)) + torch.exp(0.7 * down @ xi.T).sum(-1)
        assert torch.equal(torch.sign(mem.energy_gap(state, i)), torch.sign(raw))


def test_sign_lagrangian_activation_and_legendre_term():
    lag = memory.Sign()
    x = torch.tensor([[-2.0, 0.5, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(lag.activation(x), lag.activation_autograd(x))
    layer = hf.NeuronLayer(3, lag)
    assert float(layer.energy(x)) == 0.0


# ------------------------------------------------------------------ continuous: leaky descent
@pytest.mark.parametrize("energy", CONTINUOUS)
@pytest.mark.parametrize("masked", [False, True])
def test_energy_never_rises_at_the_documented_step(energy, masked):
    xi = random_patterns(10, 48, 4) * torch.rand(10, 48, dtype=torch.float64)  # not only ±1
    mem = build(energy, xi)
    query = torch.randn(6, 48, dtype=torch.float64).clamp(-1, 1)
    mask = torch.rand(6, 48) < 0.4 if masked else None
    result = mem.recall(query, mask, steps=60, tol=1e-14)
    assert not rises(result.energy)
    assert result.energy[-1].lt(result.energy[0]).all()


def test_ham_relu_and_smaller_steps_descend_too():
    xi = random_patterns(12, 32, 5)
    query = memory.flip_pixels(xi, 0.3, generator=torch.Generator().manual_seed(1))
    for mem in (memory.hierarchical(xi, hidden="relu", beta=3.0, dtype=torch.float64),
                memory.modern(xi, beta=0.3, step_size=0.4, dtype=torch.float64),
                memory.hierarchical(xi, beta=0.3, step_size=0.4, dtype=torch.float64)):
        assert not rises(mem.recall(query, steps=40, tol=1e-14).energy), mem.name


@settings(max_examples=20, deadline=None)
@given(k=st.integers(1, 12), n=st.integers(2, 24), beta=st.floats(0.05, 4.0),
       step=st.floats(0.05, 1.0), seed=st.integers(0, 10_000))
def test_lse_descent_property(k, n, beta, step, seed):
    gen = torch.Generator().manual_seed(seed)
    xi = torch.randn(k, n, generator=gen, dtype=torch.float64)
    mem = memory.modern(xi, beta=beta, step_size=step, dtype=torch.float64)
    query = torch.randn(4, n, generator=gen, dtype=torch.float64)
    assert not rises(mem.recall(query, steps=15, tol=1e-14).energy)


def test_ham_with_settled_hidden_layer_is_the_lse_memory():
    xi = random_patterns(7, 20, 6) * 0.8
    ham = memory.hierarchical(xi, beta=1.5, dtype=torch.float64)
    lse = memory.modern(xi, beta=1.5, dtype=torch.float64)
    query = torch.randn(5, 20, dtype=torch.float64)
    torch.testing.assert_close(ham.energy(ham.start(query)), lse.energy(lse.start(query)))
    a, b = ham.recall(query, steps=5), lse.recall(query, steps=5)
    torch.testing.assert_close(a.output, b.output)
    torch.testing.assert_close(a.energy, b.energy)


@pytest.mark.parametrize("energy", ["tanh", "ham"])
def test_recall_without_mask_is_descend(energy):
    xi = random_patterns(5, 24, 7)
    mem = build(energy, xi)
    query = torch.randn(3, 24, dtype=torch.float64)
    ours = mem.recall(query, steps=12, tol=1e-300)  # stops early only on an exact fixed point
    xs, stats = hf.dynamics.descend(mem.graph, mem.start(query), steps=ours.steps,
                                    step_size=mem.step_size, rule="leaky")
    torch.testing.assert_close(ours.states["v"], xs["v"])
    torch.testing.assert_close(ours.energy, stats.energy_matrix())


def test_tanh_graph_energy_is_beta_times_the_gain_beta_energy():
    xi = random_patterns(4, 10, 8)
    beta = 3.0
    mem = memory.tanh(xi, beta=beta, dtype=torch.float64)
    x = torch.randn(2, 10, dtype=torch.float64)  # the state in units of the query
    g = torch.tanh(beta * x)
    weight = xi.T @ xi / 10
    weight.fill_diagonal_(0)
    e_beta = ((x * g).sum(-1) - torch.log(torch.cosh(beta * x)).sum(-1) / beta
              - 0.5 * ((g @ weight) * g).sum(-1))
    torch.testing.assert_close(mem.energy({"v": beta * x}), beta * e_beta)


# ------------------------------------------------------------------ fixed points and clamping
@pytest.mark.parametrize("energy", ALL)
def test_stored_patterns_are_fixed_points_below_capacity(energy):
    xi = random_patterns(5, 128, 9)
    result = build(energy, xi).recall(xi)
    assert torch.equal(torch.sign(result.output), xi)
    assert result.converged.all()
    if energy in memory.BINARY:
        assert result.steps == 1  # the first sweep flips nothing
    torch.testing.assert_close(memory.overlap(result.output, xi), torch.ones(5, dtype=torch.float64))


@pytest.mark.parametrize("energy", ALL)
def test_known_entries_stay_clamped(energy):
    xi = random_patterns(6, 64, 10)
    mem = build(energy, xi)
    known = memory.hide_rows(6, 0.5, side=8)
    query = torch.where(known, memory.flip_pixels(xi, 0.2), 0.0)
    result = mem.recall(query, known, keep_history=True)
    gain = getattr(mem, "gain", 1.0)
    for record in result.history:
        start = mem.graph.activations({"v": gain * query})["v"]
        assert torch.equal(record[known], start[known])
    assert torch.equal(result.states["v"][known], (gain * query)[known])


def test_recall_completes_half_patterns():
    xi = random_patterns(8, 100, 11)
    known = torch.zeros(8, 100, dtype=torch.bool)
    known[:, :50] = True
    for energy in ("poly", "exp", "lse", "ham"):
        out = build(energy, xi).recall(torch.where(known, xi, 0.0), known).output
        assert torch.equal(memory.nearest(out, xi), torch.arange(8)), energy
        assert torch.equal(torch.sign(out), xi), energy


def test_beta_override_rebuilds_the_memory():
    xi = random_patterns(6, 30, 12)
    mem = memory.exponential(xi, beta=1.0)
    assert mem.with_beta(0.2).beta == 0.2 and mem.beta == 1.0
    query = memory.flip_pixels(xi, 0.1)
    assert torch.equal(mem.recall(query, beta=0.2).output, mem.with_beta(0.2).recall(query).output)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: memory.classical(torch.rand(3, 10)), ValueError, "expected ±1 patterns"),
    (lambda: memory.classical([[1, -1]]), TypeError, "expected patterns as a tensor"),
    (lambda: memory.modern(torch.ones(5)), ValueError, r"shape \(num_patterns >= 1, N >= 2\)"),
    (lambda: memory.polynomial(torch.ones(2, 4), n=3, rectified=False), ValueError, "even degree"),
    (lambda: memory.polynomial(torch.ones(2, 4), n=1), ValueError, "degree n >= 2"),
    (lambda: memory.modern(torch.ones(2, 4), step_size=1.5), ValueError, "step_size <= 1"),
    (lambda: memory.exponential(torch.ones(2, 4), beta=0.0), ValueError, "positive finite beta"),
    (lambda: memory.hierarchical(torch.ones(2, 4), hidden="gelu"), ValueError,
     "unknown hidden 'gelu'; valid: softmax, relu"),
    (lambda: memory.store("hebb", torch.ones(2, 4)), ValueError, "unknown energy 'hebb'; valid"),
])
def test_construction_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_recall_errors():
    mem = memory.classical(random_patterns(3, 8))
    good = random_patterns(2, 8)
    with pytest.raises(ValueError, match=r"expected query of shape \(batch, N=8\), got \(2, 9\)"):
        mem.recall(torch.ones(2, 9))
    with pytest.raises(ValueError, match="expected a binary query"):
        mem.recall(good * 0.5)
    with pytest.raises(TypeError, match="expected mask as a bool tensor"):
        mem.recall(good, torch.ones(2, 8))
    with pytest.raises(ValueError, match=r"expected mask of the query's shape \(2, 8\)"):
        mem.recall(good, torch.ones(2, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="has no inverse temperature"):
        mem.recall(good, beta=2.0)
    with pytest.raises(ValueError, match="steps >= 1"):
        mem.recall(good, steps=0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        memory.modern(good).recall(torch.full((1, 8), float("nan")))
    with pytest.raises(ValueError, match="records_per_sweep applies to binary"):
        memory.modern(good).recall(good, records_per_sweep=2)
    with pytest.raises(ValueError, match="expected records_per_sweep <= N=8"):
        mem.recall(good, records_per_sweep=9)
    with pytest.raises(ValueError, match="expected unit < N=8"):
        mem.energy_gap(good, 8)


# ------------------------------------------------------------------ CLI and scripts
def test_cli_recall_writes_figure_and_numbers(tmp_path, capsys):
    out = tmp_path / "figs" / "recall.png"
    code = main(["recall", "--energy", "exp", "--patterns", "8", "--queries", "4", "--show", "2",
                 "--mask", "0.5", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert out.exists() and out.with_suffix(".csv").exists()
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["queries"] == 4 and summary["accuracy"] == 1.0
    assert summary["energy"] == "exp" and len(summary["energy_trace"]) == 4
    assert all(e[-1] <= e[0] for e in summary["energy_trace"])
    assert "nearest-pattern accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--mask", "1.5"], "--mask: expected a fraction of rows in [0, 1], got 1.5"),
    (["--energy", "classical", "--beta", "2"], "--beta: the classical energy has no inverse"),
    (["--patterns", "0"], "--patterns: expected 1..6000 stored images, got 0"),
    (["--out", "recall.txt"], "--out: expected a .png file name"),
    (["--energy", "ham", "--degree", "3"], "--degree: only the poly energy has a degree"),
])
def test_cli_recall_usage_errors(tmp_path, capsys, args, message):
    code = main(["recall", "--patterns", "4", *args] if "--patterns" not in args
                else ["recall", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_cli_recall_rejects_an_unknown_energy(capsys):
    assert main(["recall", "--energy", "hebb"]) == 2
    assert "invalid choice: 'hebb'" in capsys.readouterr().err


def test_capacity_script_quick_mode(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memory_capacity.py"),
                           "--quick", "--sizes", "32", "--energies", "classical", "exp",
                           "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert [name for _, name, _ in lines] == ["memory_capacity_classical_N32",
                                              "memory_capacity_exp_N32"]
    classical = float(lines[0][2])
    assert 1 <= classical <= 0.3 * 32  # Hebb at N = 32: a few patterns
    record = json.loads((tmp_path / "memory_capacity_quick.json").read_text())
    assert set(record["curves"]) == {"classical_N32", "exp_N32"}
    assert (tmp_path / "memory_capacity_quick.png").exists()
    assert "| classical | 32 |" in (tmp_path / "memory_capacity_quick.md").read_text()


def test_images_script_quick_mode(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memory_images.py"),
                           "--quick", "--energies", "exp", "lse", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("RESULT memory_images_") == 8
    record = json.loads((tmp_path / "memory_images_quick.json").read_text())
    assert all(0.0 <= c["accuracy"] <= 1.0 for c in record["cells"])


def test_overlap_and_nearest_refuse_states_of_another_length():
    xi = torch.ones(3, 16)
    for fn in (memory.overlap, memory.nearest):
        with pytest.raises(ValueError, match=r"of one length N, got \(2, 8\) and \(3, 16\)"):
            fn(torch.ones(2, 8), xi)
        with pytest.raises(ValueError, match="flatten images first"):
            fn(torch.ones(2, 4, 4), xi)
