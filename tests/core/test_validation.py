"""Constructors and block builders reject nonsense sizes and scalars, naming the argument."""

import math

import numpy as np
import pytest
import torch

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S

NAN, INF = float("nan"), float("inf")


def _size(who, name, value):
    return rf"{who}: expected positive sizes, i.e. {name} >= 1 as an int, got {name}={value!r}"


def _pos(who, name):
    return rf"{who}: expected a positive finite {name}, got {name}="


SYNAPSE_ERRORS = [
    (lambda: S.Dense(0, 3), ValueError, _size("Dense", "in_dim", 0)),
    (lambda: S.Dense(3, -1), ValueError, _size("Dense", "out_dim", -1)),
    (lambda: S.Dense(True, 3), TypeError, _size("Dense", "in_dim", True)),
    (lambda: S.Dense(4.0, 3), TypeError, _size("Dense", "in_dim", 4.0)),
    (lambda: S.Conv(3, 0, 3), ValueError, _size("Conv", "out_channels", 0)),
    (lambda: S.Conv(0, 3, 3), ValueError, _size("Conv", "in_channels", 0)),
    (lambda: S.Conv(3, 4, 0), ValueError, _size("Conv", "kernel_size", 0)),
    (lambda: S.Conv(3, 4, (3, 3)), TypeError, "Conv: expected positive sizes, i.e. kernel_size"),
    (lambda: S.Conv(3, 4, 3, stride=0), ValueError, "Conv: expected stride >= 1 as an int"),
    (lambda: S.Conv(3, 4, 3, stride=True), TypeError, "Conv: expected stride >= 1 as an int"),
    (lambda: S.Conv(3, 4, 3, padding=-1), ValueError, "Conv: expected padding >= 0 as an int"),
    (lambda: S.Conv(3, 4, 3, padding=0.5), TypeError, "Conv: expected padding >= 0 as an int"),
    (lambda: S.HopfieldMemory(4, 0), ValueError, _size("HopfieldMemory", "num_memories", 0)),
    (lambda: S.HopfieldMemory(0, 4), ValueError, _size("HopfieldMemory", "dim", 0)),
    (lambda: S.HopfieldMemory(4, 3, beta=0), ValueError, _pos("HopfieldMemory", "beta")),
    (lambda: S.HopfieldMemory(4, 3, beta=-1.0), ValueError, _pos("HopfieldMemory", "beta")),
    (lambda: S.HopfieldMemory(4, 3, beta=NAN), ValueError, _pos("HopfieldMemory", "beta")),
    (lambda: S.HopfieldMemory(4, 3, beta=INF), ValueError, _pos("HopfieldMemory", "beta")),
    (lambda: S.HopfieldMemory(4, 3, beta=True), TypeError, _pos("HopfieldMemory", "beta")),
    (lambda: S.HopfieldMemory(4, 3, beta="1"), TypeError, _pos("HopfieldMemory", "beta")),
    (lambda: S.MultiHeadAttention(0, 1), ValueError, _size("MultiHeadAttention", "dim", 0)),
    (lambda: S.MultiHeadAttention(4, 0), ValueError, _size("MultiHeadAttention", "num_heads", 0)),
    (lambda: S.MultiHeadAttention(4, True), TypeError,
     _size("MultiHeadAttention", "num_heads", True)),
    (lambda: S.MultiHeadAttention(4, 2, head_dim=0), ValueError,
     _size("MultiHeadAttention", "head_dim", 0)),
    (lambda: S.MultiHeadAttention(4, 2, beta=NAN), ValueError, _pos("MultiHeadAttention", "beta")),
    (lambda: S.MultiHeadAttention(4, 2, beta=0.0), ValueError, _pos("MultiHeadAttention", "beta")),
    (lambda: S.MultiHeadAttention(4, 2, beta="x"), TypeError, _pos("MultiHeadAttention", "beta")),
    (lambda: S.MultiHeadAttention(6, 4), ValueError, "dim=6 is not divisible by num_heads=4"),
    (lambda: S.Bias(0), ValueError, r"Bias: expected positive sizes in shape, got shape=\(0,\)"),
    (lambda: S.Bias((3, 0)), ValueError, r"Bias: expected positive sizes in shape"),
    (lambda: S.Bias(()), TypeError, "Bias: expected shape to be an int or a non-empty tuple"),
    (lambda: S.Bias("3"), TypeError, "Bias: expected shape to be an int or a non-empty tuple"),
    (lambda: S.Bias((2.0,)), TypeError, "Bias: expected shape to be an int or a non-empty tuple"),
    (lambda: S.FunctionSynapse(lambda g: g.sum(-1), True), ValueError,
     "FunctionSynapse: arity must be a positive int"),
    (lambda: S.FunctionSynapse(lambda g: g.sum(-1), 0), ValueError,
     "FunctionSynapse: arity must be a positive int"),
    (lambda: S.FunctionSynapse(lambda g: g.sum(-1), 1, params={"w": 1.0}), TypeError,
     "FunctionSynapse: params must be a dict of name -> tensor"),
    (lambda: S.FunctionSynapse("fn", 1), TypeError, "FunctionSynapse: fn must be callable"),
]

LAGRANGIAN_ERRORS = [
    (lambda: L.LayerNorm(0), ValueError, _size("LayerNorm", "dim", 0)),
    (lambda: L.LayerNorm(True), TypeError, _size("LayerNorm", "dim", True)),
    (lambda: L.LayerNorm(4, eps=0.0), ValueError, _pos("LayerNorm", "eps")),
    (lambda: L.LayerNorm(4, eps=NAN), ValueError, _pos("LayerNorm", "eps")),
    (lambda: L.LayerNorm(4, eps=INF), ValueError, _pos("LayerNorm", "eps")),
    (lambda: L.SphericalNorm(0), ValueError, _size("SphericalNorm", "dim", 0)),
    (lambda: L.SphericalNorm(4, eps=-1e-6), ValueError, _pos("SphericalNorm", "eps")),
    (lambda: L.SphericalNorm(4, eps=INF), ValueError, _pos("SphericalNorm", "eps")),
    (lambda: L.Softmax(beta=0.0), ValueError, _pos("Softmax", "beta")),
    (lambda: L.Softmax(beta=INF), ValueError, _pos("Softmax", "beta")),
    (lambda: L.Softmax(beta=NAN), ValueError, _pos("Softmax", "beta")),
    (lambda: L.Softmax(beta=True), TypeError, _pos("Softmax", "beta")),
    (lambda: L.RectifiedPower(1), ValueError, "RectifiedPower: expected a power n > 1"),
    (lambda: L.RectifiedPower(INF), ValueError, "RectifiedPower: expected a power n > 1"),
    (lambda: L.RectifiedPower(NAN), ValueError, "RectifiedPower: expected a power n > 1"),
    (lambda: L.RectifiedPower("3"), TypeError, "RectifiedPower: expected a power n > 1"),
]


@pytest.mark.parametrize("make,exc,match", SYNAPSE_ERRORS + LAGRANGIAN_ERRORS)
def test_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_valid_constructions_keep_their_defaults():
    assert S.HopfieldMemory(4, 3).beta == 1.0
    mha = S.MultiHeadAttention(8, 2)
    assert mha.head_dim == 4 and mha.beta == pytest.approx(1 / math.sqrt(4))
    assert S.MultiHeadAttention(8, 2, head_dim=3).head_dim == 3
    conv = S.Conv(3, 4, 3, stride=2, padding=1)
    assert (conv.stride, conv.padding) == (2, 1)
    assert S.Dense(np.int64(4), 3).in_dim == 4  # NumPy ints are ints
    assert S.Bias(torch.Size([2, 3])).shape == (2, 3)
    assert L.LayerNorm(4).eps == 1e-6 and L.SphericalNorm(4).eps == 1e-6
    assert L.RectifiedPower(3).n == 3.0 and float(L.Softmax().beta) == 1.0


B = hf.blocks
BUILDER_ERRORS = [
    (lambda: B.mixer_block(4, 8, token_dim=0), ValueError, _size("mixer_graph", "token_dim", 0)),
    (lambda: B.mixer_block(4, 8, channel_dim=-2), ValueError,
     _size("mixer_graph", "channel_dim", -2)),
    (lambda: B.mixer_block(0, 8), ValueError, _size("mixer_graph", "num_tokens", 0)),
    (lambda: B.mixer_block(4, 8.0), TypeError, _size("mixer_graph", "dim", 8.0)),
    (lambda: B.tied_mixer_block(4, 8, token_dim=0), ValueError,
     _size("mixer_graph", "token_dim", 0)),
    (lambda: B.vit_block(4, 8, 0), ValueError, _size("vit_graph", "num_heads", 0)),
    (lambda: B.vit_block(4, 8, 2, mlp_dim=0), ValueError, _size("vit_graph", "mlp_dim", 0)),
    (lambda: B.imixer_block(4, 8, token_dim=0), ValueError,
     _size("imixer_graph", "token_dim", 0)),
    (lambda: B.imixer_block(4, 8, feedback_dim=0), ValueError,
     _size("imixer_graph", "feedback_dim", 0)),
    (lambda: B.imixer_block(4, 8, channel_dim=True), TypeError,
     _size("imixer_graph", "channel_dim", True)),
    (lambda: B.tied_imixer_block(4, -8), ValueError, _size("imixer_graph", "dim", -8)),
    (lambda: B.imixer_block(4, 8, max_iter=-1), ValueError,
     "imixer_block: expected max_iter >= 0 as an int, got max_iter=-1"),
    (lambda: B.imixer_block(4, 8, max_iter=2.0), TypeError,
     "imixer_block: expected max_iter >= 0 as an int"),
    (lambda: B.imixer_block(4, 8, coeff=0.0), ValueError, _pos("imixer_graph", "coeff")),
    (lambda: B.imixer_block(4, 8, n_power_iterations=0), ValueError,
     "imixer_graph: expected n_power_iterations >= 1 as an int"),
    (lambda: B.et_block(4, 8, head_dim=0), ValueError, _size("et_graph", "head_dim", 0)),
    (lambda: B.et_block(4, 8, num_memories=0), ValueError,
     _size("et_graph", "num_memories", 0)),
    (lambda: B.et_block(4, 8, num_heads=0), ValueError, _size("et_graph", "num_heads", 0)),
    (lambda: B.et_block(4, 8, steps=0), ValueError, "et_block: expected steps >= 1 as an int"),
    (lambda: B.et_block(4, 8, step_size=NAN), ValueError, _pos("et_block", "step_size")),
]


@pytest.mark.parametrize("make,exc,match", BUILDER_ERRORS)
def test_builder_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_builder_defaults_are_unchanged():
    graph, _ = B.mixer_graph(4, 8)
    assert graph.neurons["h_tok"].shape == (4, 8) and graph.neurons["h_ch"].shape == (4, 32)
    graph, _ = B.imixer_graph(4, 8)
    assert graph.neurons["x2"].shape == (4, 8) and graph.neurons["x3"].shape == (8, 8)
    graph, _ = B.imixer_graph(4, 8, token_dim=3)
    assert graph.neurons["x3"].shape == (6, 8)
    graph, _ = B.vit_graph(4, 8, 2)
    assert graph.neurons["h_ch"].shape == (4, 32)
    graph, _ = B.et_graph(4, 8, 2)
    assert graph.synapses["attn"].head_dim == 4 and graph.neurons["h_mem"].shape == (4, 32)
    block = B.imixer_block(4, 8, max_iter=0)  # k = 0 (no feedback iterations) stays allowed
    assert block(torch.randn(2, 4, 8)).shape == (2, 4, 8)
