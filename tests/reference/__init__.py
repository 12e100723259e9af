"""Reference blocks in plain PyTorch, written independently, in the key layouts of timm's
``MlpMixer`` / ``VisionTransformer`` and the official iMixer. They are test oracles: the derived
blocks must equal them (``tests/test_equivalence.py``) and :mod:`hopfield.interop` must load their
state dicts (``tests/test_interop.py``)."""

from .imixer import IMixer, IMlp, SoftSpectralNorm, imixer_block
from .mixer import MixerBlock, Mlp, MlpMixer
from .vit import Attention, Block, VisionTransformer

__all__ = ["Mlp", "MixerBlock", "MlpMixer", "Attention", "Block", "VisionTransformer", "IMlp",
           "SoftSpectralNorm", "imixer_block", "IMixer"]
