#!/usr/bin/env bash
# Train an iMixer and a Mixer on CIFAR-10 from the "python version" pickle folder
# (https://www.cs.toronto.edu/~kriz/cifar.html: cifar-10-python.tar.gz, extracted).
#
# Usage:  benchmarks/cifar_recipe.sh CIFAR_DIR [extra `hopfield train` flags...]
#   CIFAR_DIR  the folder holding data_batch_1..5, test_batch, batches.meta (or its parent)
# Environment (defaults): EPOCHS=100 MODELS="imixer_tiny mixer_tiny" SEED=0
#   PYTHON (.venv/bin/python if present, else python3)
# The tiny presets are defined for 28x28x1; `hopfield train` sizes the stem from the data
# (32x32x3 here; patch 4 gives 8x8 = 64 tokens). Interrupted? Rerun: runs continue (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  sed -n '2,10p' "$0" >&2
  exit 2
fi
CIFAR_DIR=$1; shift
EPOCHS=${EPOCHS:-100}
MODELS=${MODELS:-"imixer_tiny mixer_tiny"}
SEED=${SEED:-0}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

for model in $MODELS; do
  # CIFAR recipe: stronger regularisation than Fashion-MNIST (crop padding 4 = 32/8, flips on)
  "$PYTHON" -m hopfield train --model "$model" --dataset cifar10 --data-dir "$CIFAR_DIR" \
    --epochs "$EPOCHS" --batch-size 128 --lr 1e-3 --weight-decay 0.05 --warmup-epochs 5 \
    --label-smoothing 0.1 --drop-path 0.1 --mixup 0.8 --cutmix 1.0 --ema 0.9998 \
    --seed "$SEED" --out "runs/cifar10-$model-s$SEED" --resume "$@"
done
echo "done: see runs/cifar10-*/metrics.jsonl and learning_curves.png"
