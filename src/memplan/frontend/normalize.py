"""Rewrites of the draft graph that remove its pseudo ops.

Run in this order by :func:`normalize`:

1. :func:`fold_pads` - a zero PAD folds into the padding of every Conv / pool reading it (for
   pools only where exact); otherwise it is an error.
2. :func:`fold_affines` - a per-channel AFFINE folds into the weights and bias of the Conv,
   ConvTranspose or fully connected layer producing its input (when that layer has no
   activation and nothing else reads its output); consecutive AFFINEs merge.
3. :func:`materialize_affines` - an AFFINE left over becomes a depthwise 1x1 Conv.
4. :func:`fuse_activations` - an ACT fuses into the epilogue of the layer (of any kind) producing
   its input (when that layer has no activation yet and nothing else reads its output).
5. :func:`materialize_activations` - an ACT left over becomes a depthwise 1x1 identity Conv
   carrying the activation: the IR has no standalone activation layer, and this keeps the
   tensor the model computes (at the cost of C*H*W MACs, which is honest about the extra pass).
"""

from __future__ import annotations

import numpy as np

from memplan.errors import ModelError
from memplan.frontend.draft import AffineAttrs, ConstInfo, Draft, DraftLayer, PadAttrs, Pseudo
from memplan.ir.ops import ActKind, ConvAttrs, ConvTransposeAttrs, OpKind, Pads, PoolAttrs

_FOLDS_AFFINE = (OpKind.CONV, OpKind.CONV_TRANSPOSE, OpKind.FULLY_CONNECTED)


def normalize(draft: Draft) -> None:
    fold_pads(draft)
    fold_affines(draft)
    materialize_affines(draft)
    fuse_activations(draft)
    materialize_activations(draft)


# ---------------------------------------------------------------------------------- pads
def _non_negative(layer: DraftLayer | None) -> bool:
    """Whether a layer's output is known to be >= 0 (so zero padding never wins a max)."""
    if layer is None or layer.activation is None:
        return False
    act = layer.activation
    if act.kind in (ActKind.RELU, ActKind.SIGMOID, ActKind.HARD_SIGMOID):
        return True
    return act.kind is ActKind.CLIP and act.params[0] >= 0


def _padded_attrs(consumer: DraftLayer, pads: Pads, producer: DraftLayer | None) -> ConvAttrs | PoolAttrs:
    attrs = consumer.attrs
    assert isinstance(attrs, (ConvAttrs, PoolAttrs))
    summed = (attrs.pads[0] + pads[0], attrs.pads[1] + pads[1], attrs.pads[2] + pads[2], attrs.pads[3] + pads[3])
    if isinstance(attrs, ConvAttrs):
        return ConvAttrs(attrs.kernel, attrs.stride, summed, attrs.dilation, attrs.groups)
    if consumer.op is OpKind.MAX_POOL:
        if not _non_negative(producer):
            raise ModelError(
                f"layer {consumer.id!r}: a zero Pad before MaxPool differs from MaxPool's own padding unless "
                "its input is non-negative (e.g. after ReLU); move the padding into the MaxPool's pads"
            )
        return PoolAttrs(attrs.kernel, attrs.stride, summed, attrs.count_include_pad, attrs.ceil_pads)
    if any(attrs.pads) and not attrs.count_include_pad:
        raise ModelError(
            f"layer {consumer.id!r}: a zero Pad before an AveragePool that excludes its own padding from the average "
            "cannot be folded exactly; use one kind of padding"
        )
    # the padded zeros are data: they count in every average
    return PoolAttrs(attrs.kernel, attrs.stride, summed, True, attrs.ceil_pads)


def fold_pads(draft: Draft) -> None:
    producers = draft.producers()
    pads = [layer for layer in draft.layers if layer.op is Pseudo.PAD]
    for pad in pads:
        assert isinstance(pad.attrs, PadAttrs)
        consumers = [layer for layer in draft.layers if pad.output in layer.inputs]
        if pad.output in draft.outputs or not consumers:
            raise ModelError(f"layer {pad.id!r}: a Pad whose result is a model output cannot be folded into a layer")
        for consumer in consumers:
            if consumer.op not in (OpKind.CONV, OpKind.MAX_POOL, OpKind.AVG_POOL):
                raise ModelError(
                    f"layer {pad.id!r}: a Pad read by {consumer.op.value} layer {consumer.id!r} cannot be "
                    "folded; memplan folds zero padding only into a following Conv, MaxPool or AveragePool"
                )
            consumer.attrs = _padded_attrs(consumer, pad.attrs.pads, producers.get(pad.inputs[0]))
            consumer.inputs = [pad.inputs[0] if t == pad.output else t for t in consumer.inputs]
    draft.drop(pads)


# ---------------------------------------------------------------------------------- affines
def _scaled_info(info: ConstInfo | None, fallback: str) -> ConstInfo:
    """Rewritten weights are no longer exactly the stored quantised values."""
    if info is None:
        return ConstInfo(fallback)
    return ConstInfo(info.dtype if info.quant is None else fallback)


def _fold_into(layer: DraftLayer, scale: np.ndarray, shift: np.ndarray, fm_dtype: str) -> None:
    """Make ``layer`` compute ``scale * layer(x) + shift`` per output channel."""
    assert layer.weight is not None
    w = np.asarray(layer.weight, dtype=np.float64)
    if layer.op is OpKind.CONV_TRANSPOSE:
        assert isinstance(layer.attrs, ConvTransposeAttrs)
        c_in, per_group = w.shape[0], w.shape[1]
        groups = layer.attrs.groups
        # weight[i, j] feeds output channel (i // (c_in // groups)) * per_group + j
        out_channel = (np.arange(c_in) // (c_in // groups))[:, None] * per_group + np.arange(per_group)[None, :]
        w = w * scale[out_channel][:, :, None, None]
    else:
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    bias = np.zeros(scale.shape) if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
    layer.weight = w.astype(np.float32)
    layer.bias = (bias * scale + shift).astype(np.float32)
    float_dtype = fm_dtype if fm_dtype.startswith("float") else "float32"
    layer.weight_info = _scaled_info(layer.weight_info, float_dtype)
    layer.bias_info = _scaled_info(layer.bias_info, float_dtype) if layer.bias_info else ConstInfo(float_dtype)


def fold_affines(draft: Draft) -> None:
    producers = draft.producers()
    readers = draft.consumer_counts()
    removed: list[DraftLayer] = []
    for layer in draft.layers:
        if layer.op is not Pseudo.AFFINE:
            continue
        assert isinstance(layer.attrs, AffineAttrs)
        src = layer.inputs[0]
        prev = producers.get(src)
        if prev is None or readers[src] != 1:
            continue
        if prev.op in _FOLDS_AFFINE and prev.activation is None:
            _fold_into(prev, layer.attrs.scale, layer.attrs.shift, draft.tensors[src].dtype)
        elif prev.op is Pseudo.AFFINE:
            assert isinstance(prev.attrs, AffineAttrs)
            s, t = layer.attrs.scale, layer.attrs.shift
            prev.attrs = AffineAttrs(prev.attrs.scale * s, prev.attrs.shift * s + t)
        else:
            continue
        prev.output = layer.output
        producers[layer.output] = prev
        removed.append(layer)
    draft.drop(removed)


def _depthwise_1x1(layer: DraftLayer, draft: Draft, scale: np.ndarray, shift: np.ndarray | None) -> None:
    c = scale.shape[0]
    layer.op = OpKind.CONV
    layer.attrs = ConvAttrs((1, 1), groups=c)
    layer.weight = scale.reshape(c, 1, 1, 1).astype(np.float32)
    dtype = draft.tensors[layer.inputs[0]].dtype
    info = ConstInfo(dtype if dtype.startswith("float") else "float32")
    layer.weight_info = info
    layer.bias = None if shift is None else shift.astype(np.float32)
    layer.bias_info = None if shift is None else info


def materialize_affines(draft: Draft) -> None:
    for layer in draft.layers:
        if layer.op is Pseudo.AFFINE:
            assert isinstance(layer.attrs, AffineAttrs)
            shift = layer.attrs.shift
            _depthwise_1x1(layer, draft, layer.attrs.scale, shift if np.any(shift) else None)


# ---------------------------------------------------------------------------------- activations
def fuse_activations(draft: Draft) -> None:
    producers = draft.producers()
    readers = draft.consumer_counts()
    removed: list[DraftLayer] = []
    for layer in draft.layers:
        if layer.op is not Pseudo.ACT:
            continue
        src = layer.inputs[0]
        prev = producers.get(src)
        if (prev is None or prev.activation is not None or readers[src] != 1 or isinstance(prev.op, Pseudo)
                or prev.op is OpKind.HOST):
            continue
        prev.activation = layer.activation
        prev.output = layer.output
        producers[layer.output] = prev
        removed.append(layer)
    draft.drop(removed)


def materialize_activations(draft: Draft) -> None:
    for layer in draft.layers:
        if layer.op is Pseudo.ACT:
            c = draft.tensors[layer.inputs[0]].shape[1]
            _depthwise_1x1(layer, draft, np.ones(c), None)

