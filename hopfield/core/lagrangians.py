r"""Lagrangians of neuron layers and the activations they induce.

A Lagrangian $L_A(x_A)$ is a scalar function of a layer's state. Its gradient is the layer's
activation, $g_A = \partial L_A / \partial x_A$ (docs/concepts/lagrangians.md). Every class here is an
``nn.Module`` (so $\beta$, $\gamma$ can be learnable) with

* ``forward(x)`` – the value $L(x)$ per sample, shape ``(batch,)``;
* ``activation(x)`` – $g = \nabla L(x)$, same shape as ``x``; a closed form that
  ``tests/test_lagrangians.py`` pins to :meth:`Lagrangian.activation_autograd`;
* ``is_convex`` – whether the Hessian is positive semi-definite everywhere (needed for the
  Lyapunov guarantee): ``True``/``False`` as *declared* by a built-in (a Hessian test pins each
  declaration), ``None`` (unverified) for any other Lagrangian until
  :func:`check_convexity` has sampled it (``convexity_source`` says which;
  docs/concepts/guarantees.md#convexity);
* ``exact`` – ``False`` when ``activation`` is *not* the gradient of ``forward`` (a declared
  relaxation, e.g. layer norm with a per-feature gain);
* ``lipschitz`` – an upper bound on the activation's slope (``None`` when unbounded/unknown), used
  to bound the Lipschitz constant of implicit feedback maps.

Example:
    >>> import torch, hopfield as hf
    >>> L = hf.lagrangians.Softmax(beta=2.0)
    >>> x = torch.randn(3, 5)
    >>> torch.allclose(L.activation(x), torch.softmax(2.0 * x, dim=-1))
    True
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .convexity import ConvexityCheck, check_convexity
from .validate import check_axis, check_positive, check_size, is_finite_real, is_real

__all__ = [
    "Lagrangian",
    "Identity",
    "ReLU",
    "RectifiedPower",
    "Exp",
    "Tanh",
    "Sigmoid",
    "Softplus",
    "GELU",
    "Softmax",
    "LayerNorm",
    "SphericalNorm",
    "get",
    "names",
    "check_convexity",
    "ConvexityCheck",
]


def _per_sample_sum(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], -1).sum(-1)


def _check_axis(x: torch.Tensor, axis: int, who: str) -> int:
    """Translate a per-sample axis (negative, or non-negative excluding batch) to a tensor axis."""
    ndim = x.dim() - 1
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{who}: axis={axis} is out of range for a per-sample state of shape "
            f"{tuple(x.shape[1:])} (expected -{ndim} <= axis < {ndim})."
        )
    return axis + x.dim() if axis < 0 else axis + 1


def _sampled_convexity(self) -> bool | None:
    """Unverified unless :func:`check_convexity` marked a result on this instance."""
    check = self.__dict__.get("_convexity_check")
    return None if check is None else check.convex


def elementwise(fn, x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` for an elementwise ``fn``, computed in ``x``'s memory order.

    A token-mixing current is a transposed view (``(batch, tokens, dim)`` over memory laid out
    as ``(batch, dim, tokens)``), and GELU and its backward run about twice as slow on such a
    view as on dense memory (a (32, 128, 196) float32 tensor on a 2-core CPU: 442 vs 237 µs).
    Applying ``fn`` to the dense transpose and transposing back gives the same values with the
    same strides, at the dense speed.
    """
    if x.dim() >= 2 and not x.is_contiguous():
        t = x.transpose(-1, -2)
        if t.is_contiguous():
            return fn(t).transpose(-1, -2)
    return fn(x)


class Lagrangian(nn.Module):
    """Abstract base: subclasses implement ``forward`` (value per sample) and ``activation``.

    ``is_convex`` is ``None`` (unverified) here; each built-in declares it. A subclass defined
    outside this module that overrides ``forward``, ``activation`` or ``is_convex`` is unverified
    again: a declaration is trusted only where a Hessian test pins it.
    """

    is_convex = property(_sampled_convexity)
    exact: bool = True
    lipschitz: float | None = None
    # the activation acts on each unit alone (g_i = f(x_i)), so it commutes with every
    # permutation of the axes: the block may iterate such layers in any memory layout
    # (docs/concepts/fast_layers.md#iteration-layout); declared by the built-ins only
    pointwise: bool = False
    _convexity_declared: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__ == __name__:  # a built-in: its (inherited) declaration counts
            cls._convexity_declared = cls.is_convex is not Lagrangian.__dict__["is_convex"]
        elif {"forward", "activation", "is_convex"} & set(vars(cls)):
            cls.is_convex = Lagrangian.__dict__["is_convex"]
            cls._convexity_declared = False
        if cls.__module__ != __name__ and "activation" in vars(cls):
            cls.pointwise = False  # a new activation is not known to act unit by unit

    @property
    def convexity_source(self) -> str | None:
        """``"declared"`` (a built-in), ``"sampled"``/``"counterexample"`` (a marked
        :func:`check_convexity`), or ``None`` (unverified)."""
        if self._convexity_declared:
            return "declared"
        check = self.__dict__.get("_convexity_check")
        if check is None:
            return None
        return "sampled" if check.convex else "counterexample"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        """Closed-form activation; the default falls back to autograd."""
        return self.activation_autograd(x)

    def activation_autograd(self, x: torch.Tensor) -> torch.Tensor:
        r"""$g = \nabla_x L(x)$ by autograd (differentiable; used to pin closed forms)."""
        with torch.enable_grad():
            xr = x if x.requires_grad else x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self(xr).sum(), xr, create_graph=True)
        return g if (x.requires_grad or torch.is_grad_enabled()) else g.detach()

    def extra_repr(self) -> str:
        return {True: "convex", False: "NON-CONVEX", None: "convexity unverified"}[self.is_convex]


class Identity(Lagrangian):
    r"""$L(x) = \tfrac12\lVert x\rVert^2$, activation $g = x$."""

    pointwise = True
    is_convex = True
    lipschitz = 1.0

    def forward(self, x):
        return 0.5 * _per_sample_sum(x * x)

    def activation(self, x):
        return x


class RectifiedPower(Lagrangian):
    r"""$L(x) = \sum_i \mathrm{relu}(x_i)^n / n$, activation $g = \mathrm{relu}(x)^{n-1}$.

    The dense-associative-memory family (Krotov & Hopfield 2016). Convex for $n \ge 1$; $n=2$ is
    :class:`ReLU`.
    """

    pointwise = True
    is_convex = True

    def __init__(self, n: float = 2.0):
        super().__init__()
        if not (is_finite_real(n) and n > 1):
            raise (ValueError if is_real(n) else TypeError)(
                f"RectifiedPower: expected a power n > 1 (a finite number; n=2 is ReLU), got "
                f"n={n!r}.")
        self.n = float(n)
        self.lipschitz = 1.0 if self.n == 2 else None

    def forward(self, x):
        return _per_sample_sum(F.relu(x) ** self.n) / self.n

    def activation(self, x):
        return F.relu(x) ** (self.n - 1)

    def extra_repr(self):
        return f"n={self.n}, convex"


class ReLU(RectifiedPower):
    r"""$L(x) = \sum_i \tfrac12\mathrm{relu}(x_i)^2$, activation ReLU."""

    def __init__(self):
        super().__init__(2.0)

    def activation(self, x):
        return F.relu(x)


class Exp(Lagrangian):
    r"""$L(x) = \sum_i e^{x_i}$, activation $e^{x}$ (unbounded slope)."""

    pointwise = True
    is_convex = True

    def forward(self, x):
        return _per_sample_sum(torch.exp(x))

    def activation(self, x):
        return torch.exp(x)


class Tanh(Lagrangian):
    r"""$L(x) = \sum_i \log\cosh x_i$ (stable form $|x| + \log(1+e^{-2|x|}) - \log 2$), $g=\tanh x$."""

    pointwise = True
    is_convex = True
    lipschitz = 1.0

    def forward(self, x):
        a = x.abs()
        return _per_sample_sum(a + F.softplus(-2.0 * a) - math.log(2.0))

    def activation(self, x):
        return torch.tanh(x)


class Sigmoid(Lagrangian):
    r"""$L(x) = \sum_i \mathrm{softplus}(x_i)$, activation $\sigma(x) = 1/(1+e^{-x})$."""

    pointwise = True
    is_convex = True
    lipschitz = 0.25

    def forward(self, x):
        return _per_sample_sum(F.softplus(x))

    def activation(self, x):
        return torch.sigmoid(x)


# 16-point Gauss-Legendre rule on [0, 1] for the dilogarithm integral below.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)
_GL_NODES = (_GL_NODES + 1.0) / 2.0
_GL_WEIGHTS = _GL_WEIGHTS / 2.0


def _neg_li2_neg_exp(x: torch.Tensor) -> torch.Tensor:
    r"""$-\mathrm{Li}_2(-e^{x}) = \int_{-\infty}^x \mathrm{softplus}(s)\,ds$, elementwise, differentiable.

    For $x \le 0$: $\int_0^{t} \log(1+u)/u\,du$ with $t=e^x \in (0,1]$ by Gauss-Legendre (the
    integrand is analytic on a disc of radius 1 about the interval, error $<10^{-20}$). For $x>0$
    the inversion formula $-\mathrm{Li}_2(-e^{x}) = \pi^2/6 + x^2/2 + \mathrm{Li}_2(-e^{-x})$.
    """
    nodes = torch.as_tensor(_GL_NODES, dtype=x.dtype, device=x.device)
    weights = torch.as_tensor(_GL_WEIGHTS, dtype=x.dtype, device=x.device)
    a = -x.abs()  # <= 0
    t = torch.exp(a).unsqueeze(-1)  # (..., 1)
    u = t * nodes  # (..., 16)
    # log1p(u)/u, with its series 1 - u/2 where u underflows (keeps value and grad finite)
    small = u < 1e-6
    safe = torch.where(small, torch.ones_like(u), u)
    ratio = torch.where(small, 1.0 - 0.5 * u, torch.log1p(safe) / safe)
    inner = (ratio * weights).sum(-1) * t.squeeze(-1)
    pos = math.pi**2 / 6.0 + 0.5 * x * x - inner
    return torch.where(x > 0, pos, inner)


class Softplus(Lagrangian):
    r"""$L(x) = \sum_i \int_{-\infty}^{x_i}\mathrm{softplus} = -\mathrm{Li}_2(-e^{x})$, activation softplus."""

    pointwise = True
    is_convex = True
    lipschitz = 1.0

    def forward(self, x):
        return _per_sample_sum(_neg_li2_neg_exp(x))

    def activation(self, x):
        return F.softplus(x)


class GELU(Lagrangian):
    r"""$L(x) = \sum_i \tfrac12(x_i^2-1)\Phi(x_i) + \tfrac12 x_i\varphi(x_i)$, activation GELU $x\Phi(x)$.

    **Not convex**: GELU dips below zero and its slope is negative for $x < -0.75$, so the Hessian
    $\Phi(x) + x\varphi(x)$ is negative there. A block built on it has no Lyapunov guarantee.
    """

    pointwise = True
    is_convex = False
    lipschitz = 1.128905  # max_x d/dx [x Phi(x)] = Phi(sqrt 2) + sqrt(2) phi(sqrt 2) = 1.1289042

    def forward(self, x):
        cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
        pdf = torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return _per_sample_sum(0.5 * (x * x - 1.0) * cdf + 0.5 * x * pdf)

    def activation(self, x):
        return elementwise(F.gelu, x)


class Softmax(Lagrangian):
    r"""$L(x) = \beta^{-1}\log\sum_\mu e^{\beta x_\mu}$ over ``axis`` (summed over the others).

    Activation: $g = \mathrm{softmax}(\beta x)$ along ``axis``. Convex. ``beta`` must be positive;
    ``learnable_beta=True`` makes it a parameter.
    """

    is_convex = True

    def __init__(self, beta: float = 1.0, axis: int = -1, learnable_beta: bool = False):
        super().__init__()
        check_positive("Softmax", "beta", beta)
        check_axis("Softmax", axis)
        b = torch.tensor(float(beta))
        self.beta = nn.Parameter(b) if learnable_beta else nn.Buffer(b)
        self.axis = axis

    @property
    def lipschitz(self):
        return float(self.beta) / 2.0

    def forward(self, x):
        ax = _check_axis(x, self.axis, "Softmax")
        return _per_sample_sum(torch.logsumexp(self.beta * x, dim=ax) / self.beta)

    def activation(self, x):
        return torch.softmax(self.beta * x, dim=_check_axis(x, self.axis, "Softmax"))

    def extra_repr(self):
        return f"beta={float(self.beta):g}, axis={self.axis}, convex"


class LayerNorm(Lagrangian):
    r"""$L(x) = \gamma D\sqrt{\overline{(x-\bar x)^2}+\epsilon} + \sum_i\delta_i x_i$ over ``axis``.

    Activation: layer norm $g = \gamma(x-\bar x)/\sqrt{\mathrm{var}(x)+\epsilon} + \delta$, with the
    biased variance, exactly like ``torch.nn.LayerNorm``. With a scalar gain ($\gamma$ a number,
    ``per_feature=False``) this is exact and convex for $\gamma \ge 0$. With ``per_feature=True``
    ($\gamma_i$ a vector, as in ``nn.LayerNorm(elementwise_affine=True)``) the activation is *not*
    the gradient of any scalar function; the value uses $\bar\gamma$ and ``exact`` is ``False``: a
    relaxation, like untied weights.
    """

    def __init__(self, dim: int, axis: int = -1, eps: float = 1e-6, per_feature: bool = True,
                 bias: bool = True):
        super().__init__()
        check_size("LayerNorm", "dim", dim)
        check_positive("LayerNorm", "eps", eps)
        check_axis("LayerNorm", axis)
        self.dim, self.axis, self.eps, self.per_feature = int(dim), axis, float(eps), per_feature
        self.weight = nn.Parameter(torch.ones(dim) if per_feature else torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.exact = not per_feature

    def _moved(self, x):
        ax = _check_axis(x, self.axis, "LayerNorm")
        if x.shape[ax] != self.dim:
            raise ValueError(
                f"LayerNorm: expected size {self.dim} along axis {self.axis}, got state shape "
                f"{tuple(x.shape[1:])}. Pass dim={x.shape[ax]} or normalise another axis."
            )
        return ax

    def forward(self, x):
        ax = self._moved(x)
        xm = x.movedim(ax, -1)
        var = xm.var(-1, unbiased=False, keepdim=False)
        val = self.weight.mean() * self.dim * torch.sqrt(var + self.eps)
        if self.bias is not None:
            val = val + (xm * self.bias).sum(-1)
        return _per_sample_sum(val)

    def activation(self, x):
        # the common case (normalise the last axis of a batched state) needs no axis lookup
        last = self.axis == -1 and x.dim() >= 2 and x.shape[-1] == self.dim
        ax = x.dim() - 1 if last else self._moved(x)
        w = self.weight if self.per_feature else self.weight.expand(self.dim)
        if ax == x.dim() - 1:
            return F.layer_norm(x, (self.dim,), w, self.bias, self.eps)
        return F.layer_norm(x.movedim(ax, -1), (self.dim,), w, self.bias, self.eps).movedim(-1, ax)

    @property
    def is_convex(self):  # γ >= 0 keeps γ·D·sqrt(var+eps) convex
        return bool((self.weight.detach() >= 0).all())

    def extra_repr(self):
        kind = "per-feature gain (relaxation)" if self.per_feature else "scalar gain (exact)"
        return f"dim={self.dim}, axis={self.axis}, eps={self.eps:g}, {kind}"


class SphericalNorm(Lagrangian):
    r"""$L(x) = \gamma\sqrt{\lVert x\rVert^2+\epsilon} + \delta\cdot x$ over ``axis``; $g = \gamma x/\lVert x\rVert + \delta$."""

    def __init__(self, dim: int, axis: int = -1, eps: float = 1e-6, bias: bool = True):
        super().__init__()
        check_size("SphericalNorm", "dim", dim)
        check_positive("SphericalNorm", "eps", eps)
        check_axis("SphericalNorm", axis)
        self.dim, self.axis, self.eps = int(dim), axis, float(eps)
        self.weight = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x):
        xm = x.movedim(_check_axis(x, self.axis, "SphericalNorm"), -1)
        val = self.weight * torch.sqrt((xm * xm).sum(-1) + self.eps)
        if self.bias is not None:
            val = val + (xm * self.bias).sum(-1)
        return _per_sample_sum(val)

    def activation(self, x):
        ax = _check_axis(x, self.axis, "SphericalNorm")
        xm = x.movedim(ax, -1)
        g = self.weight * xm / torch.sqrt((xm * xm).sum(-1, keepdim=True) + self.eps)
        if self.bias is not None:
            g = g + self.bias
        return g.movedim(-1, ax)

    @property
    def is_convex(self):
        return bool(self.weight.detach() >= 0)


_REGISTRY = {
    "identity": Identity,
    "relu": ReLU,
    "rectified_power": RectifiedPower,
    "exp": Exp,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "softplus": Softplus,
    "gelu": GELU,
    "softmax": Softmax,
    "layernorm": LayerNorm,
    "spherical": SphericalNorm,
}


def names() -> list[str]:
    """Registered Lagrangian names (for :func:`get`)."""
    return sorted(_REGISTRY)


def get(name: str, **kwargs) -> Lagrangian:
    """Build a Lagrangian by name, e.g. ``get("gelu")`` or ``get("softmax", beta=2.0)``."""
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"Unknown Lagrangian {name!r}; valid names: {', '.join(names())}.")
    return _REGISTRY[key](**kwargs)
