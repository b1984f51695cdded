"""The int8 weights of a layer, as memplan quantises them: one place below both the cost model
(memplan.cost.weights sizes what a weight codec makes of them) and the executor
(memplan.execute.quantize runs them).

Weights are quantised symmetrically per output channel: the model's own scales when it carries
them (QDQ or int8 TFLite), else the channel's largest magnitude over 127; rounding is half away
from zero. A graph whose weights are all constant fills (the onnx package's light models) gets
seeded random weights instead (:func:`substitute_constant_weights`), so that plans have real
data to run.
"""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from memplan.errors import ModelError
from memplan.ir.graph import Graph, Layer, QuantParams
from memplan.ir.ops import ConvTransposeAttrs, OpKind

INT8_MIN = -128
INT8_MAX = 127

I8 = npt.NDArray[np.int8]
F64 = npt.NDArray[np.float64]


def round_half_away(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Round floats to the nearest integer, ties away from zero (C ``round``), as float64."""
    a = np.asarray(x, dtype=np.float64)
    return np.sign(a) * np.floor(np.abs(a) + 0.5)


def substitute_constant_weights(graph: Graph, seed: int = 0) -> tuple[Graph, tuple[str, ...]]:
    """If every weight tensor of the graph is a constant fill (all elements equal, as the
    ``ConstantOfShape`` weights of the onnx package's light models), return a copy whose
    weights and biases are seeded random draws (He-normal weights with fan-in = elements per
    output channel, normal(0, 0.05) biases, drawn in layer order from ``default_rng(seed)``)
    and the names replaced. Otherwise (or if the weights carry quantisation parameters, i.e.
    are real QDQ data) return the graph unchanged and ``()``."""
    weighted = [layer for layer in graph.layers if layer.weight is not None]
    names = [layer.weight for layer in weighted if layer.weight is not None]
    if (not names or not all(_constant(graph.weights[n]) for n in names)
            or any(graph.tensors[n].quant is not None for n in names)):
        return graph, ()
    rng = np.random.default_rng(seed)
    new = dict(graph.weights)
    replaced: list[str] = []
    for layer in weighted:
        assert layer.weight is not None
        w = graph.weights[layer.weight]
        c_out = graph.out_channels(layer)
        fan_in = max(w.size // c_out, 1)
        new[layer.weight] = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=w.shape).astype(w.dtype)
        replaced.append(layer.weight)
        if layer.bias is not None:
            b = graph.weights[layer.bias]
            new[layer.bias] = rng.normal(0.0, 0.05, size=b.shape).astype(b.dtype)
            replaced.append(layer.bias)
    return dataclasses.replace(graph, weights=MappingProxyType(new)), tuple(replaced)


def _constant(a: np.ndarray) -> bool:
    return a.size > 1 and bool(np.all(a == a.flat[0]))


def weight_scales(graph: Graph, layer: Layer, w: F64) -> F64:
    """Per-output-channel weight scales (from the model's parameters if it has them)."""
    c_out = graph.out_channels(layer)
    attrs = layer.attrs
    groups = attrs.groups if isinstance(attrs, ConvTransposeAttrs) else 1
    assert layer.weight is not None
    explicit = graph.tensors[layer.weight].quant
    if explicit is not None:
        check_symmetric(explicit, layer.weight)
        scales = np.asarray(explicit.scale, dtype=np.float64)
        if scales.size == 1:
            return np.full(c_out, scales[0])
        if scales.size == c_out:
            return scales
        if layer.op is OpKind.CONV_TRANSPOSE and scales.size * groups == c_out:
            return np.tile(scales, groups)
        raise ModelError(f"layer {layer.id!r}: {scales.size} weight scales for {c_out} output channels")
    if layer.op is OpKind.CONV_TRANSPOSE:
        c_in, c_out_g, kh, kw = w.shape
        peak = np.abs(w.reshape(groups, c_in // groups, c_out_g, kh * kw)).max(axis=(1, 3)).reshape(-1)
    else:
        peak = np.abs(w.reshape(c_out, -1)).max(axis=1)
    return np.where(peak > 0, peak / 127.0, 1.0)


def check_symmetric(qp: QuantParams, name: str) -> None:
    neutral = 128 if qp.dtype == "uint8" else 0
    if any(z != neutral for z in qp.zero_point):
        raise ModelError(f"weight {name!r} has a non-zero zero point: only symmetric weights are supported")


def quantize_weight(layer: Layer, w: F64, scales: F64, explicit: bool) -> I8:
    """Round ``w / scale`` per output channel; model-given weights may use -128."""
    if layer.op is OpKind.CONV_TRANSPOSE:
        assert isinstance(layer.attrs, ConvTransposeAttrs)
        g = layer.attrs.groups
        c_in, c_out_g = w.shape[:2]
        s = scales.reshape(g, 1, c_out_g, 1, 1)
        q = round_half_away(w.reshape(g, c_in // g, c_out_g, *w.shape[2:]) / s).reshape(w.shape)
    else:
        q = round_half_away(w / scales.reshape((-1,) + (1,) * (w.ndim - 1)))
    return np.clip(q, INT8_MIN if explicit else -INT8_MAX, INT8_MAX).astype(np.int8)


def layer_weight(graph: Graph, layer: Layer) -> tuple[F64, I8]:
    """A weighted layer's per-output-channel weight scales and int8 weights."""
    assert layer.weight is not None
    w = graph.weights[layer.weight].astype(np.float64)
    w_scale = weight_scales(graph, layer, w)
    return w_scale, quantize_weight(layer, w, w_scale, graph.tensors[layer.weight].quant is not None)


def quantized_weight(graph: Graph, layer: Layer) -> I8:
    """The int8 weights of a weighted layer (of a graph whose constant-fill weights are already
    substituted), as memplan.execute.quantize.quantize_graph runs them and memplan.cost.weights
    sizes them."""
    return layer_weight(graph, layer)[1]


__all__ = ["INT8_MAX", "INT8_MIN", "check_symmetric", "layer_weight", "quantized_weight", "round_half_away",
           "substitute_constant_weights"]
