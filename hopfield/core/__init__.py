"""The core: Lagrangians, neuron layers, synapses and the energy graph (the bottom of the house)."""

from . import lagrangians, synapses
from .errors import WiringError
from .graph import EnergyGraph
from .neurons import NeuronLayer

__all__ = ["EnergyGraph", "NeuronLayer", "WiringError", "lagrangians", "synapses"]
