"""Precision that never slows a run down unasked: the warning for bf16 on a CPU that emulates it.

``--amp auto`` keeps CPU runs in float32. An explicit ``--amp bf16`` on the CPU pays off only
where the processor multiplies bf16 matrices natively (AVX512-BF16 or AMX; see
``docs/tutorials/train.md#bf16-on-the-cpu``); elsewhere oneDNN emulates bf16 and a training step
becomes an order of magnitude slower. :func:`warn_emulated_bf16` says so once per run, with the
measured cost, the fix and the CPU capability that torch found.

Example:
    >>> from hopfield.training.precision import emulated_bf16_message
    >>> "--amp auto" in emulated_bf16_message("AVX2")
    True
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["cpu_capability", "emulated_bf16_message", "warn_emulated_bf16",
           "EMULATED_BF16_COST"]

#: The measured cost of bf16 autocast on a CPU without native bf16: mixer_tiny training step,
#: batch 128, one thread, on an AMD EPYC without AVX512-BF16 (float32 ms, bf16 ms).
EMULATED_BF16_COST = (465.0, 6290.0)


def cpu_capability() -> str:
    """The vector instruction set torch dispatches to on this CPU (``"AVX2"``, ``"AVX512"``,
    ``"DEFAULT"``, ...), or ``"unknown"`` on a torch that cannot say."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def emulated_bf16_message(capability: str) -> str:
    """The warning text for ``--amp bf16`` on a CPU whose capability is ``capability`` and which
    has neither AVX512-BF16 nor AMX."""
    fp32, bf16 = EMULATED_BF16_COST
    return (f"--amp bf16 on a CPU without native bf16 (torch CPU capability {capability}, no "
            f"AVX512-BF16 or AMX): bf16 is emulated and a training step is much slower than in "
            f"float32 (measured {bf16 / fp32:.1f}x: {bf16:.0f} ms against {fp32:.0f} ms per "
            f"mixer_tiny step, batch 128, one thread, AMD EPYC without AVX512-BF16). Use "
            f"--amp auto (float32 on this CPU) or --amp off; bf16 pays off on CPUs with "
            f"AVX512-BF16 or AMX (docs/tutorials/train.md#bf16-on-the-cpu).")


def warn_emulated_bf16(capability: str | None = None) -> str:
    """Issue the :func:`emulated_bf16_message` as a ``RuntimeWarning`` (the caller decides when:
    once per run, on the CPU, for an explicit ``--amp bf16`` without native bf16); returns it."""
    msg = emulated_bf16_message(capability or cpu_capability())
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
    return msg
