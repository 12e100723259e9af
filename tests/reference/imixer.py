"""A plain-PyTorch iMixer (Ota & Taki, arXiv 2304.13061) in the official key layout: the test
oracle for the derived iMixer.

Written independently from the paper; the names follow the official code so that its state
dicts and ours share one layout: ``blocks.<i>.mlp_tokens.{fc1, fc_sn1, fc_sn2, fc2}`` with the
soft-spectral-normalised ``fc_sn*`` storing ``weight_orig``, ``weight_u``, ``weight_v`` and
``weight_sigma``; the rest is the Mixer layout of :mod:`tests.reference.mixer`.

The token iMLP solves $x = y + F(x)$, $y = \\mathrm{fc1}(t)$, $F(z) = \\mathrm{fc\\_sn2}(\\sigma(
\\mathrm{fc\\_sn1}(\\sigma(z))))$ by ``n_repeat`` plain iterations from $x = y$, then returns
$\\mathrm{fc2}(\\sigma(x))$.
"""

import torch
from torch import nn
from torch.nn import functional as F

from .mixer import MixerBlock, MlpMixer


class SoftSpectralNorm:
    """Forward pre-hook: ``weight = weight_orig / max(1, uᵀ weight_orig v / coeff)``.

    In training mode every call first runs ``n_power_iterations`` steps
    ``v = normalize(Wᵀu)``, ``u = normalize(Wv)`` (updating the buffers); in eval mode the stored
    ``u``, ``v`` are used as they are. Runs before *every* call of the module, like the official
    hook, so a module called ``k`` times per forward iterates ``k`` times as often.
    """

    def __init__(self, coeff: float, n_power_iterations: int, eps: float = 1e-12):
        self.coeff, self.n_power_iterations, self.eps = coeff, n_power_iterations, eps

    @classmethod
    def apply(cls, linear: nn.Linear, coeff=0.9, n_power_iterations=1) -> nn.Linear:
        w = linear.weight.detach()
        del linear._parameters["weight"]
        linear.weight_orig = nn.Parameter(w.clone())
        linear.register_buffer("weight_u", F.normalize(torch.randn(w.shape[0]).to(w), dim=0))
        linear.register_buffer("weight_v", F.normalize(torch.randn(w.shape[1]).to(w), dim=0))
        linear.register_buffer("weight_sigma", torch.ones(1).to(w))
        linear.weight = w  # plain attribute, recomputed by the hook before each call
        linear.register_forward_pre_hook(cls(coeff, n_power_iterations))
        return linear

    def __call__(self, module, inputs):
        w, u, v = module.weight_orig, module.weight_u, module.weight_v
        if module.training:
            with torch.no_grad():
                for _ in range(self.n_power_iterations):
                    v.copy_(F.normalize(w.t() @ u, dim=0, eps=self.eps))
                    u.copy_(F.normalize(w @ v, dim=0, eps=self.eps))
            u, v = u.clone(), v.clone()
        sigma = u @ w @ v
        module.weight_sigma.copy_(sigma.detach())
        module.weight = w / torch.clamp(sigma / self.coeff, min=1.0)


class IMlp(nn.Module):
    """The iMLP. ``every_call=False`` refreshes the spectral norms once per forward (at the
    first loop iteration) instead of before every call of ``fc_sn1``/``fc_sn2``."""

    def __init__(self, in_features, internal_features, hidden_features=None, coeff=0.9,
                 n_power_iterations=1, n_repeat=4, every_call=True):
        super().__init__()
        hidden_features = hidden_features or internal_features
        sn = SoftSpectralNorm.apply
        self.fc1 = nn.Linear(in_features, internal_features)
        self.fc_sn1 = sn(nn.Linear(internal_features, hidden_features), coeff, n_power_iterations)
        self.fc_sn2 = sn(nn.Linear(hidden_features, internal_features), coeff, n_power_iterations)
        self.fc2 = nn.Linear(internal_features, in_features)
        self.act = nn.GELU()
        self.n_repeat, self.every_call = n_repeat, every_call

    def forward(self, x):
        x = self.fc1(x)
        x_in = x
        for i in range(self.n_repeat):
            if i == 0 or self.every_call:
                x = self.fc_sn2(self.act(self.fc_sn1(self.act(x)))) + x_in
            else:  # reuse the weights the hooks computed at the first iteration
                h = F.linear(self.act(x), self.fc_sn1.weight, self.fc_sn1.bias)
                x = F.linear(self.act(h), self.fc_sn2.weight, self.fc_sn2.bias) + x_in
        return self.fc2(self.act(x))


def imixer_block(dim, seq_len, tokens_dim=None, hidden_dim=None, channels_dim=None, eps=1e-6,
                 **imlp_kwargs) -> MixerBlock:
    """A Mixer block whose ``mlp_tokens`` is the :class:`IMlp` (widths default to the paper's)."""
    tokens_dim = tokens_dim or dim // 2
    token_mlp = IMlp(seq_len, tokens_dim, hidden_dim or tokens_dim, **imlp_kwargs)
    return MixerBlock(dim, seq_len, tokens_dim, channels_dim or 4 * dim, eps, token_mlp=token_mlp)


def IMixer(num_classes=10, img_size=28, in_chans=1, patch_size=4, num_blocks=2, embed_dim=32,
           eps=1e-6, **block_kwargs) -> MlpMixer:
    """The whole iMixer: the reference Mixer with :func:`imixer_block` blocks."""
    return MlpMixer(num_classes, img_size, in_chans, patch_size, num_blocks, embed_dim, eps,
                    make_block=lambda d, n: imixer_block(d, n, eps=eps, **block_kwargs))
