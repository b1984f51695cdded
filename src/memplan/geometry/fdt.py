"""Fused depthwise tiling (FDT): a group run in channel slices of the tensor its last layer
reduces over.

The seed (TU Munich, tinyML 2023, "fused depthwise tiling") splits a producer/consumer chain
by feature maps instead of neurons: the consumer's output is the sum over its input channels,
so the chain can run one channel slice of the shared tensor at a time, each slice adding its
partial sums into an int32 buffer, and the requantisation runs once, after the last slice.

In memplan an FDT group is a group of at least two layers whose last layer, the *consumer*, is
a convolution with one group or a fully connected layer, reading a tensor produced inside the
group (the *accumulated* tensor). Its tiling (:class:`memplan.geometry.group.Tiling`) has
``fdt_c`` > 0: the accumulated tensor is cut into slices of ``fdt_c`` channels. Back-propagation
of those channel spans (:func:`memplan.geometry.group._prepend_layer`, the same rule as any
other tile) gives every other tensor's channel span per slice: through a depthwise conv, an
activation, an elementwise op with matching channels or a pool the slice stays a slice; a
convolution with one group, the chain's *first* layer, needs all its input channels and
computes only the slice's output channels. A tiling is offered only when every tensor produced
inside the group is partitioned by the slices (each channel computed in exactly one slice): the
chain then does no more MACs than the untiled network, except the halos of spatial tiles.

The anchor (the consumer's output) spans all its channels in every slice. Slices combine with
spatial tiles of the anchor: the group runs spatial tile by spatial tile (rows, then columns)
and, inside each, slice by slice, so the int32 accumulator holds one anchor tile
(:func:`memplan.cost.candidate.accumulator_bytes`). After the last slice of a spatial tile a
requantize command adds the bias, rescales, adds the zero point, clamps and writes the int8
anchor tile. Integer addition is associative and the partial sums are exact integers, so the
slice order does not change a single output byte.

FDT candidates exist only on profiles that read weights in place (``weights_in_place``): each
slice then reads, in place, the first layer's weights of its output channels and the
consumer's weights of all its output channels x the slice's input channels; the consumer's
biases are read by the requantize. Weight buffers holding slices in SRAM are not implemented.
"""

from __future__ import annotations

from memplan.geometry.backprop import Span
from memplan.ir.graph import Graph, Layer
from memplan.ir.ops import ConvAttrs, OpKind

#: the SpanCache axis key of FDT channel slices (the NCHW axes are 1, 2 and 3)
FDT_AXIS = -1


def fdt_consumer(graph: Graph, start: int, stop: int, internal: tuple[str, ...]) -> Layer | None:
    """The group's consumer if the group [start, stop) can run in FDT slices: its last layer
    reduces over input channels (a convolution with one group, or fully connected) and reads a
    tensor produced inside the group."""
    if stop - start < 2:
        return None
    last = graph.layers[stop - 1]
    if not reduces_over_channels(last) or last.inputs[0] not in internal:
        return None
    return last


def reduces_over_channels(layer: Layer) -> bool:
    """Whether each output element of the layer sums over all channels of its one input: a
    convolution with one group, or fully connected (what an FDT consumer must be)."""
    if len(layer.inputs) != 1:
        return False
    if layer.op is OpKind.FULLY_CONNECTED:
        return True
    return layer.op is OpKind.CONV and isinstance(layer.attrs, ConvAttrs) and layer.attrs.groups == 1


def accumulated_tensor(consumer: Layer) -> str:
    """The tensor an FDT group slices: the consumer's input."""
    return consumer.inputs[0]


def slice_spans(channels: int, size: int) -> tuple[Span, ...]:
    """Consecutive channel slices of ``size`` (the last may be shorter)."""
    return tuple((lo, min(lo + size, channels)) for lo in range(0, channels, size))


__all__ = ["FDT_AXIS", "accumulated_tensor", "fdt_consumer", "reduces_over_channels", "slice_spans"]
