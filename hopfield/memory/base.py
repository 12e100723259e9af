r"""What every associative memory shares: the stored patterns, the energy graph, the input checks
and the record a recall returns (docs/concepts/memory.md).

A memory is an :class:`~hopfield.EnergyGraph` whose couplings hold the patterns
$\xi_1,\dots,\xi_K\in\mathbb R^N$, plus the update that descends it. Recall starts from a query,
keeps the *known* entries clamped when a mask is given (``mask[b, i] = True``: entry $i$ of
query $b$ is known and never changes; ``False``: to be completed), and returns the final states
with the energy, computed by the graph, after every recorded step
(docs/concepts/memory.md#recall-and-completion).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..core.graph import EnergyGraph
from ..core.validate import check_int, check_positive, is_int

__all__ = ["AssociativeMemory", "RecallResult", "overlap", "nearest", "check_patterns"]


@dataclass
class RecallResult:
    """What a recall did.

    Attributes:
        states: the final graph states ``{layer: (batch, *shape)}``.
        output: the visible layer's activation $g_v$, ``(batch, N)``: the recalled pattern.
        energy: the graph's energy after every recorded step, ``(records, batch)``; row 0 is the
            query (after clamping and settling the fast layers).
        steps: sweeps (binary memories) or descent steps (continuous ones) that ran.
        converged: ``(batch,)`` bool: the last step changed no unit (binary) or moved the visible
            state by less than ``tol`` (continuous).
        history: the visible activation at every record, ``(records, batch, N)``, when asked
            (``keep_history=True``), else ``None``.
    """

    states: dict[str, torch.Tensor]
    output: torch.Tensor
    energy: torch.Tensor
    steps: int
    converged: torch.Tensor
    history: torch.Tensor | None = field(default=None, repr=False)


def overlap(output: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    r"""Overlap $m = \langle \mathrm{sign}(g), \xi\rangle / N$ of each recalled state with a ±1 pattern.

    ``output``: ``(batch, N)``; ``patterns``: ``(batch, N)`` (one target per sample, returns
    ``(batch,)``) or ``(K, N)`` with ``K != batch`` (every pattern, returns ``(batch, K)``).
    Continuous states are read out by their sign; $m = 1$ is perfect recall.
    """
    _check_pair("overlap", output, patterns)
    s = torch.sign(output).to(patterns.dtype)
    if patterns.shape == output.shape:
        return (s * patterns).mean(-1)
    return s @ patterns.T / patterns.shape[-1]


def nearest(output: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """Index of the stored pattern nearest (Euclidean) to each recalled state, ``(batch,)``."""
    _check_pair("nearest", output, patterns)
    return torch.cdist(output.to(patterns.dtype), patterns).argmin(-1)


def _check_pair(who: str, output: torch.Tensor, patterns: torch.Tensor) -> None:
    if output.dim() != 2 or patterns.dim() != 2 or output.shape[1] != patterns.shape[1]:
        raise ValueError(f"{who}: expected recalled states (batch, N) and patterns (K, N) of one "
                         f"length N, got {tuple(output.shape)} and {tuple(patterns.shape)}; "
                         f"flatten images first: x.flatten(1).")


def check_patterns(who: str, patterns, *, binary: bool, dtype: torch.dtype | None) -> torch.Tensor:
    """A ``(K, N)`` finite float tensor (±1 entries when ``binary``); returns it detached."""
    if not isinstance(patterns, torch.Tensor):
        raise TypeError(f"{who}: expected patterns as a tensor of shape (num_patterns, N), got "
                        f"{type(patterns).__name__}. Stack them: torch.stack(list_of_patterns).")
    if patterns.dim() != 2 or patterns.shape[0] < 1 or patterns.shape[1] < 2:
        raise ValueError(f"{who}: expected patterns of shape (num_patterns >= 1, N >= 2), got "
                         f"{tuple(patterns.shape)}. Flatten images first: x.flatten(1).")
    patterns = patterns.detach().to(dtype or (patterns.dtype if patterns.is_floating_point()
                                              else torch.get_default_dtype()))
    if not torch.isfinite(patterns).all():
        raise ValueError(f"{who}: patterns contain NaN or Inf; expected finite values.")
    if binary and not (patterns.abs() == 1).all():
        raise ValueError(f"{who}: expected ±1 patterns (binary units), got values in "
                         f"[{float(patterns.min()):g}, {float(patterns.max()):g}]. Binarise them, "
                         f"e.g. torch.where(x > 0.5, 1.0, -1.0), or use a continuous memory "
                         f"('lse', 'ham', 'tanh' accept any real patterns).")
    return patterns


class AssociativeMemory:
    """Abstract base: patterns ``(K, N)``, the energy ``graph`` and the name of its visible layer.

    Subclasses implement :meth:`_recall`; :meth:`recall` checks the input first.
    """

    binary: bool = False

    def __init__(self, graph: EnergyGraph, patterns: torch.Tensor, *, name: str,
                 visible: str = "v", beta: float | None = None,
                 rebuild: Callable[[float], AssociativeMemory] | None = None):
        self.graph = graph.requires_grad_(False)
        self.patterns = patterns
        self.name = name
        self.visible = visible
        self.beta = beta
        self._rebuild = rebuild

    @property
    def dim(self) -> int:
        return self.patterns.shape[1]

    @property
    def num_patterns(self) -> int:
        return self.patterns.shape[0]

    def energy(self, states: dict[str, torch.Tensor]) -> torch.Tensor:
        """The graph's energy per sample, ``(batch,)``."""
        return self.graph.energy(states)

    def with_beta(self, beta: float) -> AssociativeMemory:
        """The same memory at inverse temperature ``beta`` (energies that have one)."""
        if self._rebuild is None:
            raise ValueError(f"{self.name} memory: this energy has no inverse temperature beta; "
                             f"expected beta=None, got beta={beta!r}. Energies with a beta: "
                             f"tanh (the gain), exp, lse, ham.")
        check_positive(f"{self.name} memory", "beta", beta)
        return self._rebuild(float(beta))

    def recall(self, query: torch.Tensor, mask: torch.Tensor | None = None, *,
               steps: int | None = None, beta: float | None = None, tol: float | None = None,
               keep_history: bool = False, records_per_sweep: int = 1,
               generator: torch.Generator | None = None) -> RecallResult:
        """Descend the energy from ``query`` and return a :class:`RecallResult`.

        Args:
            query: ``(batch, N)`` or ``(N,)`` start states (binary memories: entries in
                {-1, 0, +1}, 0 meaning unknown).
            mask: optional bool, the shape of ``query``: ``True`` where the entry is known and
                stays clamped to the query, ``False`` where it is to be completed.
            steps: sweeps (binary) or descent steps (continuous); the memory's default if None.
            beta: an inverse temperature for this recall only (energies that have one).
            tol: stop early once a step moves no entry by more than ``tol`` (binary memories
                always stop after a sweep that flips nothing).
            keep_history: also return the visible activation at every record.
            records_per_sweep: binary memories: record the energy (and state) this many times
                per sweep, for figures of the sweep in progress; a continuous memory records
                every step and takes only 1.
            generator: the random unit order of asynchronous sweeps (binary memories).
        """
        if beta is not None:
            return self.with_beta(beta).recall(query, mask, steps=steps, tol=tol,
                                               keep_history=keep_history, generator=generator,
                                               records_per_sweep=records_per_sweep)
        who = f"{self.name} memory recall"
        query, mask = self._check_query(query, mask)
        check_int(who, "steps", steps, minimum=1, none_ok=True)
        check_positive(who, "tol", tol, none_ok=True)
        check_int(who, "records_per_sweep", records_per_sweep, minimum=1)
        if self.binary and records_per_sweep > self.dim:
            raise ValueError(f"{who}: expected records_per_sweep <= N={self.dim} (at most one "
                             f"record per unit update), got {records_per_sweep}.")
        if not self.binary and records_per_sweep != 1:
            raise ValueError(f"{who}: records_per_sweep applies to binary memories (asynchronous "
                             f"sweeps); a continuous memory records every step. Expected 1, got "
                             f"{records_per_sweep}.")
        with torch.no_grad():
            return self._recall(query, mask, steps, tol, keep_history, generator,
                                records_per_sweep)

    def _recall(self, query, mask, steps, tol, keep_history, generator,
                records_per_sweep):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_query(self, query, mask):
        who = f"{self.name} memory recall"
        if not isinstance(query, torch.Tensor):
            raise TypeError(f"{who}: expected query as a tensor (batch, N={self.dim}), got "
                            f"{type(query).__name__}.")
        if query.dim() == 1:
            query = query[None]
            mask = None if mask is None or not isinstance(mask, torch.Tensor) else mask.reshape(1, -1)
        if query.dim() != 2 or query.shape[1] != self.dim or query.shape[0] < 1:
            raise ValueError(f"{who}: expected query of shape (batch, N={self.dim}), got "
                             f"{tuple(query.shape)}; the memory stores patterns of length "
                             f"{self.dim}.")
        query = query.detach().to(self.patterns.dtype)
        if not torch.isfinite(query).all():
            raise ValueError(f"{who}: query contains NaN or Inf; expected finite values.")
        if self.binary and not ((query == 1) | (query == -1) | (query == 0)).all():
            raise ValueError(f"{who}: expected a binary query with entries -1, +1 (or 0 for "
                             f"unknown), got values in [{float(query.min()):g}, "
                             f"{float(query.max()):g}]. Binarise it, e.g. torch.sign(x).")
        if mask is not None:
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
                raise TypeError(f"{who}: expected mask as a bool tensor (True = known entry, "
                                f"kept clamped), got {type(mask).__name__}"
                                f"{'' if not isinstance(mask, torch.Tensor) else ' of ' + str(mask.dtype)}.")
            if tuple(mask.shape) != tuple(query.shape):
                raise ValueError(f"{who}: expected mask of the query's shape "
                                 f"{tuple(query.shape)}, got {tuple(mask.shape)}.")
        return query, mask


def hebbian_weight(xi: torch.Tensor) -> torch.Tensor:
    r"""Hebb's rule $W = \tfrac1N \sum_\mu \xi_\mu \xi_\mu^\top$ with a zero diagonal (no
    self-coupling), for patterns ``xi`` of shape ``(K, N)``."""
    weight = xi.T @ xi / xi.shape[1]
    weight.fill_diagonal_(0.0)
    return weight


def default_steps(steps: int | None, default: int) -> int:
    return default if steps is None else steps


def check_choice(who: str, name: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"{who}: unknown {name} {value!r}; valid: {', '.join(map(str, valid))}.")


def check_degree(who: str, n) -> int:
    if not is_int(n) or n < 2:
        raise (TypeError if not is_int(n) else ValueError)(
            f"{who}: expected an integer degree n >= 2 (n = 2 is the classical energy, 3 the "
            f"dense memory of Krotov & Hopfield), got n={n!r}.")
    return int(n)
