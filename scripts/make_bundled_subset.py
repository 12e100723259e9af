"""Build ``hopfield/assets/fashion_mnist_subset.npz``: a stratified, seeded subset of Fashion-MNIST.

Usage:
    python scripts/make_bundled_subset.py                      # reads the Debian package's folder
    python scripts/make_bundled_subset.py --data-dir DIR --train-per-class 600 --test-per-class 100

The result holds ``x_train``/``x_test`` ``(N, 28, 28) uint8``, ``y_train``/``y_test`` ``uint8`` and
``classes`` (a fixed-width string array, so it loads with ``allow_pickle=False``). The same
inputs and seed always give the same bytes of image data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package
from hopfield.training.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_dataset  # noqa: E402

OUT = ROOT / "hopfield" / "assets" / "fashion_mnist_subset.npz"


def stratified(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``per_class`` random examples of every class, in ascending order."""
    picks = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"class {c} has only {len(members)} examples, asked for {per_class}.")
        picks.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picks))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=FASHION_MNIST_DIR, help="folder of the four IDX files")
    ap.add_argument("--train-per-class", type=int, default=600)
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    arrays = {}
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        ds = load_dataset("fashion_mnist", split, args.data_dir)
        labels = ds.labels.numpy()
        idx = stratified(labels, per_class, rng)
        arrays[f"x_{split}"] = ds.images.numpy()[idx, 0]
        arrays[f"y_{split}"] = labels[idx].astype(np.uint8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, classes=np.array(FASHION_MNIST_CLASSES), **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): "
          f"{len(arrays['y_train'])} train / {len(arrays['y_test'])} test images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
