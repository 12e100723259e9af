"""A plain-PyTorch MLP-Mixer in timm's key layout: the test oracle for the derived Mixer.

Written independently from the paper (Tolstikhin et al. 2021); only the parameter names follow
``timm.models.mlp_mixer`` so that its state dicts and ours share one layout:
``stem.proj``, ``blocks.<i>.{norm1, mlp_tokens.fc1, mlp_tokens.fc2, norm2, mlp_channels.fc1,
mlp_channels.fc2}``, ``norm``, ``head``.
"""

from torch import nn


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` on the last axis."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class MixerBlock(nn.Module):
    """``x + TokenMLP(LN1(x)ᵀ)ᵀ`` then ``x + ChannelMLP(LN2(x))`` on ``(batch, tokens, dim)``."""

    def __init__(self, dim: int, seq_len: int, tokens_dim: int | None = None,
                 channels_dim: int | None = None, eps: float = 1e-6, token_mlp: nn.Module = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp_tokens = token_mlp or Mlp(seq_len, tokens_dim or dim // 2)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp_channels = Mlp(dim, channels_dim or 4 * dim)

    def forward(self, x):
        x = x + self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.mlp_channels(self.norm2(x))


class PatchStem(nn.Module):
    """Non-overlapping patches -> tokens ``(batch, (H/p)(W/p), dim)``."""

    def __init__(self, in_chans: int, dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class MlpMixer(nn.Module):
    """Stem, ``num_blocks`` blocks, final layer norm, mean over tokens, linear head.

    ``make_block(dim, seq_len)`` builds each block (default: :class:`MixerBlock` with timm's
    ``mlp_ratio=(0.5, 4.0)``); the iMixer reference passes its own.
    """

    def __init__(self, num_classes=10, img_size=28, in_chans=1, patch_size=4, num_blocks=2,
                 embed_dim=32, eps=1e-6, make_block=None):
        super().__init__()
        seq_len = (img_size // patch_size) ** 2
        make_block = make_block or (lambda d, n: MixerBlock(d, n, d // 2, 4 * d, eps))
        self.stem = PatchStem(in_chans, embed_dim, patch_size)
        self.blocks = nn.Sequential(*[make_block(embed_dim, seq_len) for _ in range(num_blocks)])
        self.norm = nn.LayerNorm(embed_dim, eps=eps)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
        x = self.norm(self.blocks(self.stem(x)))
        return self.head(x.mean(dim=1))
