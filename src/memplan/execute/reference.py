"""The untiled integer reference: every layer computed on its whole output region.

The tiled executor must reproduce these arrays bit for bit: both call the same kernels
(:func:`memplan.execute.kernels.run_layer`) with the same :class:`QuantizedGraph`; host layers
run :func:`memplan.host.run_host_int` in both.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from memplan.execute.kernels import Tile, run_layer
from memplan.execute.quantize import QuantizedGraph
from memplan.geometry.region import Region
from memplan.host import run_host_int
from memplan.ir.ops import HostAttrs, OpKind

I8 = npt.NDArray[np.int8]


def run_reference(qgraph: QuantizedGraph, inputs: Mapping[str, npt.ArrayLike]) -> dict[str, I8]:
    """Run the quantised graph on int8 inputs ``(N, C, H, W)`` (see
    :meth:`QuantizedGraph.quantize_inputs`) and return every tensor, model inputs included."""
    graph = qgraph.graph
    values: dict[str, I8] = {}
    for name in graph.inputs:
        if name not in inputs:
            raise KeyError(f"missing model input {name!r}")
        arr = np.asarray(inputs[name])
        want = graph.shape(name)
        if arr.dtype != np.int8:
            raise TypeError(f"input {name!r} must be int8 (quantise it with QuantizedGraph.quantize_inputs), "
                            f"got {arr.dtype}")
        if arr.ndim != 4 or arr.shape[1:] != tuple(want[1:]):
            raise ValueError(f"input {name!r} has shape {arr.shape}, expected (N, {want[1]}, {want[2]}, {want[3]})")
        values[name] = arr
    for ql in qgraph.layers:
        if ql.op is OpKind.HOST:  # the same host implementation the tiled executor calls
            assert isinstance(ql.layer.attrs, HostAttrs)
            values[ql.layer.output] = run_host_int(ql.layer.attrs, ql.in_q, ql.out_q, [values[t] for t in ql.layer.inputs])
            continue
        tiles = [Tile.whole(values[t]) for t in ql.layer.inputs]
        values[ql.layer.output] = run_layer(ql, tiles, Region.full(ql.out_shape))
    return values


def run_reference_float(qgraph: QuantizedGraph, inputs: Mapping[str, npt.ArrayLike]) -> dict[str, npt.NDArray[np.float64]]:
    """Quantise float inputs, run the integer reference and dequantise every tensor."""
    q = run_reference(qgraph, qgraph.quantize_inputs(inputs))
    return {name: qgraph.dequantize(name, arr) for name, arr in q.items()}
