"""Regenerate docs/figures/energy_descent_tied_imixer.png (used by docs/tutorials/energy_descent.md).

    python docs/figures/energy_descent_tied_imixer.py
"""

from pathlib import Path

import torch

import hopfield as hf
from hopfield.analysis import plot_record, record_block

torch.manual_seed(0)
block = hf.blocks.tied_imixer_block(num_tokens=16, dim=32, max_iter=12)
record = record_block(block, torch.randn(64, 16, 32), name="tied iMixer block")
out = Path(__file__).with_suffix(".png")
plot_record(record, out, groups=["token mixing (iMLP)"],
            title="Tied iMixer block (ReLU, k = 12): token-mixing fixed-point solve")
print(f"wrote {out}")
