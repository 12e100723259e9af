r"""Which currents read which activations: the dependency structure the planner needs
(docs/concepts/fast_layers.md#which-layers-are-implicit).

A fast layer's equilibrium is *explicit* when its current $I_A$ depends on no fast activation
(its own included) and *implicit* otherwise. That is a property of the energy, not of which
layers an edge names: a synapse whose energy is non-linear in a fast endpoint (a self term
$-\tfrac12\lambda\lVert g_h\rVert^2$ inside a two-layer synapse, attention whose keys come from a
fast layer) makes that layer depend on itself.

Every synapse *declares* the slots its energy is affine in (:meth:`Synapse.affine_slots`);
:func:`probe_synapse` *measures* the structure once, at plan time: the Jacobian of each slot's
current (as the executor computes it: autograd of the energy when tied, of the target's half
energy when untied) with respect to each slot's activation, applied to random directions at
random float64 activations. A declaration that disagrees with the measurement is an error naming
the synapse; an undeclared synapse (``affine_slots() is None``) uses the measurement.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..core.errors import WiringError
from ..core.graph import slot_current

__all__ = ["SlotDependence", "probe_synapse"]

_DRAWS = 3  # independent random points (and scales) per probe
_BATCH = 2
_REL_TOL = 1e-9  # a Jacobian block below this (relative to the current's scale) counts as zero


@dataclass(frozen=True)
class SlotDependence:
    """``reads[i]``: the slots whose activations the current into slot ``i`` depends on."""

    synapse: str
    reads: tuple[frozenset[int], ...]

    def depends(self, target: int, source: int) -> bool:
        return source in self.reads[target]


def _float64_copy(syn):
    with torch.no_grad():
        return copy.deepcopy(syn).to(device="cpu", dtype=torch.float64)


def probe_synapse(name: str, syn, shapes: list[tuple[int, ...]], targets: set[int],
                  seed: int = 0) -> SlotDependence:
    """Measure which slots each current in ``targets`` reads, and check the declaration.

    Args:
        name: the synapse's name (for messages).
        syn: the synapse.
        shapes: per-sample shapes of its layers, in slot order.
        targets: the slots whose currents matter (the fast layers among its endpoints).
        seed: the probe's random seed (the probe never touches the global RNG).

    Raises:
        WiringError: a slot declared affine whose current changes with its own activation, or
            a slot declared non-affine whose current measurably does not, or a synapse whose
            current into a fast slot cannot be computed.
    """
    arity = len(shapes)
    reads: list[set[int]] = [set() for _ in range(arity)]
    if not targets:
        return SlotDependence(name, tuple(frozenset(r) for r in reads))
    gen = torch.Generator().manual_seed(seed)
    local = _float64_copy(syn)
    local.train(False)
    scale = {i: 0.0 for i in targets}
    for draw in range(_DRAWS):
        spread = (0.5, 1.0, 2.0)[draw % 3]
        gs = [(spread * torch.randn((_BATCH, *s), generator=gen, dtype=torch.float64))
              .requires_grad_(True) for s in shapes]
        for i in sorted(targets):
            try:
                with torch.enable_grad():
                    cur = slot_current(local, i, gs)
                    w = torch.randn(cur.shape, generator=gen, dtype=torch.float64)
                    grads = torch.autograd.grad((cur * w).sum(), gs, allow_unused=True)
            except (NotImplementedError, ValueError, RuntimeError) as err:
                raise WiringError(
                    f"synapse {name!r} ({type(syn).__name__}): its current into slot {i} cannot "
                    f"be derived ({err}). Slot {i} is a fast layer here; make that layer clamped "
                    f"or slow, or tie the synapse.") from err
            scale[i] = max(scale[i], float(cur.detach().abs().max()), 1.0)
            for j, gr in enumerate(grads):
                if gr is not None and float(gr.abs().max()) > _REL_TOL * scale[i] * w.abs().max():
                    reads[i].add(j)
    declared = syn.affine_slots()
    if declared is not None:
        for i in sorted(targets):
            says_affine, is_affine = i in declared, i not in reads[i]
            if says_affine != is_affine:
                what = ("declares its energy affine in slot {i}, but the current into that slot "
                        "changes with the slot's own activation" if says_affine else
                        "declares its energy non-affine in slot {i}, but the current into that "
                        "slot does not change with the slot's own activation").format(i=i)
                raise WiringError(
                    f"synapse {name!r} ({type(syn).__name__}) {what} (measured by a "
                    f"Jacobian-vector product at random float64 activations). Fix its "
                    f"affine_slots() declaration (return None to let the planner measure it).")
    return SlotDependence(name, tuple(frozenset(r) for r in reads))
