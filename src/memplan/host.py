"""Host layers: operators memplan does not tile, run untiled on the host CPU.

Like Vela, memplan never rejects a model for one operator. An ONNX node the converter has no
NPU layer for (ArgMax, Erf, a rank-3 Reshape/Transpose/Concat tail of a detection head, ...)
becomes a layer of op :data:`~memplan.ir.ops.OpKind.HOST`. Its inputs are in DRAM before it
runs, it runs on the host CPU on whole tensors and writes its output to DRAM; the planner
plans the accelerator around it (a host layer is a group of its own, and its tensors are never
resident in SRAM).

The layer's :class:`~memplan.ir.ops.HostAttrs` carry a small serialised ONNX model
(:func:`host_model`): graph inputs ``x0``, ``x1``... with the shapes of the IR tensors the
layer reads, the views the node sees of them (a Reshape, or a Gather of the flattened tensor
for a transpose), the node's constant inputs as initializers, and the node itself with output
``y``. :func:`evaluate` runs it with :class:`onnx.reference.ReferenceEvaluator`, one batch
sample at a time (the model is made for batch 1).

Integer execution (:func:`run_host_int`) is the one implementation both the untiled reference
and the tiled executor call: dequantise the int8 inputs with their scales, evaluate in float,
quantise the result with the output's calibrated parameters. Integer-valued outputs (ArgMax
indices) are stored exactly as ``int32`` (``HostAttrs.out_dtype``) with parameters scale 1,
zero point 0; such tensors exist in DRAM only and only host layers read them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from memplan.ir.graph import Graph
from memplan.ir.ops import HostAttrs

#: the host DRAM element size of an ``int32`` tensor (int8 tensors take the profile's elem_bytes)
INT32_BYTES = 4


@dataclass(frozen=True)
class HostInput:
    """One input of the node: an IR tensor (``index`` is ``x<k>``) seen as ``view_shape``,
    through ``gather`` (flat positions into the tensor, None: same element order), or a
    constant ``value``."""

    index: int | None = None
    shape: tuple[int, ...] = ()
    elem_type: int = 1  # onnx.TensorProto.FLOAT
    view_shape: tuple[int, ...] = ()
    gather: npt.NDArray[np.int64] | None = None
    value: npt.NDArray[Any] | None = None


def host_model(op_type: str, attributes: Sequence[Any], inputs: Sequence[HostInput | None], out_shape: tuple[int, ...],
               out_elem_type: int, opset: int, n_outputs: int = 1) -> bytes:
    """The serialised one-node ONNX model of a host layer (see the module documentation).
    ``attributes`` are the node's AttributeProtos; an omitted optional input is None."""
    import onnx
    from onnx import helper, numpy_helper

    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    graph_inputs: list[onnx.ValueInfoProto] = []
    names: list[str] = []
    declared: set[int] = set()
    for j, inp in enumerate(inputs):
        if inp is None:
            names.append("")
            continue
        if inp.value is not None:
            inits.append(numpy_helper.from_array(np.asarray(inp.value), f"c{j}"))
            names.append(f"c{j}")
            continue
        assert inp.index is not None
        x = f"x{inp.index}"
        if inp.index not in declared:
            declared.add(inp.index)
            graph_inputs.append(helper.make_tensor_value_info(x, inp.elem_type, list(inp.shape)))
        if inp.gather is None and tuple(inp.view_shape) == tuple(inp.shape):
            names.append(x)
            continue
        src = x
        if inp.gather is not None:
            inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), f"flat{j}"))
            inits.append(numpy_helper.from_array(np.asarray(inp.gather, dtype=np.int64).reshape(-1), f"idx{j}"))
            nodes.append(helper.make_node("Reshape", [x, f"flat{j}"], [f"f{j}"]))
            nodes.append(helper.make_node("Gather", [f"f{j}", f"idx{j}"], [f"g{j}"], axis=0))
            src = f"g{j}"
        inits.append(numpy_helper.from_array(np.array(inp.view_shape, dtype=np.int64), f"shape{j}"))
        nodes.append(helper.make_node("Reshape", [src, f"shape{j}"], [f"v{j}"]))
        names.append(f"v{j}")
    outs = ["y"] + [f"unused{k}" for k in range(1, n_outputs)]
    node = helper.make_node(op_type, names, outs)
    node.attribute.extend(attributes)
    nodes.append(node)
    graph = helper.make_graph(nodes, f"host_{op_type}", graph_inputs,
                              [helper.make_tensor_value_info("y", out_elem_type, list(out_shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="memplan-host")
    return bytes(model.SerializeToString())


@functools.lru_cache(maxsize=64)
def _session(model: bytes) -> tuple[Any, tuple[str, ...], tuple[np.dtype[Any], ...]]:
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    proto = onnx.load_from_string(model)
    names = tuple(i.name for i in proto.graph.input)
    dtypes = tuple(np.dtype(helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)) for i in proto.graph.input)
    return ReferenceEvaluator(proto), names, dtypes


def evaluate(attrs: HostAttrs, values: Sequence[npt.ArrayLike]) -> npt.NDArray[Any]:
    """The host layer's output from its inputs (one array per IR input, any batch size):
    each batch sample evaluated by the ONNX reference evaluator, the samples concatenated."""
    sess, names, dtypes = _session(attrs.model)
    arrays = [np.asarray(v) for v in values]
    batch = arrays[0].shape[0] if arrays else 1
    outs = []
    for n in range(batch):
        feeds = {}
        for name, dtype, a in zip(names, dtypes, arrays, strict=True):
            sample = a[n:n + 1]
            if dtype.kind in "iu":
                sample = np.rint(sample)
            feeds[name] = sample.astype(dtype)
        (y,) = sess.run(["y"], feeds)
        outs.append(np.asarray(y))
    return np.concatenate(outs, axis=0)


class _Params(Protocol):
    def quantize(self, x: npt.ArrayLike) -> npt.NDArray[np.int8]: ...

    def dequantize(self, q: npt.ArrayLike) -> npt.NDArray[np.float64]: ...


def run_host_int(attrs: HostAttrs, in_q: Sequence[_Params], out_q: _Params,
                 values: Sequence[npt.ArrayLike]) -> npt.NDArray[Any]:
    """Integer execution of a host layer: the one implementation of the untiled reference and
    the tiled executor. Inputs are dequantised with their parameters (an int32 tensor's are
    scale 1, zero point 0: its values), the model evaluated in float, and the result quantised
    with ``out_q`` (int8) or, for an ``int32`` output, rounded to the integers it holds."""
    y = evaluate(attrs, [q.dequantize(v) for q, v in zip(in_q, values, strict=True)])
    if attrs.out_dtype == "int32":
        y64 = np.asarray(y, dtype=np.float64)
        if not np.all(np.isfinite(y64)) or np.abs(y64).max(initial=0) >= 2**31:
            raise ValueError(f"host {attrs.op_type}: integer output out of the int32 range")
        return np.rint(y64).astype(np.int32)
    return out_q.quantize(np.asarray(y, dtype=np.float64))


__all__ = ["HostInput", "INT32_BYTES", "evaluate", "host_model", "run_host_int", "tensor_bytes", "tensor_dtype"]


def tensor_dtype(graph: Graph, tensor: str) -> str:
    """``int32`` for the integer output of a host layer, ``int8`` for any other tensor a plan
    moves (feature maps are int8 at the profile's element size)."""
    p = graph.producer.get(tensor)
    attrs = graph.layers[p].attrs if p is not None else None
    return "int32" if isinstance(attrs, HostAttrs) and attrs.out_dtype == "int32" else "int8"


def tensor_bytes(graph: Graph, tensor: str, fm_elem_bytes: int) -> int:
    """DRAM bytes of a whole tensor a host layer reads or writes: an int32 host output at 4
    bytes per element, any other feature map at the profile's element size."""
    integer = tensor_dtype(graph, tensor) == "int32"
    return graph.tensors[tensor].numel * (INT32_BYTES if integer else fm_elem_bytes)
