"""hopfield: declare hierarchical Hopfield energies in PyTorch and derive network blocks from them.

Public names: :class:`EnergyGraph`, :class:`NeuronLayer`, :func:`derive`, :class:`Group`,
:class:`DerivedBlock`, :func:`lyapunov_report`, :class:`WiringError` and the submodules
``lagrangians``, ``synapses``, ``dynamics``, ``blocks``.
"""

import sys as _sys

from .core import errors, graph, lagrangians, neurons, synapses
from .core.errors import WiringError
from .core.graph import EnergyGraph
from .core.neurons import NeuronLayer
from .derivation import DerivedBlock, Group, LyapunovReport, derive, lyapunov_report

# the modules that lived at the top level before the core moved into ``hopfield.core`` stay
# importable under their old names (``import hopfield.synapses``)
for _name, _module in (("lagrangians", lagrangians), ("synapses", synapses), ("graph", graph),
                       ("neurons", neurons), ("errors", errors)):
    _sys.modules.setdefault(f"{__name__}.{_name}", _module)

from . import blocks, dynamics, interop, models  # noqa: E402  (after the aliases)

__version__ = "0.1.0"

__all__ = [
    "EnergyGraph",
    "NeuronLayer",
    "WiringError",
    "derive",
    "Group",
    "DerivedBlock",
    "LyapunovReport",
    "lyapunov_report",
    "blocks",
    "models",
    "interop",
    "dynamics",
    "lagrangians",
    "synapses",
    "core",
    "derivation",
    "__version__",
]
