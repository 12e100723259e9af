r"""The one step rule of a slow layer, shared by :func:`~hopfield.dynamics.descend`, the compiled
descent and every derived block (docs/concepts/dynamics.md).

* ``"leaky"`` (Euler on $\tau\dot x = I - x$): $x \leftarrow x + (\alpha/\tau)(I - x)$;
* ``"residual"`` (the leak dropped, the MetaFormer skip connection at $\alpha = 1$):
  $x \leftarrow x + \alpha I$.

An optional stochastic-depth mask scales the residual increment per sample.
"""

from __future__ import annotations

import torch

__all__ = ["RULES", "step", "check_rule"]

RULES = ("leaky", "residual")


def check_rule(who: str, rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"{who}: unknown step rule {rule!r}; valid: {', '.join(RULES)}.")


def step(x: torch.Tensor, current: torch.Tensor, *, rule: str, step_size: float,
         tau: float = 1.0, drop_mask: torch.Tensor | None = None,
         keep_prob: float = 1.0) -> torch.Tensor:
    r"""One step of a slow layer with state ``x`` and incoming current ``current``.

    Args:
        x: the state, ``(batch, *shape)``.
        current: $I$, the same shape.
        rule: ``"leaky"`` or ``"residual"``.
        step_size: $\alpha > 0$.
        tau: the layer's time constant (leaky rule only).
        drop_mask, keep_prob: stochastic depth on the residual increment: a per-sample 0/1 mask
            (``(batch, 1, ...)``) and the probability of keeping; the increment becomes
            ``current * drop_mask / keep_prob``.

    Example:
        >>> import torch
        >>> step(torch.zeros(1, 2), torch.ones(1, 2), rule="leaky", step_size=0.5).tolist()
        [[0.5, 0.5]]
    """
    if rule == "residual":
        if drop_mask is not None:
            current = current * drop_mask / keep_prob
        return x + current if step_size == 1.0 else x + step_size * current
    if rule == "leaky":
        rate = step_size / tau
        return x + rate * (current - x)
    raise ValueError(f"step: unknown step rule {rule!r}; valid: {', '.join(RULES)}.")
