#!/usr/bin/env bash
# The main job on the bundled data: set up, derive the blocks (and check iMixer against the
# published loop), train a tied iMixer briefly on the bundled Fashion-MNIST subset, and plot the
# energy descent of the trained model during inference. Outputs go to runs/demo/.
# DEMO_EPOCHS (default 2) sets the training length.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
OUT=runs/demo
mkdir -p "$OUT"
echo "== 1. derive the blocks from their energies"
for m in mixer_tiny vit_tiny imixer_tiny; do
  $PY -m hopfield describe "$m" | head -n 12
  echo
done
$PY examples/derive_imixer.py --out "$OUT/derive_imixer"
echo "== 2. train a tied iMixer (a true energy) on the bundled Fashion-MNIST subset"
$PY -m hopfield train --model imixer_tied_tiny --dataset bundled --epochs "${DEMO_EPOCHS:-2}" \
  --out "$OUT/train" --seed 0 --overwrite  # a rerun keeps the previous run as a backup
echo "== 3. energy descent of the trained model on test images"
$PY -m hopfield energy --checkpoint "$OUT/train/last.pt" --dataset bundled --batch-size 64 \
  --n-iter 12 --out "$OUT/energy.png"
echo "done: $OUT/derive_imixer/energy_descent.png, $OUT/train/ (metrics, curves, weights), $OUT/energy.png"
