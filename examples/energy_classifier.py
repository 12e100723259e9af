"""Classify Fashion-MNIST by energy descent: an image clamped, a hidden layer and the label slow.

The energy (docs/tutorials/energy_classifier.md)

    E = ½|x_img|² + ½|relu(x_hid)|² + β⁻¹ Σ p log p − <g_hid, W1 g_img + b1> − <g_lab, W2 g_hid + b2> − …

is declared once; ``hf.derive(graph, ["hidden", "label"])`` turns it into a block that steps the
hidden layer, then the label (block-coordinate, leaky Euler), ``T`` times. The prediction is the
label state after the descent; training backpropagates through the descent.

    python examples/energy_classifier.py            # 3 epochs on the bundled subset (~1 min)
    python examples/energy_classifier.py --smoke    # a few steps (tests)
"""

from __future__ import annotations

import argparse

import torch
from torch.nn import functional as F

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S
from hopfield.training.data import load_dataset


def declare(pixels: int = 784, hidden: int = 128, classes: int = 10, beta: float = 4.0):
    return hf.EnergyGraph(
        neurons={"image": hf.NeuronLayer(pixels, L.Identity(), clamped=True),
                 "hidden": hf.NeuronLayer(hidden, L.ReLU()),
                 "label": hf.NeuronLayer(classes, L.Softmax(beta=beta))},
        synapses={"W1": S.Dense(pixels, hidden), "W2": S.Dense(hidden, classes)},
        edges={"W1": ("image", "hidden"), "W2": ("hidden", "label")})


def classify(block, images, steps=None):
    """Run the descent from rest; returns the label state and the trace."""
    b = images.shape[0]
    hidden = images.new_zeros(b, *block.graph.neurons["hidden"].shape)
    label = images.new_zeros(b, *block.graph.neurons["label"].shape)
    (_, label), trace = block.run((hidden, label), {"image": images}, repeats=steps,
                                  trace=not torch.is_grad_enabled())
    return label, trace


def energy_curve(graph, images, trace):
    """Total energy (per image) before the descent and after every slow-layer step."""
    states = {"image": images,
              "hidden": images.new_zeros(images.shape[0], *graph.neurons["hidden"].shape),
              "label": images.new_zeros(images.shape[0], *graph.neurons["label"].shape)}
    curve = [graph.energy(states)]
    for st in trace.steps:
        states.update(st.after)
        curve.append(graph.energy(states))
    return torch.stack(curve)  # (steps + 1, batch)


def plot_curve(curve, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    curve = curve - curve[-1]  # per image, relative to where the descent ends
    steps = torch.arange(curve.shape[0])
    lo, mid, hi = torch.quantile(curve, torch.tensor([0.1, 0.5, 0.9], dtype=curve.dtype), dim=1)
    ax.fill_between(steps, lo, hi, alpha=0.25, label="10–90 % of test images")
    ax.plot(steps, mid, marker="o", ms=3, label="median")
    ax.set_xlabel("slow-layer step (hidden, label, hidden, …)")
    ax.set_ylabel("E(step) − E(final)")
    ax.set_xticks(steps[::2])
    ax.set_title("Classifying by energy descent")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def flat(ds):
    return ds.images.float().div(255).flatten(1), ds.labels


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8, help="descent steps T")
    ap.add_argument("--smoke", action="store_true", help="a few batches only")
    ap.add_argument("--plot", help="write the energy-descent figure of the test images here")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    train_x, train_y = flat(load_dataset("bundled", "train"))
    test_x, test_y = flat(load_dataset("bundled", "test"))
    if args.smoke:
        train_x, train_y, test_x, test_y = train_x[:256], train_y[:256], test_x[:128], test_y[:128]
        args.epochs = 1
    graph = declare()
    block = hf.derive(graph, ["hidden", "label"], step="leaky", step_size=0.5,
                      repeats=args.steps)
    print(block.describe())
    opt = torch.optim.Adam(graph.parameters(), lr=2e-3)
    for epoch in range(args.epochs):
        perm = torch.randperm(len(train_x))
        for i in range(0, len(train_x), 128):
            idx = perm[i:i + 128]
            label, _ = classify(block, train_x[idx])
            loss = F.cross_entropy(graph.neurons["label"].lagrangian.beta * label, train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            label, trace = classify(block, test_x)
        acc = (label.argmax(-1) == test_y).float().mean().item()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, test accuracy {100 * acc:.1f} %")
    with torch.no_grad():
        curve = energy_curve(graph, test_x, trace)
    rises = int((curve[1:] > curve[:-1] + 1e-4 * curve.abs().max()).sum())
    print(f"energy: median {curve[0].median():.2f} -> {curve[-1].median():.2f} over "
          f"{curve.shape[0] - 1} steps; {rises} rises over {curve.shape[1]} test images")
    if args.plot:
        plot_curve(curve, args.plot)
        print(f"wrote {args.plot}")
    return acc


if __name__ == "__main__":
    main()
