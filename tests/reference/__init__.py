"""Reference blocks in plain PyTorch, written independently, in the key layouts of timm's
``MlpMixer`` / ``VisionTransformer`` and the official iMixer, and the Energy Transformer in the
authors' tensor shapes. They are test oracles: the derived blocks must equal them
(``tests/derivation/test_equivalence.py``, ``tests/derivation/test_faithful.py``) and
:mod:`hopfield.interop` must load their state dicts (``tests/test_interop.py``)."""

from .et import EnergyLayerNorm, ETBlock
from .imixer import IMixer, IMlp, SoftSpectralNorm, imixer_block
from .mixer import MixerBlock, Mlp, MlpMixer
from .vit import Attention, Block, VisionTransformer

__all__ = ["Mlp", "MixerBlock", "MlpMixer", "Attention", "Block", "VisionTransformer", "IMlp",
           "SoftSpectralNorm", "imixer_block", "IMixer", "EnergyLayerNorm", "ETBlock"]
