r"""Sampled convexity checks for Lagrangians the library cannot vouch for.

A built-in Lagrangian *declares* whether it is convex, and a Hessian test pins every declaration.
Any other Lagrangian (a user's subclass, or a subclass of a built-in that overrides ``forward``,
``activation`` or ``is_convex``) is **unverified**: its ``is_convex`` is ``None`` until
:func:`check_convexity` has looked at it. The check evaluates the Hessian
$\nabla^2 L(x)$ with ``torch.func.vmap(torch.func.hessian(...))`` at random float64 points and
reports its smallest eigenvalue:

* a clearly negative eigenvalue is a counterexample: $L$ is **not** convex (a proof, up to
  round-off), and :meth:`ConvexityCheck.mark` records ``is_convex = False``;
* no negative eigenvalue on $N$ samples is evidence, **not a proof**: marked, the Lagrangian
  reports ``is_convex = True`` with ``convexity_source = "sampled"``, and a Lyapunov report says
  "convex on N samples (not a proof)" and answers PARTIAL at best
  (docs/concepts/guarantees.md#convexity).

Example:
    >>> import torch, hopfield as hf
    >>> class Quartic(hf.lagrangians.Lagrangian):
    ...     def forward(self, x):
    ...         return (x ** 4).flatten(1).sum(-1) / 4
    >>> lag = Quartic()
    >>> lag.is_convex is None
    True
    >>> check = hf.lagrangians.check_convexity(lag, (3,), samples=64)
    >>> check.convex, check.samples
    (True, 64)
    >>> check.mark().is_convex, lag.convexity_source
    (True, 'sampled')
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

__all__ = ["ConvexityCheck", "check_convexity"]


@dataclass
class ConvexityCheck:
    """The result of :func:`check_convexity`.

    Attributes:
        convex: ``False`` when some sampled Hessian has an eigenvalue below ``-tol`` (relative to
            the largest eigenvalue magnitude seen, at least 1); ``True`` otherwise.
        samples: how many points were evaluated.
        min_eigenvalue: the smallest Hessian eigenvalue seen.
        worst_point: the sample (per-sample shape) where it was seen.
        shape: the per-sample state shape that was checked.
    """

    convex: bool
    samples: int
    min_eigenvalue: float
    worst_point: torch.Tensor
    shape: tuple
    lagrangian: object = field(default=None, repr=False)

    @property
    def summary(self) -> str:
        if self.convex:
            return f"convex on {self.samples} samples (not a proof)"
        return (f"NOT convex: Hessian eigenvalue {self.min_eigenvalue:.3g} < 0 found among "
                f"{self.samples} samples")

    def mark(self):
        """Record this result on the checked Lagrangian (its ``is_convex`` then reads
        ``self.convex``, its ``convexity_source`` ``"sampled"`` or ``"counterexample"``); a
        built-in's own declaration always wins. Returns the Lagrangian."""
        lag = self.lagrangian
        object.__setattr__(lag, "_convexity_check", self)
        return lag


def _hessians(fn, points: torch.Tensor) -> torch.Tensor:
    """Hessians ``(n, d, d)`` of ``fn`` (flat ``(d,)`` -> scalar) at each row of ``points``."""
    try:
        return torch.func.vmap(torch.func.hessian(fn))(points)
    except Exception:  # data-dependent Python control flow: one sample at a time
        return torch.stack([torch.autograd.functional.hessian(fn, p) for p in points])


def check_convexity(lagrangian, shape, *, samples: int = 256, scale: float = 3.0,
                    seed: int = 0, tol: float = 1e-8) -> ConvexityCheck:
    r"""Sample the Hessian of ``lagrangian`` at ``samples`` random states of per-sample ``shape``.

    Points are drawn as ``scale * N(0, 1)`` in float64 (on a float64 copy of the Lagrangian, so
    the original is untouched) with a private generator seeded by ``seed``. A Hessian eigenvalue
    below $-\mathrm{tol}\cdot\max(1, \max|\lambda|)$ is a counterexample.

    Args:
        lagrangian: any :class:`~hopfield.lagrangians.Lagrangian`.
        shape: the per-sample state shape (an int or a tuple), e.g. the layer's ``shape``.
        samples: number of random points (at least 1).
        scale: standard deviation of the points.
        seed: seed of the private random generator.
        tol: relative tolerance for round-off.

    Returns:
        A :class:`ConvexityCheck`; call its :meth:`~ConvexityCheck.mark` to record the result.
    """
    # duck-typed (a Lagrangian is an nn.Module with an activation): lagrangians.py imports this
    # module, so importing it back would make a cycle
    if not (isinstance(lagrangian, torch.nn.Module) and callable(getattr(lagrangian, "activation",
                                                                         None))):
        raise TypeError(f"check_convexity: expected a hopfield Lagrangian, got "
                        f"{type(lagrangian).__name__}.")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not shape or any(not isinstance(s, int) or s <= 0 for s in shape):
        raise ValueError(f"check_convexity: shape must be positive ints, got {shape!r}.")
    if not (isinstance(samples, int) and samples >= 1):
        raise ValueError(f"check_convexity: samples must be an int >= 1, got {samples!r}.")
    if not scale > 0:
        raise ValueError(f"check_convexity: scale must be positive, got {scale!r}.")
    lag64 = copy.deepcopy(lagrangian).double()
    gen = torch.Generator().manual_seed(seed)
    points = scale * torch.randn(samples, *shape, generator=gen, dtype=torch.float64)
    flat = points.reshape(samples, -1)

    def value(v):
        return lag64(v.reshape(1, *shape))[0]

    with torch.enable_grad():
        hess = _hessians(value, flat).detach()
    hess = 0.5 * (hess + hess.transpose(-1, -2))
    eigs = torch.linalg.eigvalsh(hess)  # (samples, d), ascending
    mins = eigs[:, 0]
    worst = int(mins.argmin())
    min_eig = float(mins[worst])
    size = max(1.0, float(eigs.abs().max()))
    return ConvexityCheck(convex=min_eig >= -tol * size, samples=samples,
                          min_eigenvalue=min_eig, worst_point=points[worst], shape=shape,
                          lagrangian=lagrangian)
