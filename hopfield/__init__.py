"""hopfield: declare hierarchical Hopfield energies in PyTorch and derive network blocks from them.

Public names: :class:`EnergyGraph`, :class:`NeuronLayer`, :func:`derive`, :class:`Group`,
:class:`DerivedBlock`, :func:`lyapunov_report`, :class:`WiringError` and the submodules
``lagrangians``, ``synapses``, ``dynamics``, ``blocks``, ``memory``, ``models``, ``weights`` and
:func:`create_model` (timm's, with ``pretrained_file=``). The outer ring,
``training`` and ``analysis``, loads on first use (``hf.training``), as do the modules' old paths
(``hopfield.train``, ``hopfield.energy``, ...; see :mod:`hopfield._moved`).
"""

import sys as _sys

from .core import errors, graph, lagrangians, neurons, synapses
from .core.errors import NonFiniteError, WiringError
from .core.graph import EnergyGraph
from .core.neurons import NeuronLayer
from .derivation import DerivedBlock, Group, LyapunovReport, derive, lyapunov_report

# the modules that lived at the top level before the core moved into ``hopfield.core`` stay
# importable under their old names (``import hopfield.synapses``)
for _name, _module in (("lagrangians", lagrangians), ("synapses", synapses), ("graph", graph),
                       ("neurons", neurons), ("errors", errors)):
    _sys.modules.setdefault(f"{__name__}.{_name}", _module)

from . import blocks, dynamics, interop, memory, models, weights  # noqa: E402  (after the aliases)
from ._moved import MOVED as _MOVED  # noqa: E402
from ._moved import install as _install_old_paths  # noqa: E402
from .weights import create_model  # noqa: E402  (timm's create_model, pretrained_file=)

_install_old_paths(__name__)  # ``import hopfield.train`` etc. find the moved modules
_LAZY = ("training", "analysis", *_MOVED)


def __getattr__(name: str):
    """``hf.training``, ``hf.analysis`` and the old module paths load when first touched."""
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "EnergyGraph",
    "NeuronLayer",
    "WiringError",
    "NonFiniteError",
    "derive",
    "Group",
    "DerivedBlock",
    "LyapunovReport",
    "lyapunov_report",
    "blocks",
    "models",
    "interop",
    "weights",
    "create_model",
    "dynamics",
    "memory",
    "lagrangians",
    "synapses",
    "core",
    "derivation",
    "__version__",
]
