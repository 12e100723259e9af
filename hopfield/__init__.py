"""hopfield: declare hierarchical Hopfield energies in PyTorch and derive network blocks from them.

Public names: :class:`EnergyGraph`, :class:`NeuronLayer`, :func:`derive`, :class:`Group`,
:class:`DerivedBlock`, :func:`lyapunov_report`, :class:`WiringError` and the submodules
``lagrangians``, ``synapses``, ``dynamics``, ``blocks``.
"""

from . import blocks, dynamics, interop, lagrangians, models, synapses
from .derive import DerivedBlock, Group, LyapunovReport, derive, lyapunov_report
from .errors import WiringError
from .graph import EnergyGraph
from .neurons import NeuronLayer

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
    "__version__",
]
