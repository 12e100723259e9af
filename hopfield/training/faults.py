"""Fail points for the reliability tests (``docs/reliability.md``).

:func:`fault` is a fail point: the environment variable ``HOPFIELD_FAULT="<point>@<n>:<action>"``
(e.g. ``step@5:kill``, ``write:last.pt@2:kill``, ``loss@3:nan``) makes the ``n``-th visit of
``point`` SIGKILL the process (``kill``), raise :class:`FaultInjected` (``raise``), block forever
after touching ``$HOPFIELD_FAULT_MARKER`` (``pause``, so a test can kill it from outside) or poison
the loss (``nan``). Unset, it costs one environment lookup. The checkpoint writer
(:mod:`hopfield.training.checkpoint`) and the training loop visit the points; both modules
re-export these names.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

__all__ = ["fault", "FaultInjected", "FAULT_ENV"]

FAULT_ENV = "HOPFIELD_FAULT"


class FaultInjected(RuntimeError):
    """Raised by a ``raise`` fail point (a simulated crash inside the process)."""


def fault(point: str, index: int) -> str | None:
    """Fire the fail point ``point@index`` if ``$HOPFIELD_FAULT`` names it; returns the action."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    for item in spec.split(","):
        where, _, action = item.rpartition(":")
        if where != f"{point}@{index}":
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "raise":
            raise FaultInjected(f"fail point {point}@{index} ({FAULT_ENV}={spec})")
        if action == "pause":
            Path(os.environ.get("HOPFIELD_FAULT_MARKER", "hopfield-fault-paused")).touch()
            while True:
                time.sleep(1)
        return action
    return None
