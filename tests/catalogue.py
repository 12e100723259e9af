"""The catalogue's fixed-k blocks at toy sizes (4 tokens, dim 4), shared by the tests that
compile them and the tests that transform them with ``torch.func``."""

from __future__ import annotations

import hopfield as hf

B = hf.blocks
N, DIM = 4, 4
FIXED_K = {
    "mixer": lambda: B.mixer_block(N, DIM, 3, 5),
    "tied_mixer": lambda: B.tied_mixer_block(N, DIM, 3, 5),
    "vit": lambda: B.vit_block(N, DIM, 2, 5),
    "imixer": lambda: B.imixer_block(N, DIM, 3, 3, 5, max_iter=2),
    "tied_imixer": lambda: B.tied_imixer_block(N, DIM, 3, 3, 5, max_iter=2),
    "et": lambda: B.et_block(N, DIM, 2, num_memories=5, steps=2),
    "et_autograd": lambda: B.et_block(N, DIM, 2, num_memories=5, steps=2, currents="autograd"),
    "imixer_autograd": lambda: B.imixer_block(N, DIM, 3, 3, 5, max_iter=2, currents="autograd"),
}
