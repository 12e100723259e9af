"""A plain-PyTorch Energy Transformer block (Hoover et al., NeurIPS 2023): the test oracle for
the derived ET.

Written from the paper's equations and the defaults of the authors' code (not copied from it):

* layer norm with a **scalar** gain and a per-feature bias,
  $g = \\gamma\\,(x - \\bar x)/\\sqrt{\\overline{(x-\\bar x)^2} + \\epsilon} + \\delta$,
  $\\epsilon = 10^{-5}$;
* attention energy $E_A = -\\beta^{-1}\\sum_h\\sum_C \\log\\sum_B \\exp(\\beta\\,K_{hB}\\cdot Q_{hC})$
  with $Q_h = W^Q_h g$, $K_h = W^K_h g$ (no biases), $\\beta = 1/\\sqrt{Y}$ ($Y$ the head dim);
  the sum over keys $B$ **includes** $B = C$, as in the authors' code (the paper writes
  $B \\neq C$);
* Hopfield memory $E_{HN} = -\\tfrac12\\sum_{B,\\mu}\\mathrm{relu}(\\xi_\\mu\\cdot g_B)^2$ (no bias);
* ``steps`` explicit descent steps $x \\leftarrow x - \\alpha\\,\\partial E/\\partial g$ with
  $g = \\mathrm{LN}(x)$ recomputed before each step.

Weights use the authors' shapes: ``Wq``, ``Wk`` ``(heads, head_dim, dim)``, ``Xi``
``(dim, memories)``, ``gamma`` ``()``, ``delta`` ``(dim,)``. The gradient
$\\partial E/\\partial g$ is taken by autograd on the energy (``create_graph=True``, so training
gradients flow through every step).
"""

import math

import torch
from torch import nn


class EnergyLayerNorm(nn.Module):
    """Layer norm with a scalar gain ``gamma`` and a per-feature bias ``delta``."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(()))
        self.delta = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        xc = x - x.mean(-1, keepdim=True)
        return self.gamma * xc / torch.sqrt((xc * xc).mean(-1, keepdim=True) + self.eps) + self.delta


class ETBlock(nn.Module):
    """``steps`` descent steps of the ET energy on tokens ``(batch, tokens, dim)``."""

    def __init__(self, dim: int, num_heads: int = 4, head_dim: int | None = None,
                 num_memories: int | None = None, *, steps: int = 4, alpha: float = 0.1,
                 eps: float = 1e-5, beta: float | None = None):
        super().__init__()
        head_dim = head_dim or dim // num_heads
        num_memories = num_memories or 4 * dim
        self.steps, self.alpha = steps, alpha
        self.beta = 1.0 / math.sqrt(head_dim) if beta is None else beta
        self.norm = EnergyLayerNorm(dim, eps)
        self.Wq = nn.Parameter(0.1 * torch.randn(num_heads, head_dim, dim))
        self.Wk = nn.Parameter(0.1 * torch.randn(num_heads, head_dim, dim))
        self.Xi = nn.Parameter(0.1 * torch.randn(dim, num_memories))

    def attention_energy(self, g):
        q = torch.einsum("bnd,hyd->bhny", g, self.Wq)
        k = torch.einsum("bnd,hyd->bhny", g, self.Wk)
        scores = self.beta * torch.einsum("bhcy,bhky->bhck", q, k)  # queries C, keys B
        return -torch.logsumexp(scores, dim=-1).sum((1, 2)) / self.beta

    def memory_energy(self, g):
        return -0.5 * (torch.relu(g @ self.Xi) ** 2).sum((1, 2))

    def energy(self, g):
        """Per-sample energy of the activations ``g``, shape ``(batch,)``."""
        return self.attention_energy(g) + self.memory_energy(g)

    def forward(self, x):
        train = torch.is_grad_enabled()  # keep the graph of every step for training
        for _ in range(self.steps):
            g = self.norm(x)
            with torch.enable_grad():
                if not g.requires_grad:  # e.g. under no_grad: differentiate w.r.t. g alone
                    g = g.detach().requires_grad_(True)
                (dEdg,) = torch.autograd.grad(self.energy(g).sum(), g,
                                              create_graph=train)
            x = x - self.alpha * dEdg
        return x
