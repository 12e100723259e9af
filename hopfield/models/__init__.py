"""Image classifiers built from derived blocks, and a timm-style open model registry.

Every model is ``patch-embedding stem -> [class token, position embedding] -> blocks -> final
layer norm -> pooling -> linear head`` (:mod:`hopfield.models.classifier`). The blocks come from
declared energies: the built-in families of :mod:`hopfield.blocks`, or a block factory you
register (:func:`register_model`, :func:`load_factory`; docs/concepts/fast_layers.md#classic-blocks).

Example:
    >>> import torch, hopfield as hf
    >>> m = hf.models.create_model("imixer_tiny", num_classes=10)
    >>> m(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from . import presets as _presets  # noqa: F401  (registers the built-in presets)
from .classifier import POOLS, HopfieldClassifier, PatchEmbed
from .factory import factory_name, import_factory
from .registry import (
    LEGACY_DEFAULTS,
    create_model,
    list_models,
    load_factory,
    model_config,
    model_from_config,
    register_model,
    restore_config,
)

__all__ = ["PatchEmbed", "HopfieldClassifier", "POOLS", "create_model", "list_models",
           "register_model", "load_factory", "factory_name", "import_factory", "model_config",
           "model_from_config", "restore_config", "LEGACY_DEFAULTS"]
