r"""Your own energy: token mixing through a Hopfield memory, channel mixing through an MLP.

The energy (docs/concepts/synapses.md, docs/concepts/fast_layers.md#classic-blocks) of tokens
$x \in \mathbb R^{N\times D}$ with a layer-norm Lagrangian, $g = \mathrm{LN}(x)$:

$$E = \mathcal L^\star(x) \;-\; \beta^{-1}\sum_{d}\log\sum_{\mu=1}^{M}
      \exp\big(\beta\,\langle \xi_\mu, g_{:,d}\rangle\big) \;+\; E_\text{channel MLP}(g, h),$$

a dense associative memory of $M$ patterns $\xi_\mu \in \mathbb R^{N}$ over the token axis (each
channel's column of $N$ token values is a query), plus a fast GELU hidden layer on the channel
axis, coupled by a *tied* dense synapse ($W$ up, $W^\top$ back: half the Mixer's channel
parameters). Derived with operator splitting into two residual groups, the block reads

$$x \leftarrow x + \zeta^\top \mathrm{softmax}(\beta\,\xi\,\mathrm{LN}_1(x)), \qquad
  x \leftarrow x + W^\top \mathrm{gelu}(W\,\mathrm{LN}_2(x) + b) + c,$$

a Mixer whose token MLP is replaced by memory retrieval (untied values $\zeta$) and whose
channel MLP is tied.

The module-level factory :func:`hopfield_memory_block` is what the registry calls, once per
block: ``hopfield train --model examples/custom_energy.py:hopfield_memory_block``.

Run ``python examples/custom_energy.py --smoke`` (seconds): it declares and derives the block,
prints its description, builds a classifier through the registry and trains a few steps.
"""

from __future__ import annotations

import argparse

import torch

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S


def hopfield_memory_graph(num_tokens: int, dim: int, num_memories: int | None = None,
                          channel_dim: int | None = None, *, beta: float = 1.0,
                          eps: float = 1e-6):
    """Declare the energy; returns ``(graph, groups)``. ``num_memories`` defaults to
    ``dim // 2`` (the Mixer's token width, so both have the same token-mixing parameters),
    ``channel_dim`` to ``4 * dim``."""
    num_memories = dim // 2 if num_memories is None else num_memories
    channel_dim = 4 * dim if channel_dim is None else channel_dim
    graph = hf.EnergyGraph(
        neurons={
            "x": hf.NeuronLayer((num_tokens, dim), L.LayerNorm(dim, eps=eps)),
            "h_ch": hf.NeuronLayer((num_tokens, channel_dim), L.get("gelu"), tau=0),
        },
        synapses={
            # memory on the token axis (-2): patterns xi (M, N), values zeta (M, N)
            "token_memory": S.HopfieldMemory(num_tokens, num_memories, beta=beta, axis=-2,
                                             tied=False),
            "channel_mlp": S.Dense(dim, channel_dim, axis=-1),  # tied: W up, W^T back
        },
        edges={"token_memory": ("x",), "channel_mlp": ("x", "h_ch")},
    )
    groups = [hf.Group(["token_memory"], name="token memory"),
              hf.Group(["channel_mlp"], name="channel mixing",
                       lagrangian=L.LayerNorm(dim, eps=eps))]
    return graph, groups


def hopfield_memory_block(num_tokens: int, dim: int, num_memories: int | None = None,
                          channel_dim: int | None = None, *, beta: float = 1.0,
                          eps: float = 1e-6, **derive_kwargs) -> hf.DerivedBlock:
    """The block factory: ``factory(num_tokens=..., dim=..., **kwargs)`` -> a derived block
    mapping tokens ``(B, N, D)`` to ``(B, N, D)``."""
    graph, groups = hopfield_memory_graph(num_tokens, dim, num_memories, channel_dim, beta=beta,
                                          eps=eps)
    return hf.derive(graph, "x", groups, **derive_kwargs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few steps (seconds)")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    dim, depth = (32, 2) if args.smoke else (128, 4)
    torch.manual_seed(0)

    block = hopfield_memory_block(num_tokens=49, dim=dim)  # declare + derive
    print(block.describe())
    x = torch.randn(2, 49, dim)
    print("block maps", tuple(x.shape), "->", tuple(block(x).shape))

    hf.models.register_model("hopfield_memory_tiny", hopfield_memory_block, depth=depth,
                             dim=dim, overwrite=True)
    model = hf.models.create_model("hopfield_memory_tiny", num_classes=10)
    print(f"model hopfield_memory_tiny: {sum(p.numel() for p in model.parameters()):,} "
          f"parameters, factory {model.config['factory']}")

    images = torch.randn(64, 1, 28, 28)  # a learnable toy task: the label is a pixel pattern
    labels = (images[:, 0, :4, :4].mean((1, 2)) > 0).long()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(args.steps):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 5 == 0 or step == args.steps - 1:
            print(f"step {step:3d} loss {loss.item():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
