"""What a derived block did, as data: the states, currents and solver iterates of every group
step (docs/concepts/dynamics.md#energy-descent-during-inference).

A block asked to trace (``block.run(..., trace=True)``) returns a :class:`Trace`; energy
recorders and plots consume it. Observing a block never edits its plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..dynamics.solvers import SolverStats
from .plan import Component, Plan

__all__ = ["SolveTrace", "StepTrace", "Trace"]


@dataclass
class SolveTrace:
    """One implicit component's solve: the iterate fed to each map evaluation (detached
    ``{layer: state}`` of the iterated layers) and the solver's stats."""

    component: Component
    index: int  # position among the group's implicit components
    iterates: list[dict[str, torch.Tensor]] = field(default_factory=list)
    stats: SolverStats | None = None


@dataclass
class StepTrace:
    """One step of a group: which slow layer(s) moved, the settled states and the currents.

    ``xs``: every state of the group at the settled fast layers (eliminated layers included),
    detached; ``currents``: ``{slow layer: I}`` that drove the step; ``before``/``after``: the
    slow states around the step.
    """

    plan: Plan
    repeat: int
    layers: tuple[str, ...]
    before: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor]
    xs: dict[str, torch.Tensor]
    currents: dict[str, torch.Tensor]
    solves: list[SolveTrace] = field(default_factory=list)


@dataclass
class Trace:
    """Every group step of one call, in execution order."""

    steps: list[StepTrace] = field(default_factory=list)

    def of_group(self, name: str) -> list[StepTrace]:
        return [s for s in self.steps if s.plan.name == name]
