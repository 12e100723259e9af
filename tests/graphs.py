"""Random declarations shared by the property tests (the generic oracle, the compiled descent).

``vector_graph(data, width)`` draws a hierarchy of vector layers with hypothesis: chains, loops,
lateral self-loops, N-ary ``FunctionSynapse``s with self terms, clamped inputs, one or two slow
layers. Returns ``(graph, slow, clamped)`` in float64.

``matrix_graph(data)`` draws layers of shape ``(rows, cols)`` coupled by ``Dense`` synapses on
either axis (token or channel mixing), with chains, feedback loops and lateral self-loops among
the fast layers: the declarations whose implicit components the block may iterate in a moved
layout. Returns ``(graph, slow)`` in float64.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S

ACTS = {"tanh": L.Tanh, "sigmoid": L.Sigmoid, "identity": L.Identity, "relu": L.ReLU,
        "softmax": lambda: L.Softmax(beta=1.0)}


def _scaled(syn, scale):
    """Rescale every weight of a synapse to spectral norm ``scale`` (a contracting coupling)."""
    with torch.no_grad():
        for _, p in syn.named_parameters():
            if p.dim() >= 2:
                p.mul_(scale / torch.linalg.matrix_norm(p.reshape(p.shape[0], -1), ord=2))
            else:
                p.normal_(0.0, 0.1)
    return syn


def _three_body(a, b, c, *, lam):
    return -lam * (a * b * c).sum(-1)


def _self_term(h, *, lam):
    return -0.5 * lam * (h * h).sum(-1)


def _pair_with_self(x, h, *, lam):  # -<g_h, g_x> - ½λ|g_h|²: non-linear in its fast endpoint
    return -(h * x).sum(-1) * 0.3 - 0.5 * lam * (h * h).sum(-1)


def vector_graph(data, width: int):
    """A random hierarchy of vector layers: returns ``(graph, slow, clamped inputs)``."""
    draw = data.draw
    n_fast = draw(st.integers(0, 3), label="fast layers")
    n_slow = draw(st.integers(1, 2), label="slow layers")
    acts = [draw(st.sampled_from(sorted(ACTS)), label=f"act{i}") for i in range(n_fast + n_slow)]
    neurons = {}
    slow = [f"x{i}" for i in range(n_slow)]
    fast = [f"h{i}" for i in range(n_fast)]
    for i, n in enumerate(slow):
        tau = draw(st.sampled_from([1.0, 2.0]), label=f"tau{n}")
        neurons[n] = hf.NeuronLayer(width, ACTS[acts[i]](), tau=tau)
    for i, n in enumerate(fast):
        neurons[n] = hf.NeuronLayer(width, ACTS[acts[n_slow + i]](), tau=0)
    synapses, edges = {"b": S.Bias(width)}, {"b": (slow[0],)}
    with torch.no_grad():
        synapses["b"].bias.normal_(0.0, 0.5)

    def dense(a, b, tied=True):
        k = f"W{len(synapses)}"
        # lateral self-loops count twice ((W + W^T) g): keep every layer's feedback below ~0.85
        synapses[k] = _scaled(S.Dense(width, width, tied=tied), 0.15 if a == b else 0.25)
        edges[k] = (a, b)

    if draw(st.booleans(), label="clamped input"):
        neurons["c"] = hf.NeuronLayer(width, L.Identity(), clamped=True)
        dense("c", draw(st.sampled_from(slow + fast), label="input target"))
    chain = slow[:1] + fast
    for a, b in zip(chain, chain[1:], strict=False):
        dense(a, b)
    for n in slow[1:]:  # every further slow layer hangs off a random layer
        dense(draw(st.sampled_from(chain), label=f"parent of {n}"), n)
    if len(fast) >= 2 and draw(st.booleans(), label="loop"):
        dense(fast[-1], fast[0])
    if fast and draw(st.booleans(), label="lateral"):
        h = draw(st.sampled_from(fast), label="lateral layer")
        dense(h, h)
    if fast and draw(st.booleans(), label="self term"):
        h = draw(st.sampled_from(fast), label="self-term layer")
        k = f"F{len(synapses)}"
        synapses[k] = S.FunctionSynapse(_self_term, 1, params={"lam": torch.tensor(0.2)})
        edges[k] = (h,)
    if fast and draw(st.booleans(), label="pair with self term"):
        h = draw(st.sampled_from(fast), label="pair layer")
        k = f"P{len(synapses)}"
        synapses[k] = S.FunctionSynapse(_pair_with_self, 2, params={"lam": torch.tensor(0.1)})
        edges[k] = (slow[0], h)
    if len(chain) >= 3 and draw(st.booleans(), label="three-body"):
        trio = draw(st.permutations(chain), label="three-body layers")[:3]
        k = f"T{len(synapses)}"
        synapses[k] = S.FunctionSynapse(_three_body, 3, params={"lam": torch.tensor(0.1)})
        edges[k] = tuple(trio)
    graph = hf.EnergyGraph(neurons, synapses, edges).double()
    clamped = ["c"] if "c" in neurons else []
    return graph, slow, clamped


MATRIX_ACTS = {"tanh": L.Tanh, "gelu": L.GELU, "identity": L.Identity, "relu": L.ReLU,
               "softplus": L.Softplus, "softmax": lambda: L.Softmax(beta=1.0)}


def matrix_graph(data, tied: bool | None = None):
    """Layers of shape ``(rows, cols)``, Dense couplings on axis -2 (rows) or -1 (cols); every
    coupling tied, or (``None``) each drawn."""
    draw = data.draw
    cols = draw(st.integers(2, 4), label="cols")
    n_fast = draw(st.integers(1, 3), label="fast layers")
    rows = [draw(st.integers(2, 5), label=f"rows{i}") for i in range(n_fast + 1)]
    token_only = draw(st.booleans(), label="token couplings only")
    acts = [draw(st.sampled_from(["tanh", "gelu", "identity", "relu", "softplus"]
                                 if draw(st.booleans(), label=f"pointwise{i}") else sorted(MATRIX_ACTS)),
                 label=f"act{i}") for i in range(n_fast + 1)]
    names = ["x"] + [f"h{i}" for i in range(n_fast)]
    shapes = {}
    neurons = {}
    for i, n in enumerate(names):
        shapes[n] = (rows[i], cols)
        neurons[n] = hf.NeuronLayer(shapes[n], MATRIX_ACTS[acts[i]](), tau=1.0 if i == 0 else 0)
    synapses, edges = {}, {}

    def dense(a, b, scale=0.3):
        axis = -2 if token_only else draw(st.sampled_from([-2, -1, 0]), label=f"axis {a}-{b}")
        if (axis in (-2, 0) and shapes[a][1] != shapes[b][1]) or \
                (axis == -1 and shapes[a][0] != shapes[b][0]):
            axis = -2 if shapes[a][1] == shapes[b][1] else -1
        i, o = (shapes[a][axis], shapes[b][axis])
        k = f"W{len(synapses)}"
        syn = S.Dense(i, o, axis=axis, tied=draw(st.booleans(), label=f"tied {k}") if tied is None
                      else tied,
                      bias=draw(st.booleans(), label=f"bias {k}"))
        synapses[k] = _scaled(syn, scale if a != b else 0.15)
        edges[k] = (a, b)

    for a, b in zip(names, names[1:], strict=False):
        dense(a, b)
    fast = names[1:]
    if len(fast) >= 2 and draw(st.booleans(), label="feedback loop"):
        dense(fast[-1], fast[0])
    if draw(st.booleans(), label="lateral"):
        h = draw(st.sampled_from(fast), label="lateral layer")
        dense(h, h)
    graph = hf.EnergyGraph(neurons, synapses, edges).double()
    return graph, ["x"]
