r"""Declarations of the classic blocks as hierarchical Hopfield energies
(docs/concepts/fast_layers.md#classic-blocks).

Each ``*_graph`` function declares the energy; each ``*_block`` function derives the block from
it with :func:`hopfield.derive`. Nothing here writes an update rule by hand.

Example:
    >>> import torch, hopfield as hf
    >>> blk = hf.blocks.imixer_block(num_tokens=16, dim=32, max_iter=2)
    >>> blk(torch.randn(2, 16, 32)).shape
    torch.Size([2, 16, 32])
"""

from __future__ import annotations

from .core import lagrangians as L
from .core.graph import EnergyGraph
from .core.neurons import NeuronLayer
from .core.synapses import Dense, MultiHeadAttention
from .core.validate import check_int, check_positive, check_size
from .derivation import DerivedBlock, Group, derive
from .dynamics.spectral import spectral_norm

__all__ = ["mixer_graph", "mixer_block", "vit_graph", "vit_block", "imixer_graph", "imixer_block",
           "et_graph", "et_block", "tied_mixer_block", "tied_imixer_block"]


def _sizes(who, *, optional=False, **sizes):
    """Each size must be an int >= 1; ``None`` (optional ones only) means "use the default"."""
    for name, value in sizes.items():
        check_size(who, name, value, none_ok=optional)


def _norm(dim, tied, eps):
    # tied variants use a scalar gain (an exact, convex Lagrangian); untied ones nn.LayerNorm's
    # per-feature gain (a declared relaxation)
    return L.LayerNorm(dim, eps=eps, per_feature=not tied)


def mixer_graph(num_tokens: int, dim: int, token_dim: int | None = None,
                channel_dim: int | None = None, *, act: str = "gelu", tied: bool = False,
                eps: float = 1e-6):
    r"""MLP-Mixer energy (docs/concepts/fast_layers.md#mlp-mixer): visible
    $x\in\mathbb R^{N\times D}$ with layer norm, a fast token hidden layer $(K, D)$ (dense synapse
    on the token axis) and a fast channel hidden layer $(N, C)$ (dense synapse on the channel axis).
    Returns ``(graph, groups)``."""
    _sizes("mixer_graph", num_tokens=num_tokens, dim=dim)
    _sizes("mixer_graph", optional=True, token_dim=token_dim, channel_dim=channel_dim)
    token_dim = dim // 2 if token_dim is None else token_dim
    channel_dim = 4 * dim if channel_dim is None else channel_dim
    graph = EnergyGraph(
        neurons={
            "x": NeuronLayer((num_tokens, dim), _norm(dim, tied, eps)),
            "h_tok": NeuronLayer((token_dim, dim), L.get(act), tau=0),
            "h_ch": NeuronLayer((num_tokens, channel_dim), L.get(act), tau=0),
        },
        synapses={
            "token_mlp": Dense(num_tokens, token_dim, axis=-2, tied=tied),
            "channel_mlp": Dense(dim, channel_dim, axis=-1, tied=tied),
        },
        edges={"token_mlp": ("x", "h_tok"), "channel_mlp": ("x", "h_ch")},
    )
    norm2 = None if tied else _norm(dim, tied, eps)
    groups = [Group(["token_mlp"], name="token mixing"),
              Group(["channel_mlp"], name="channel mixing", lagrangian=norm2)]
    return graph, groups


def mixer_block(num_tokens, dim, token_dim=None, channel_dim=None, *, act="gelu", tied=False,
                eps=1e-6, **derive_kwargs) -> DerivedBlock:
    """The MLP-Mixer block ``x + TokenMLP(LN1(x))``, then ``x + ChannelMLP(LN2(x))``, derived."""
    graph, groups = mixer_graph(num_tokens, dim, token_dim, channel_dim, act=act, tied=tied, eps=eps)
    return derive(graph, "x", groups, **derive_kwargs)


def tied_mixer_block(num_tokens, dim, token_dim=None, channel_dim=None, *, act="relu",
                     **derive_kwargs) -> DerivedBlock:
    """Mixer with tied weights, one scalar-gain layer norm and (by default) convex ReLU: a true energy."""
    return mixer_block(num_tokens, dim, token_dim, channel_dim, act=act, tied=True, **derive_kwargs)


def vit_graph(num_tokens: int, dim: int, num_heads: int, mlp_dim: int | None = None, *,
              qkv_bias: bool = True, act: str = "gelu", tied: bool = False, eps: float = 1e-6):
    r"""Transformer (ViT) energy (docs/concepts/fast_layers.md#transformer): visible tokens with
    layer norm, a clamped memory copy of them, the log-sum-exp attention synapse (queries from the
    visible layer, keys from the memory), and a fast channel hidden layer. Returns
    ``(graph, groups)``."""
    _sizes("vit_graph", num_tokens=num_tokens, dim=dim, num_heads=num_heads)
    _sizes("vit_graph", optional=True, mlp_dim=mlp_dim)
    mlp_dim = 4 * dim if mlp_dim is None else mlp_dim
    graph = EnergyGraph(
        neurons={
            "x": NeuronLayer((num_tokens, dim), _norm(dim, tied, eps)),
            "mem": NeuronLayer((num_tokens, dim), copy_of="x"),
            "h_ch": NeuronLayer((num_tokens, mlp_dim), L.get(act), tau=0),
        },
        synapses={
            "attn": MultiHeadAttention(dim, num_heads, memory=True, tied=tied, bias=qkv_bias),
            "mlp": Dense(dim, mlp_dim, axis=-1, tied=tied),
        },
        edges={"attn": ("x", "mem"), "mlp": ("x", "h_ch")},
    )
    norm2 = None if tied else _norm(dim, tied, eps)
    groups = [Group(["attn"], name="attention"),
              Group(["mlp"], name="channel MLP", lagrangian=norm2)]
    return graph, groups


def vit_block(num_tokens, dim, num_heads, mlp_dim=None, *, qkv_bias=True, act="gelu", tied=False,
              eps=1e-6, **derive_kwargs) -> DerivedBlock:
    """The pre-norm ViT block ``x + MHA(LN1(x))``, then ``x + MLP(LN2(x))``, derived."""
    graph, groups = vit_graph(num_tokens, dim, num_heads, mlp_dim, qkv_bias=qkv_bias, act=act,
                              tied=tied, eps=eps)
    return derive(graph, "x", groups, **derive_kwargs)


def imixer_graph(num_tokens: int, dim: int, token_dim: int | None = None,
                 feedback_dim: int | None = None, channel_dim: int | None = None, *,
                 act: str = "gelu", tied: bool = False, coeff: float | None = 0.9,
                 n_power_iterations: int = 8, eps: float = 1e-6):
    r"""iMixer energy (docs/concepts/fast_layers.md#imixer): visible $x_1$ (layer norm), and a token
    group of **two** fast layers in a chain, $x_2$ (``token_dim`` $=D_i$ on the token axis) and
    $x_3$ (``feedback_dim`` $=D_h$), plus the channel hidden layer. The chain makes $\{x_2, x_3\}$
    an implicit group: $x_2 = (1-F)^{-1}(W_{21}\,\mathrm{LN}(x_1) + b_{21})$. ``coeff`` applies soft
    spectral normalisation to both feedback weights (``None`` disables it). Defaults follow the
    paper: $D_i = D/2$, $D_h = 2D_i$, channel MLP $4D$; every size must be an int >= 1."""
    who = "imixer_graph"
    _sizes(who, num_tokens=num_tokens, dim=dim)
    _sizes(who, optional=True, token_dim=token_dim, feedback_dim=feedback_dim,
           channel_dim=channel_dim)
    check_positive(who, "coeff", coeff, none_ok=True)
    check_int(who, "n_power_iterations", n_power_iterations, minimum=1)
    token_dim = dim // 2 if token_dim is None else token_dim
    feedback_dim = 2 * token_dim if feedback_dim is None else feedback_dim
    channel_dim = 4 * dim if channel_dim is None else channel_dim
    feedback = Dense(token_dim, feedback_dim, axis=-2, tied=tied)
    if coeff is not None:
        spectral_norm(feedback, "weight", coeff=coeff, n_power_iterations=n_power_iterations)
        if not tied:
            spectral_norm(feedback, "weight_back", coeff=coeff,
                          n_power_iterations=n_power_iterations)
    graph = EnergyGraph(
        neurons={
            "x": NeuronLayer((num_tokens, dim), _norm(dim, tied, eps)),
            "x2": NeuronLayer((token_dim, dim), L.get(act), tau=0),
            "x3": NeuronLayer((feedback_dim, dim), L.get(act), tau=0),
            "h_ch": NeuronLayer((num_tokens, channel_dim), L.get(act), tau=0),
        },
        synapses={
            "token_in": Dense(num_tokens, token_dim, axis=-2, tied=tied),
            "token_feedback": feedback,
            "channel_mlp": Dense(dim, channel_dim, axis=-1, tied=tied),
        },
        edges={"token_in": ("x", "x2"), "token_feedback": ("x2", "x3"),
               "channel_mlp": ("x", "h_ch")},
    )
    norm2 = None if tied else _norm(dim, tied, eps)
    groups = [Group(["token_in", "token_feedback"], name="token mixing (iMLP)"),
              Group(["channel_mlp"], name="channel mixing", lagrangian=norm2)]
    return graph, groups


def imixer_block(num_tokens, dim, token_dim=None, feedback_dim=None, channel_dim=None, *,
                 act="gelu", tied=False, coeff=0.9, n_power_iterations=8, eps=1e-6,
                 max_iter=4, spectral_schedule="forward", **derive_kwargs) -> DerivedBlock:
    """The iMixer block: token mixing by the inverse $(1-F)^{-1}$ of a residual MLP, derived.

    ``max_iter`` is the paper's $k$ (plain iterations from $x_2 = y$); pass ``tol`` and
    ``solver="anderson"`` to solve to a tolerance, ``grad="implicit"`` for implicit gradients.
    ``spectral_schedule`` says when the spectral norms of the feedback weights are refreshed:
    ``"forward"`` (once per forward, the default) or ``"iteration"`` (before every fixed-point
    iteration, as the official iMixer code does: training then follows the official loop
    exactly; see ``docs/tutorials/interop.md``).
    """
    check_int("imixer_block", "max_iter", max_iter, minimum=0)
    graph, groups = imixer_graph(num_tokens, dim, token_dim, feedback_dim, channel_dim, act=act,
                                 tied=tied, coeff=coeff, n_power_iterations=n_power_iterations,
                                 eps=eps)
    return derive(graph, "x", groups, max_iter=max_iter, spectral_schedule=spectral_schedule,
                  **derive_kwargs)


def tied_imixer_block(num_tokens, dim, token_dim=None, feedback_dim=None, channel_dim=None, *,
                      act="relu", **kwargs) -> DerivedBlock:
    """iMixer with tied weights ($W_{23}=W_{32}^\\top$, $W_{12}=W_{21}^\\top$), one scalar-gain layer
    norm and convex ReLU: every solver iteration lowers the fast group's energy."""
    return imixer_block(num_tokens, dim, token_dim, feedback_dim, channel_dim, act=act, tied=True,
                        **kwargs)


def et_graph(num_tokens: int, dim: int, num_heads: int = 4, head_dim: int | None = None,
             num_memories: int | None = None, *, beta: float | None = None, eps: float = 1e-5):
    r"""Energy Transformer energy (Hoover et al. 2023): tokens with a scalar-gain layer norm, the
    self-attention energy (keys from the same layer, tied) and a Hopfield memory written as a
    fast ReLU hidden layer with a tied dense synapse ($E = -\tfrac12\sum\mathrm{relu}(\xi g)^2$
    once eliminated). Returns ``(graph, groups)``.

    The defaults are the authors' (their code, checked numerically in
    ``tests/derivation/test_faithful.py``): $\beta = 1/\sqrt{\text{head\_dim}}$, no biases in
    attention or memory, a scalar layer-norm gain with a per-feature bias, layer-norm
    $\epsilon = 10^{-5}$ (``1e-6`` before; checkpoints record it), $4D$ memories. Their head
    dim is 64 whatever $D$ (``head_dim=64``; $D/h$ for their $D = 768$, 12 heads); here it
    defaults to ``dim // num_heads``. The paper's
    attention energy sums over the keys $B \neq C$ (a token does not attend to itself); the
    authors' code, and this energy, keep the token's own key ($B = C$ included)."""
    _sizes("et_graph", num_tokens=num_tokens, dim=dim, num_heads=num_heads)
    _sizes("et_graph", optional=True, head_dim=head_dim, num_memories=num_memories)
    head_dim = dim // num_heads if head_dim is None else head_dim
    num_memories = 4 * dim if num_memories is None else num_memories
    graph = EnergyGraph(
        neurons={
            "x": NeuronLayer((num_tokens, dim), L.LayerNorm(dim, eps=eps, per_feature=False)),
            "h_mem": NeuronLayer((num_tokens, num_memories), L.ReLU(), tau=0),
        },
        synapses={
            "attn": MultiHeadAttention(dim, num_heads, head_dim=head_dim, beta=beta, memory=False,
                                       tied=True, bias=False),
            "hopfield": Dense(dim, num_memories, axis=-1, bias=False, tied=True),
        },
        edges={"attn": ("x",), "hopfield": ("x", "h_mem")},
    )
    return graph, [Group(["attn", "hopfield"], name="attention + Hopfield memory")]


def et_block(num_tokens, dim, num_heads=4, head_dim=None, num_memories=None, *, beta=None,
             steps: int = 4, step_size: float = 0.1, eps=1e-5, **derive_kwargs) -> DerivedBlock:
    """The Energy Transformer block: ``steps`` residual descent steps $x \\leftarrow x + \\alpha I$
    of one tied energy ($x \\leftarrow x - \\alpha\\,\\partial E/\\partial g$, the authors' update;
    their defaults: $\\alpha = 0.1$, 12 steps; see :func:`et_graph`)."""
    check_int("et_block", "steps", steps, minimum=1)
    check_positive("et_block", "step_size", step_size)
    graph, groups = et_graph(num_tokens, dim, num_heads, head_dim, num_memories, beta=beta, eps=eps)
    return derive(graph, "x", groups, repeats=steps, step_size=step_size, tied=True,
                  **derive_kwargs)
