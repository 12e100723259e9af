"""Several slow layers: block-coordinate (declared order) or simultaneous steps, against hand
formulas; clear errors for the block's inputs (docs/concepts/dynamics.md#block-coordinate)."""

import pytest
import torch

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S

D = torch.float64


def classifier_graph(pixels=5, hidden=4, classes=3):
    return hf.EnergyGraph(
        {"image": hf.NeuronLayer(pixels, L.Identity(), clamped=True),
         "hidden": hf.NeuronLayer(hidden, L.ReLU()),
         "label": hf.NeuronLayer(classes, L.Softmax(beta=2.0))},
        {"W1": S.Dense(pixels, hidden), "W2": S.Dense(hidden, classes)},
        {"W1": ("image", "hidden"), "W2": ("hidden", "label")}).double()


def _perturbed(graph):
    with torch.no_grad():
        for p in graph.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return graph


def hand_steps(graph, img, h, y, *, a, repeats, simultaneous):
    W1, W2 = graph.synapses["W1"], graph.synapses["W2"]
    soft = graph.lagrangian_of("label").activation
    for _ in range(repeats):
        i_h = W1.weight @ img.T + W1.bias[:, None] + W2.weight.T @ soft(y).T + W2.bias_back[:, None]
        h_new = h + a * (i_h.T - h)
        src = h if simultaneous else h_new  # block-coordinate: the label sees the new hidden
        i_y = (W2.weight @ torch.relu(src).T).T + W2.bias
        y = y + a * (i_y - y)
        h = h_new
    return h, y


@pytest.mark.parametrize("schedule", ["sequential", "simultaneous"])
def test_two_slow_layers_equal_the_hand_formulas(schedule):
    graph = _perturbed(classifier_graph())
    blk = hf.derive(graph, ["hidden", "label"], step="leaky", step_size=0.5, repeats=3,
                    schedule=schedule)
    img, h, y = (torch.randn(2, n, dtype=D) for n in (5, 4, 3))
    out_h, out_y = blk(h, y, image=img)
    exp_h, exp_y = hand_steps(graph, img, h, y, a=0.5, repeats=3,
                              simultaneous=schedule == "simultaneous")
    torch.testing.assert_close(out_h, exp_h, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out_y, exp_y, atol=1e-12, rtol=1e-12)
    text = blk.describe()
    assert "hidden" in text and "label" in text


def test_declared_order_decides_who_moves_first():
    graph = _perturbed(classifier_graph())
    a = hf.derive(graph, ["hidden", "label"], step="leaky", step_size=0.5)
    b = hf.derive(graph, ["label", "hidden"], step="leaky", step_size=0.5)
    img, h, y = (torch.randn(2, n, dtype=D) for n in (5, 4, 3))
    ha, ya = a(h, y, image=img)
    yb, hb = b(y, h, image=img)
    torch.testing.assert_close(ha, hand_steps(graph, img, h, y, a=0.5, repeats=1,
                                              simultaneous=False)[0])
    assert not torch.allclose(ya, yb)  # the label saw the old hidden state in b


def test_the_trace_records_one_step_per_slow_layer():
    graph = _perturbed(classifier_graph())
    blk = hf.derive(graph, ["hidden", "label"], step="leaky", step_size=0.5, repeats=2)
    img, h, y = (torch.randn(2, n, dtype=D) for n in (5, 4, 3))
    (oh, oy), trace = blk.run((h, y), {"image": img}, trace=True)
    assert [s.layers for s in trace.steps] == [("hidden",), ("label",)] * 2
    torch.testing.assert_close(trace.steps[-1].after["label"], oy)


@pytest.mark.parametrize("call,match", [
    (lambda b, h, y, img: b(h, y), r"missing state\(s\) of clamped layer\(s\) \['image'\]"),
    (lambda b, h, y, img: b(h, y, imgae=img), r"clamped input\(s\) \['imgae'\] name no clamped"),
    (lambda b, h, y, img: b(h, image=img), r"expected the states of the slow layers "
                                            r"\['hidden', 'label'\]"),
    (lambda b, h, y, img: b(h, y[:1], image=img), "has batch size 1, the others 2"),
    (lambda b, h, y, img: b(h, y, image=img[:, :4]), r"clamped layer 'image' expects input "
                                                      r"\(batch, 5\), got \(2, 4\)"),
])
def test_input_errors_name_the_layer(call, match):
    blk = hf.derive(classifier_graph(), ["hidden", "label"], step="leaky", step_size=0.5)
    img, h, y = (torch.randn(2, n, dtype=D) for n in (5, 4, 3))
    with pytest.raises((hf.WiringError, TypeError), match=match):
        call(blk, h, y, img)


def test_memory_copy_passed_by_hand_is_refused():
    blk = hf.blocks.vit_block(4, 4, 2)
    with pytest.raises(hf.WiringError, match="memory copies, filled from the slow layers"):
        blk(torch.randn(1, 4, 4), mem=torch.randn(1, 4, 4))


@pytest.mark.parametrize("slow,match", [
    (["hidden", "hidden"], "name a layer twice"),
    (["hidden", "image"], "must be slow and not clamped"),
    (["hidden", "nope"], "slow layer 'nope' is not a declared neuron"),
    ([], "name at least one slow layer"),
])
def test_slow_layer_errors(slow, match):
    with pytest.raises(hf.WiringError, match=match):
        hf.derive(classifier_graph(), slow)


def test_per_group_lagrangian_needs_one_slow_layer():
    g = classifier_graph()
    with pytest.raises(hf.WiringError, match="per-group lagrangian needs a group that steps one"):
        hf.derive(g, ["hidden", "label"], [hf.Group(["W1", "W2"], lagrangian=L.Tanh())])


def test_set_solve_replaces_frozen_plans():
    blk = hf.blocks.imixer_block(6, 4, max_iter=2)
    before = blk.plans[0]
    blk.set_solve(solver="anderson", tol=1e-6, max_iter=50)
    assert blk.plans[0].solver == "anderson" and before.solver == "fixed_point"
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['tolerance'\]"):
        blk.set_solve(tolerance=1e-3)
    with pytest.raises(ValueError, match="names no group"):
        blk.set_solve(group="nope", tol=1e-3)
    with pytest.raises(ValueError, match="tol must be a positive finite number"):
        blk.set_solve(tol=float("nan"))


def test_check_finite_names_the_group_and_layer():
    blk = hf.derive(classifier_graph(), ["hidden", "label"], step="leaky", step_size=0.5,
                    check_finite=True)
    img, h, y = (torch.randn(2, n, dtype=D) for n in (5, 4, 3))
    img[1, 0] = float("nan")
    with pytest.raises(hf.NonFiniteError, match=r"layer 'hidden' went NaN/Inf in group "
                                                r"'group1' \(pass 0\) for sample\(s\) \[1\]"):
        blk(h, y, image=img)
    blk.check_finite = False  # off: the NaN flows through silently, as torch would
    assert torch.isnan(blk(h, y, image=img)[0][1]).any()
