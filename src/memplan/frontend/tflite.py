"""TFLite frontend: a ``.tflite`` flatbuffer -> the IR :class:`~memplan.ir.graph.Graph`.

Reader
------
The file is read with the ``tflite`` package (PyPI ``tflite``, the TFLite schema compiled to
pure-Python flatbuffer accessors; it depends only on ``flatbuffers`` and ``numpy``). The
TensorFlow Lite Micro Python package ships the same schema (``schema_py_generated``), but
only inside a binary wheel (CPython 3.11, manylinux x86_64) that exists to run the TFLM
interpreter: making it a run-time dependency would tie ``memplan inspect|solve`` to one
platform. ``tflite`` installs everywhere, reads tables lazily (an 8 MB model is not copied
into Python objects) and is a run-time dependency; ``tflite-micro`` is only the reference of
:func:`memplan.execute.tflm.tflm_reference` and the tests.

Import
------
* Only subgraph 0 is imported (control flow ops that call other subgraphs are refused).
* Feature maps become 4-D NCHW IR tensors: a TFLite ``[N, H, W, C]`` tensor is IR
  ``(N, C, H, W)``, ``[N, K]`` is ``(N, K, 1, 1)``. Every TFLite activation tensor is a *view*
  of an IR tensor: for each of its elements (row-major, TFLite order) the flat IR position. A
  RESHAPE or SQUEEZE only makes a new view; a layer reading a view that is not the canonical
  NHWC picture of its IR tensor is refused, except fully connected layers (their weight
  columns are permuted to the IR's C, H, W flatten order) and model outputs (a host layer
  materialises them). A model input takes the 4-D shape its first layer reads
  (``Graph.input_layouts`` records ``NHWC``: the caller's bytes in TFLite order).
* Int8 tensors keep the file's parameters on :attr:`~memplan.ir.graph.Tensor.quant`, as the
  file stores them (float32 scales, so requantisation multipliers are computed from the same
  numbers TFLite Micro uses): per-tensor activations; per-channel (or per-tensor) symmetric
  weights as ``q * scale`` with the scales; int32 biases as ``b * input_scale *
  weight_scale`` with that product as their scale, so the int8 executor gets the file's
  integers back (TFLite Micro adds the int32 bias whatever scale the file gives it).
* Options: fused activations (RELU, RELU6, RELU_N1_TO_1), padding SAME/VALID computed as
  TFLite's ``ComputePaddingWithOffset`` (the odd cell at the bottom/right), strides,
  dilations, depth multipliers, transposed-convolution output shapes.
* Standalone RELU / RELU6 / LOGISTIC / TANH / HARD_SWISH / LEAKY_RELU / PRELU and int8->int8
  QUANTIZE become a depthwise 1x1 identity convolution (weight 1, scale 1) carrying the
  activation: for int8 RELU/RELU6/QUANTIZE that is TFLite Micro's requantisation ``(q - zp_in) *
  s_in / s_out`` bit for bit; for the others the int8 executor reads the input's integers
  through a table of TFLite Micro's integer algorithm
  (:func:`memplan.execute.quantize.identity_role`). MUL of a feature map by a per-channel
  constant becomes a depthwise 1x1 convolution whose weights are the constant's integers minus
  its zero point (exact while they fit int8; otherwise rescaled, see
  ``docs/tflm-differences.md``); ADD of an int8 constant becomes an identity convolution whose
  bias is the constant with its own int8 parameters, which the executor adds with TFLite's ADD
  arithmetic (a per-channel table).
* Constants: DEQUANTIZE of fp16/int8 constants (MediaPipe's fp16 weights), DENSIFY of sparse
  constants (CSR without blocks), SHAPE of a static tensor, PACK, STRIDED_SLICE, RESHAPE,
  CONCATENATION, SQUEEZE, EXPAND_DIMS, TRANSPOSE, CAST and GATHER of constants are folded.
* Float models (float32 or fp16 weights) import with float weights and no parameters; the
  int8 executor calibrates them like a float ONNX model. Elementwise ops with a constant
  operand become a per-channel affine there (folded into a convolution where possible).
* An operator with no IR layer becomes a host layer (:mod:`memplan.host`) when it is a plain
  data-movement op ONNX can evaluate (CONCATENATION on another axis, RESHAPE/TRANSPOSE that
  reorder elements, and the ops after them); otherwise the import fails with one line naming
  the op. With ``host_ops="error"`` host layers are refused.

Every failure is a :class:`~memplan.errors.ModelError` (or
:class:`~memplan.errors.UnsupportedOpError`) with a one-line message.

:func:`memplan.execute.tflm.tflm_reference` runs TensorFlow Lite Micro's interpreter on the same int8 inputs the
int8 reference takes and returns its tensors in the IR's layout.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from memplan.errors import MemplanError, ModelError, UnsupportedOpError
from memplan.frontend.draft import AffineAttrs, ConstInfo, Draft, DraftLayer, DraftTensor, Pseudo
from memplan.ir.graph import Graph, QuantParams
from memplan.ir.ops import (
    Activation,
    ActKind,
    BlockAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    FullyConnectedAttrs,
    HostAttrs,
    NoAttrs,
    OpKind,
    PoolAttrs,
    ResizeAttrs,
    SliceAttrs,
    ZeroPadAttrs,
)

__all__ = ["NUMPY_DTYPES", "SUFFIXES", "import_tflite", "input_order", "load_tflite", "read_tflite", "supported_operators",
           "truncated_model"]

SUFFIXES = (".tflite",)

_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8",
           10: "float64"}
NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8, "int64": np.int64,
       "bool": np.bool_, "int16": np.int16, "int8": np.int8, "float64": np.float64}
_FUSED = {0: None, 1: Activation(ActKind.RELU), 2: Activation(ActKind.CLIP, (-1.0, 1.0)),
          3: Activation(ActKind.CLIP, (0.0, 6.0))}
_FUSED_NAMES = {4: "TANH", 5: "SIGN_BIT"}
#: the options table class of each operator that has options (name in the ``tflite`` package)
_OPTIONS = {
    "CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions", "TRANSPOSE_CONV": "TransposeConvOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions", "ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions", "MEAN": "ReducerOptions",
    "CONCATENATION": "ConcatenationOptions", "RESHAPE": "ReshapeOptions", "SQUEEZE": "SqueezeOptions",
    "SOFTMAX": "SoftmaxOptions", "LEAKY_RELU": "LeakyReluOptions", "RESIZE_NEAREST_NEIGHBOR":
    "ResizeNearestNeighborOptions", "RESIZE_BILINEAR": "ResizeBilinearOptions", "SPLIT": "SplitOptions",
    "STRIDED_SLICE": "StridedSliceOptions", "PACK": "PackOptions", "GATHER": "GatherOptions",
    "DEPTH_TO_SPACE": "DepthToSpaceOptions", "SPACE_TO_DEPTH": "SpaceToDepthOptions",
}
#: fields read from each options table (accessor name -> key)
_OPTION_FIELDS = (
    "Padding", "StrideW", "StrideH", "DilationWFactor", "DilationHFactor", "FusedActivationFunction",
    "DepthMultiplier", "FilterWidth", "FilterHeight", "KeepNumDims", "WeightsFormat", "Axis", "Beta", "Alpha",
    "AlignCorners", "HalfPixelCenters", "NumSplits", "BeginMask", "EndMask", "EllipsisMask", "NewAxisMask",
    "ShrinkAxisMask", "Offset", "ValuesCount", "BatchDims", "BlockSize", "PotScaleInt16",
)


# ---------------------------------------------------------------------------- the file
@dataclass
class TTensor:
    index: int
    name: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    dtype: str
    data: np.ndarray | None  # constant payload (dense), or None for a feature map
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    axis: int = 0
    sparse: Any = None


@dataclass
class TOp:
    index: int
    name: str  # BUILTIN name, or CUSTOM:<code>
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    opts: dict[str, Any]
    custom: bytes = b""


@dataclass
class TModel:
    tensors: list[TTensor]
    ops: list[TOp]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    version: int


def _op_names() -> dict[int, str]:
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def read_tflite(path: Path) -> TModel:
    """Parse the flatbuffer (every read is checked: a truncated or foreign file is a
    :class:`ModelError`)."""
    if not path.exists():
        raise ModelError("no such file; check the path")
    if not path.is_file():
        raise ModelError("is not a file; give the path of a .tflite model")
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelError("is not a TFLite flatbuffer (no TFL3 identifier); the file is truncated or not a .tflite model")
    try:
        return _parse(buf)
    except MemplanError:
        raise
    except Exception as exc:  # noqa: BLE001 - flatbuffers raises struct/index errors on corrupt data
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"is not a readable TFLite model, the file is truncated or corrupt ({reason}); "
                         "re-export or re-download it") from None


def _parse(buf: bytes) -> TModel:
    import tflite

    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() < 1:
        raise ModelError("contains no subgraph; the file is truncated or not a TFLite model")
    names = _op_names()
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == 32:  # CUSTOM
            codes.append("CUSTOM:" + (oc.CustomCode() or b"").decode(errors="replace"))
        else:
            codes.append(names.get(code, f"BUILTIN_{code}"))
    sg = model.Subgraphs(0)
    tensors = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        dtype = _DTYPES.get(int(t.Type()), f"type{int(t.Type())}")
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        sig = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else shape
        name = (t.Name() or b"").decode(errors="replace") or f"tensor{i}"
        data = None
        b = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
        raw = None
        if b is not None and b.DataLength() > 0:
            raw = b.DataAsNumpy().tobytes()
        elif b is not None and b.Offset() > 1:
            off, size = int(b.Offset()), int(b.Size())
            if off + size > len(buf):
                raise ModelError(f"tensor {name!r} stores its data beyond the end of the file; it is truncated")
            raw = buf[off: off + size]
        sparse = t.Sparsity()
        if raw is not None:
            if dtype not in NUMPY_DTYPES:
                raise ModelError(f"constant tensor {name!r} has type {dtype}, which memplan cannot read")
            arr = np.frombuffer(raw, dtype=NUMPY_DTYPES[dtype])
            if sparse is None:
                if arr.size != math.prod(shape):
                    raise ModelError(f"constant tensor {name!r} holds {arr.size} values for shape {list(shape)}; "
                                     "the file is corrupt")
                arr = arr.reshape(shape)
            data = arr
        q = t.Quantization()
        scale: tuple[float, ...] = ()
        zp: tuple[int, ...] = ()
        axis = 0
        if q is not None and q.ScaleLength():
            scale = tuple(float(s) for s in q.ScaleAsNumpy())
            zp = tuple(int(z) for z in q.ZeroPointAsNumpy()) if q.ZeroPointLength() else (0,) * len(scale)
            axis = int(q.QuantizedDimension())
        tensors.append(TTensor(i, name, shape, sig, dtype, data, scale, zp, axis, sparse))
    ops = []
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        name = codes[op.OpcodeIndex()]
        opts: dict[str, Any] = {}
        table = op.BuiltinOptions()
        cls_name = _OPTIONS.get(name)
        if table is not None and cls_name is not None:
            o = getattr(tflite, cls_name)()
            o.Init(table.Bytes, table.Pos)
            for f in _OPTION_FIELDS:
                if hasattr(o, f):
                    opts[f] = getattr(o, f)()
            if hasattr(o, "SqueezeDimsAsNumpy") and o.SqueezeDimsLength():
                opts["SqueezeDims"] = tuple(int(d) for d in o.SqueezeDimsAsNumpy())
        custom = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
        ins = tuple(int(i) for i in op.InputsAsNumpy()) if op.InputsLength() else ()
        outs = tuple(int(i) for i in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        for i in (*ins, *outs):
            if i >= len(tensors):
                raise ModelError(f"operator {k} ({name}) names tensor {i}, which does not exist; the file is corrupt")
        ops.append(TOp(k, name, ins, outs, opts, custom))
    inputs = tuple(int(i) for i in sg.InputsAsNumpy()) if sg.InputsLength() else ()
    outputs = tuple(int(i) for i in sg.OutputsAsNumpy()) if sg.OutputsLength() else ()
    if not outputs or not ops:
        raise ModelError("contains no operators or no outputs; the file is truncated or not a TFLite model")
    return TModel(tensors, ops, inputs, outputs, int(model.Version()))


# ---------------------------------------------------------------------------- geometry
def same_padding(in_len: int, k: int, stride: int, dilation: int) -> tuple[int, int, int]:
    """TFLite's SAME padding along one axis: (output length, pad before, pad after), as
    ``ComputeOutSize`` and ``ComputePaddingWithOffset``: the odd cell goes after."""
    eff = (k - 1) * dilation + 1
    out = (in_len + stride - 1) // stride
    total = max((out - 1) * stride + eff - in_len, 0)
    return out, total // 2, total - total // 2


def _pads(opts: Mapping[str, Any], h: int, w: int, kh: int, kw: int, sh: int, sw: int, dh: int = 1,
          dw: int = 1) -> tuple[int, int, int, int]:
    if opts.get("Padding", 0) == 0:  # SAME
        _, t, b = same_padding(h, kh, sh, dh)
        _, l, r = same_padding(w, kw, sw, dw)
        return t, l, b, r
    return 0, 0, 0, 0


def _nhwc_positions(shape: tuple[int, int, int, int]) -> np.ndarray:
    """For IR shape (N, C, H, W): the flat IR position of each element of the TFLite
    ``[N, H, W, C]`` tensor, in TFLite row-major order."""
    n, c, h, w = shape
    return np.arange(n * c * h * w, dtype=np.int64).reshape(n, c, h, w).transpose(0, 2, 3, 1).reshape(-1)


def _ir_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """The IR shape of a TFLite feature map in the canonical picture (None: rank not 2 or 4)."""
    if len(shape) == 4:
        return (shape[0], shape[3], shape[1], shape[2])
    if len(shape) == 2:
        return (shape[0], shape[1], 1, 1)
    return None


@dataclass(eq=False)
class View:
    """A TFLite feature map as elements of IR tensor ``base``: ``pos[i]`` is the flat IR
    position of TFLite element ``i`` (row-major)."""

    base: str
    shape: tuple[int, ...]
    pos: np.ndarray


# ---------------------------------------------------------------------------- the converter
Handler = Callable[["_Converter", TOp], None]
HANDLERS: dict[str, Handler] = {}
#: ops folded when all their inputs are constants
FOLDABLE = ("DEQUANTIZE", "DENSIFY", "SHAPE", "PACK", "STRIDED_SLICE", "RESHAPE", "CONCATENATION", "SQUEEZE",
            "EXPAND_DIMS", "TRANSPOSE", "CAST", "GATHER", "ADD", "SUB", "MUL")


def handles(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
        return fn
    return register


class OpError(Exception):
    """An op in a form memplan does not import (becomes a host layer where possible)."""


@dataclass
class ImportResult:
    graph: Graph
    #: IR tensor -> (TFLite tensor index, flat IR position of each TFLite element) for every IR
    #: tensor that holds exactly one TFLite tensor's elements
    tensor_views: dict[str, tuple[int, np.ndarray]] = field(default_factory=dict)


class _Converter:
    def __init__(self, model: TModel, host_ops: str) -> None:
        self.m = model
        self.host_ops = host_ops
        self.draft = Draft(reserved={t.name for t in model.tensors})
        self.consts: dict[int, np.ndarray] = {}
        self.views: dict[int, View] = {}
        self.pending: dict[int, tuple[int, ...]] = {}  # model input -> TFLite shape (IR shape not chosen yet)
        self.host_only: set[str] = set()
        self.ids: set[str] = set()
        self.exact_views: dict[str, tuple[int, np.ndarray]] = {}
        self.biases: dict[str, np.ndarray] = {}  # layer id -> exact float64 bias
        #: a model input quantised by a QUANTIZE (or output dequantised): tensor -> the int8 tensor
        self.alias: dict[int, int] = {}
        int8 = [t for t in model.tensors if t.data is None and t.dtype in ("int8", "uint8")]
        self.quantized = bool(int8)

    # ------------------------------------------------------------------ tensors
    def t(self, i: int) -> TTensor:
        return self.m.tensors[i]

    def is_const(self, i: int) -> bool:
        return i >= 0 and (i in self.consts or self.t(i).data is not None)

    def const(self, i: int, what: str) -> np.ndarray:
        if i < 0 or not self.is_const(i):
            raise OpError(f"the {what} must be a constant")
        if i not in self.consts:
            t = self.t(i)
            if t.sparse is not None:
                raise OpError(f"the {what} ({t.name!r}) is stored sparse; memplan reads it through DENSIFY only")
            self.consts[i] = t.data  # type: ignore[assignment]
        return self.consts[i]

    def real_const(self, i: int, what: str) -> np.ndarray:
        """A constant's real values (int8/uint8 with parameters dequantised, fp16 widened)."""
        a = self.const(i, what)
        t = self.t(i)
        if t.scale and a.dtype.kind in "iu" and t.dtype in ("int8", "uint8", "int16"):
            shape = [1] * a.ndim
            if len(t.scale) > 1:
                shape[t.axis] = len(t.scale)
            s = np.asarray(t.scale, dtype=np.float64).reshape(shape)
            z = np.asarray(t.zero_point, dtype=np.float64).reshape(shape)
            return (a.astype(np.float64) - z) * s
        return a.astype(np.float64)

    def quant(self, i: int) -> QuantParams | None:
        t = self.t(self.alias.get(i, i))
        if t.data is None and i not in self.consts and t.dtype not in ("int8", "uint8", "float32", "float16"):
            raise OpError(f"feature map {t.name!r} has type {t.dtype}; memplan plans int8 and float feature maps")
        if t.dtype not in ("int8", "uint8") or not t.scale:
            return None
        if len(t.scale) != 1:
            raise OpError(f"feature map {t.name!r} has per-channel parameters; feature maps must be per-tensor")
        return QuantParams((t.scale[0],), (t.zero_point[0],), t.dtype, None)

    def fmap_dtype(self, i: int) -> str:
        t = self.t(self.alias.get(i, i))
        if t.dtype in ("int8", "uint8"):
            if not t.scale:
                raise OpError(f"feature map {t.name!r} is {t.dtype} without quantisation parameters")
            return t.dtype
        if t.dtype in ("float32", "float16"):
            return "float32"
        raise OpError(f"feature map {t.name!r} has type {t.dtype}; memplan plans int8 and float feature maps")

    # ------------------------------------------------------------------ views
    def view(self, i: int) -> View:
        if i in self.pending:
            raise OpError("internal: pending input read as a view")
        v = self.views.get(i)
        if v is None:
            if self.is_const(i):
                raise OpError(f"input {self.t(i).name!r} is a constant where memplan expects a feature map")
            raise OpError(f"input {self.t(i).name!r} is not computed by any operator memplan imported")
        return v

    def raw_view(self, i: int) -> View:
        """The view of a tensor, a pending model input seen in its own TFLite order."""
        if i in self.pending:
            shape = self.pending[i]
            return View(f"@pending{i}", shape, np.arange(math.prod(shape), dtype=np.int64))
        return self.view(i)

    def set_view(self, i: int, v: View) -> None:
        self.views[i] = v
        if v.base.startswith("@pending"):
            return
        base_shape = self.draft.tensors[v.base].shape
        if len(base_shape) == 4:
            canon = _canonical(v.shape, base_shape)  # type: ignore[arg-type]
            if canon is not None and np.array_equal(canon, v.pos):
                self.exact_views.setdefault(v.base, (i, v.pos))

    def _materialise(self, i: int, ir_shape: tuple[int, int, int, int], order: np.ndarray) -> None:
        """Give pending model input ``i`` its IR shape; ``order[k]`` is the IR position of raw
        (TFLite row-major) element ``k``. Views of it so far are re-indexed."""
        name = self.t(i).name
        self.pending.pop(i)
        dtype = self.fmap_dtype(i)
        self.draft.tensors[name] = DraftTensor(ir_shape, dtype, self.quant(i))
        self.draft.input_layouts[name] = "NHWC" if len(self.t(i).shape) >= 3 else "NCHW"
        self.input_orders[name] = order
        for k, v in list(self.views.items()):
            if v.base == f"@pending{i}":
                self.views[k] = View(name, v.shape, order[v.pos])
        self.set_view(i, View(name, self.t(i).shape, order))

    def nhwc(self, i: int) -> tuple[str, tuple[int, int, int, int]]:
        """The IR feature map a layer reads as TFLite tensor ``i`` (a 4-D NHWC picture, or a
        2-D [N, K] one)."""
        t = self.t(i)
        shape = tuple(t.shape)
        ir = _ir_shape(shape)
        if ir is None:
            raise OpError(f"input {t.name!r} has shape {list(shape)}; memplan's layers read 4-D NHWC or 2-D feature maps")
        canon = _nhwc_positions(ir)
        raw = self.raw_view(i)
        if raw.base.startswith("@pending"):
            src = int(raw.base[len("@pending"):])
            if np.array_equal(raw.pos, np.arange(raw.pos.size)):
                order = np.empty_like(canon)
                order[np.arange(canon.size)] = canon  # raw element k is TFLite element k of this picture
                self._materialise(src, ir, order)
                return self.view(i).base, ir
            raise OpError(f"input {t.name!r} rearranges the model input; memplan reads model inputs in their own order")
        base_shape = tuple(self.draft.tensors[raw.base].shape)
        if base_shape == ir and np.array_equal(raw.pos, canon):
            return raw.base, ir
        raise OpError(f"input {t.name!r} (shape {list(shape)}) is a RESHAPE/TRANSPOSE that reorders the elements of "
                      f"feature map {raw.base!r}; memplan's layers cannot read it")

    # ------------------------------------------------------------------ emitting
    def layer_id(self, op: TOp) -> str:
        base = self.t(op.outputs[0]).name if op.outputs else f"op{op.index}"
        lid, k = base, 0
        while lid in self.ids:
            k += 1
            lid = f"{base}~{k}"
        self.ids.add(lid)
        return lid

    def out_name(self, i: int) -> str:
        name = self.t(i).name
        if name in self.draft.tensors:
            return self.draft.fresh_name(name)
        return name

    def emit(self, op: TOp, kind: OpKind | Pseudo, inputs: list[str], attrs: Any, out_i: int, *,
             weight: np.ndarray | None = None, bias: np.ndarray | None = None, weight_info: ConstInfo | None = None,
             bias_info: ConstInfo | None = None, activation: Activation | None = None,
             exact_bias: np.ndarray | None = None) -> str:
        t = self.t(out_i)
        ir = _ir_shape(tuple(t.shape))
        if ir is None:
            raise OpError(f"output {t.name!r} has shape {list(t.shape)}; memplan's layers write 4-D NHWC or 2-D maps")
        name = self.out_name(out_i)
        layer = DraftLayer(self.layer_id(op), kind, inputs, name, attrs, weight=weight, bias=bias,
                           weight_info=weight_info, bias_info=bias_info, activation=activation)
        self.draft.add_layer(layer, ir, self.fmap_dtype(out_i))
        self.draft.tensors[name].quant = self.quant(out_i)
        if exact_bias is not None:
            self.biases[layer.id] = exact_bias
        self.set_view(out_i, View(name, tuple(t.shape), _nhwc_positions(ir)))
        return name

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        self.input_orders: dict[str, np.ndarray] = {}
        for i in self.m.inputs:
            t = self.t(i)
            if t.data is not None:
                continue
            if any(d < 0 for d in t.signature[1:]):
                raise ModelError(f"model input {t.name!r} has a dynamic shape {list(t.signature)} beyond the batch; "
                                 "memplan plans static shapes")
            self.pending[i] = tuple(t.shape)
        needed = self._needed()
        for op in self.m.ops:
            if op.index not in needed:
                continue
            try:
                self._convert(op)
            except OpError as exc:
                raise ModelError(f"operator {op.index} ({op.name}, output {self._out_label(op)}): {exc}") from None
            except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else ""
                raise ModelError(f"operator {op.index} ({op.name}, output {self._out_label(op)}) is malformed or "
                                 f"uses an unsupported form ({type(exc).__name__}: {reason})") from None
        for i in list(self.pending):
            t = self.t(i)
            ir = _ir_shape(tuple(t.shape))
            if ir is None:
                raise ModelError(f"model input {t.name!r} has shape {list(t.shape)}; memplan needs 4-D NHWC or 2-D inputs")
            self._materialise(i, ir, _nhwc_positions(ir))
        self._finish_outputs()

    def _out_label(self, op: TOp) -> str:
        return repr(self.t(op.outputs[0]).name) if op.outputs else "none"

    def _needed(self) -> set[int]:
        producer = {o: op.index for op in self.m.ops for o in op.outputs}
        needed: set[int] = set()
        stack = list(self.m.outputs)
        seen: set[int] = set()
        while stack:
            i = stack.pop()
            if i in seen or i < 0:
                continue
            seen.add(i)
            p = producer.get(i)
            if p is not None and p not in needed:
                needed.add(p)
                stack.extend(self.m.ops[p].inputs)
        return needed

    def _convert(self, op: TOp) -> None:
        ins = [i for i in op.inputs if i >= 0]
        if op.name == "SHAPE":
            self.consts[op.outputs[0]] = np.asarray(self.t(op.inputs[0]).shape, dtype=np.int32)
            return
        if op.name in FOLDABLE and all(self.is_const(i) for i in ins) and (op.name != "DENSIFY" or ins):
            self.consts[op.outputs[0]] = _fold(self, op)
            return
        if op.name in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):  # views
            src = self.raw_view(op.inputs[0])
            out = self.t(op.outputs[0])
            self.views[op.outputs[0]] = View(src.base, tuple(out.shape), src.pos)
            if not src.base.startswith("@pending"):
                self.set_view(op.outputs[0], self.views[op.outputs[0]])
            return
        handler = HANDLERS.get(op.name)
        hosting = self.host_ops == "cpu"
        if handler is None or any(self._reads_host_only(i) for i in ins):
            if hosting and _host_capable(op.name):
                self._host(op)
                return
            raise UnsupportedOpError(self._unsupported(op))
        n = len(self.draft.layers)
        try:
            handler(self, op)
        except OpError:
            if hosting and _host_capable(op.name) and len(self.draft.layers) == n:
                self._host(op)
                return
            raise

    def _reads_host_only(self, i: int) -> bool:
        v = self.views.get(i)
        return v is not None and v.base in self.host_only

    def _unsupported(self, op: TOp) -> str:
        where = f"operator {op.index} ({op.name}, output {self._out_label(op)})"
        if self.host_ops == "cpu":
            return (f"{where}: memplan has no layer for {op.name} and cannot run it on the host either "
                    "(TFLite host layers cover data-movement ops only); replace it in the model")
        return (f"{where}: memplan has no layer for {op.name}; replace it in the model, or import with "
                "--host-ops cpu where it is a data-movement op")

    # ------------------------------------------------------------------ host layers
    def _host(self, op: TOp, view_of: int | None = None) -> None:
        """A host layer evaluating ``op`` (or, with ``view_of``, materialising that output's
        view) as a one-node ONNX model on the TFLite-layout views of its inputs."""
        import onnx
        from onnx import helper

        from memplan.host import HostInput, host_model

        if view_of is not None:
            onnx_op, attrs, tin = "Identity", [], [view_of]
            out_i = view_of
        else:
            onnx_op, attrs, tin = _onnx_equivalent(self, op)
            out_i = op.outputs[0]
        bases: list[str] = []
        inputs: list[HostInput | None] = []
        for i in tin:
            if isinstance(i, np.ndarray):
                inputs.append(HostInput(value=i))
                continue
            if self.is_const(i):
                inputs.append(HostInput(value=self.real_const(i, "input").astype(np.float32)))
                continue
            if i in self.pending:
                t = self.t(i)
                ir = _ir_shape(tuple(t.shape))
                if ir is None:
                    raise OpError(f"model input {t.name!r} has shape {list(t.shape)}")
                self._materialise(i, ir, _nhwc_positions(ir))
            v = self.view(i)
            if v.base not in bases:
                bases.append(v.base)
            base_shape = tuple(self.draft.tensors[v.base].shape)
            ident = np.array_equal(v.pos, np.arange(v.pos.size)) and v.shape == base_shape
            inputs.append(HostInput(bases.index(v.base), base_shape, onnx.TensorProto.FLOAT, tuple(v.shape),
                                    None if ident else v.pos))
        if not bases:
            raise OpError("a host layer needs a feature-map input")
        t = self.t(out_i)
        shape = tuple(t.shape)
        if not shape or shape[0] != 1:
            raise OpError(f"a host layer must keep a leading batch axis of size 1; {t.name!r} has shape {list(shape)}")
        model = host_model(onnx_op, attrs, inputs, shape, onnx.TensorProto.FLOAT, 13)
        del helper
        reason = "it materialises a reordered model output" if view_of is not None else \
            f"memplan has no NPU layer for TFLite {op.name} in this form"
        name = self.out_name(out_i) if view_of is None else self.draft.fresh_name(t.name)
        lid = self.layer_id(op) if op is not None else name
        layer = DraftLayer(lid, OpKind.HOST, bases, name, HostAttrs(onnx_op, reason, model, "int8"))
        self.draft.add_layer(layer, shape, self.fmap_dtype(out_i))
        self.draft.tensors[name].quant = self.quant(out_i)
        pos = np.arange(math.prod(shape), dtype=np.int64)
        self.views[out_i] = View(name, shape, pos)
        if len(shape) != 4:
            self.host_only.add(name)
        else:
            self.host_only.add(name)  # NHWC data in an IR tensor: only host layers may read it
        self.exact_views[name] = (out_i, pos)

    def _finish_outputs(self) -> None:
        outputs: list[str] = []
        for i in self.m.outputs:
            t = self.t(i)
            if self.is_const(i):
                raise ModelError(f"model output {t.name!r} is a constant; memplan plans only computed outputs")
            if i in self.pending:
                raise ModelError(f"model output {t.name!r} is a model input passed through; nothing computes it")
            v = self.view(i)
            base_shape = tuple(self.draft.tensors[v.base].shape)
            exact = (v.base in self.host_only and v.shape == base_shape) or (
                len(base_shape) == 4 and (c := _canonical(v.shape, base_shape)) is not None  # type: ignore[arg-type]
                and np.array_equal(c, v.pos))
            if not exact:
                if self.host_ops != "cpu":
                    raise ModelError(f"model output {t.name!r} is a RESHAPE that reorders the elements of feature map "
                                     f"{v.base!r}; memplan needs a host layer for it (import with --host-ops cpu)")
                self._host(TOp(-1, "RESHAPE", (i,), (i,), {}), view_of=i)
                v = self.view(i)
            base = v.base
            if base != t.name and t.name not in self.draft.tensors and base not in outputs and \
                    base not in self.draft.inputs:
                self.draft.rename(base, t.name)
                self._rename_views(base, t.name)
                base = t.name
            if base not in outputs:
                outputs.append(base)
            self.exact_views[base] = (i, self.view(i).pos)
        self.draft.outputs = outputs
        self.draft.inputs = [self.t(i).name for i in self.m.inputs if self.t(i).name in self.draft.tensors]

    def _rename_views(self, old: str, new: str) -> None:
        for k, v in self.views.items():
            if v.base == old:
                self.views[k] = View(new, v.shape, v.pos)
        if old in self.exact_views:
            self.exact_views[new] = self.exact_views.pop(old)
        if old in self.host_only:
            self.host_only.discard(old)
            self.host_only.add(new)


def _canonical(shape: tuple[int, ...], base_shape: tuple[int, int, int, int]) -> np.ndarray | None:
    """The positions of the canonical picture of an IR tensor as a TFLite tensor of ``shape``."""
    ir = _ir_shape(shape)
    if ir != tuple(base_shape):
        if math.prod(shape) == math.prod(base_shape) and base_shape[2] == base_shape[3] == 1:
            return np.arange(math.prod(shape), dtype=np.int64)  # (N, K, 1, 1): every order is the same
        return None
    return _nhwc_positions(ir)


# ---------------------------------------------------------------------------- constants
def _fold(cv: _Converter, op: TOp) -> np.ndarray:
    if op.name == "DENSIFY":
        return _densify(cv.t(op.inputs[0]))
    ins = [cv.const(i, f"input {k}") if i >= 0 else None for k, i in enumerate(op.inputs)]
    o = op.opts
    n = op.name
    if n == "DEQUANTIZE":
        return cv.real_const(op.inputs[0], "input").astype(np.float32)
    if n == "DENSIFY":
        return _densify(cv.t(op.inputs[0]))
    if n == "PACK":
        return np.stack([a for a in ins if a is not None], axis=int(o.get("Axis", 0)))
    if n == "RESHAPE":
        return ins[0].reshape(cv.t(op.outputs[0]).shape)  # type: ignore[union-attr]
    if n in ("SQUEEZE", "EXPAND_DIMS"):
        return ins[0].reshape(cv.t(op.outputs[0]).shape)  # type: ignore[union-attr]
    if n == "CONCATENATION":
        return np.concatenate([a for a in ins if a is not None], axis=int(o.get("Axis", 0)))
    if n == "TRANSPOSE":
        return np.transpose(ins[0], [int(p) for p in ins[1]])  # type: ignore[union-attr]
    if n == "CAST":
        return ins[0].astype(NUMPY_DTYPES[cv.t(op.outputs[0]).dtype])  # type: ignore[union-attr]
    if n == "GATHER":
        return np.take(ins[0], ins[1].astype(np.int64), axis=int(o.get("Axis", 0)))  # type: ignore[union-attr]
    if n == "STRIDED_SLICE":
        return _strided_slice(ins[0], ins[1], ins[2], ins[3], o).reshape(cv.t(op.outputs[0]).shape)  # type: ignore[arg-type]
    if n in ("ADD", "SUB", "MUL"):
        a, b = (cv.real_const(i, "input") for i in op.inputs[:2])
        r = a + b if n == "ADD" else (a - b if n == "SUB" else a * b)
        out = cv.t(op.outputs[0])
        if out.dtype in ("int8", "uint8") and out.scale:
            raise OpError("arithmetic of quantised constants is not folded")
        return r.astype(NUMPY_DTYPES.get(out.dtype, np.float32))
    raise OpError(f"cannot fold {n}")


def _strided_slice(x: np.ndarray, begin: np.ndarray, end: np.ndarray, strides: np.ndarray,
                   o: Mapping[str, Any]) -> np.ndarray:
    if o.get("EllipsisMask", 0) or o.get("NewAxisMask", 0):
        raise OpError("STRIDED_SLICE with ellipsis or new-axis masks is not folded")
    idx = []
    for d in range(len(begin)):
        b, e, s = int(begin[d]), int(end[d]), int(strides[d])
        if o.get("BeginMask", 0) >> d & 1:
            b = None  # type: ignore[assignment]
        if o.get("EndMask", 0) >> d & 1:
            e = None  # type: ignore[assignment]
        if o.get("ShrinkAxisMask", 0) >> d & 1:
            idx.append(slice(b, (b + 1) if b != -1 else None, 1))
        elif o.get("Offset", False) and b is not None and e is not None:
            idx.append(slice(b, b + e, s))
        else:
            idx.append(slice(b, e, s))
    return np.asarray(x[tuple(idx)])


def _densify(t: TTensor) -> np.ndarray:
    """A sparse constant (TFLite SparsityParameters) as a dense array: DENSE and SPARSE_CSR
    dimensions in traversal order, without block maps (what TFLite's ``FormatConverter`` reads)."""
    sp = t.sparse
    if sp is None or t.data is None:
        raise OpError(f"DENSIFY of {t.name!r}, which is not a sparse constant")
    if sp.BlockMapLength():
        raise OpError(f"sparse tensor {t.name!r} uses block sparsity, which memplan does not decode")
    order = [int(d) for d in sp.TraversalOrderAsNumpy()] if sp.TraversalOrderLength() else list(range(len(t.shape)))
    if sorted(order) != list(range(len(t.shape))):
        raise OpError(f"sparse tensor {t.name!r} has traversal order {order} for rank {len(t.shape)}")
    dims = []
    for k in range(sp.DimMetadataLength()):
        dm = sp.DimMetadata(k)
        if dm.Format() == 0:
            dims.append(("dense", int(dm.DenseSize()), None, None))
        else:
            dims.append(("csr", 0, _index_vector(dm.ArraySegmentsType(), dm.ArraySegments()),
                         _index_vector(dm.ArrayIndicesType(), dm.ArrayIndices())))
    if len(dims) != len(order):
        raise OpError(f"sparse tensor {t.name!r} has {len(dims)} dimension records for rank {len(order)}")
    values = np.asarray(t.data).reshape(-1)
    dense = np.zeros([t.shape[d] for d in order], dtype=values.dtype)
    flat_out = dense.reshape(-1)
    strides = [math.prod(dense.shape[k + 1:]) for k in range(len(order))]

    def walk(level: int, prev: int, offset: int) -> None:
        kind, size, seg, ind = dims[level]
        last = level == len(dims) - 1
        if kind == "dense":
            children = [(j, prev * size + j) for j in range(size)]
        else:
            children = [(int(ind[p]), p) for p in range(int(seg[prev]), int(seg[prev + 1]))]
        for coord, child in children:
            off = offset + coord * strides[level]
            if last:
                flat_out[off] = values[child]
            else:
                walk(level + 1, child, off)

    walk(0, 0, 0)
    inverse = np.argsort(order)
    return np.ascontiguousarray(dense.transpose(inverse)).reshape(t.shape)


def _index_vector(kind: int, table: Any) -> np.ndarray:
    import tflite

    cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}.get(int(kind))
    if cls is None or table is None:
        raise OpError("sparse tensor with an unknown index vector type")
    v = cls()
    v.Init(table.Bytes, table.Pos)
    return v.ValuesAsNumpy() if v.ValuesLength() else np.zeros(0, dtype=np.int64)


# ---------------------------------------------------------------------------- layers
def _act(op: TOp) -> Activation | None:
    code = int(op.opts.get("FusedActivationFunction", 0))
    if code in _FUSED_NAMES:
        raise OpError(f"fused activation {_FUSED_NAMES[code]} is not supported")
    if code not in _FUSED:
        raise OpError(f"unknown fused activation {code}")
    return _FUSED[code]


def _weights(cv: _Converter, i: int, ir: np.ndarray, axis_len: int) -> tuple[np.ndarray, ConstInfo]:
    """A weight tensor already transposed to the IR layout ``ir`` (TFLite integers or floats):
    the real values and how they are stored. Int8 weights feeding an int8 layer keep the file's
    symmetric scales (one, or one per output channel along IR axis 0)."""
    t = cv.t(i)
    if t.dtype in ("int8", "uint8") and t.scale and cv.quantized:
        if t.dtype != "int8" or any(z != 0 for z in t.zero_point):
            raise OpError(f"weights {t.name!r} are not symmetric int8 (zero point 0), as TFLite Micro requires")
        if len(t.scale) not in (1, axis_len):
            raise OpError(f"weights {t.name!r} have {len(t.scale)} scales for {axis_len} output channels")
        s = np.asarray(t.scale, dtype=np.float64)
        real = ir.astype(np.float64) * (s.reshape((-1,) + (1,) * (ir.ndim - 1)) if s.size > 1 else s[0])
        return real, ConstInfo("int8", QuantParams(tuple(t.scale), tuple(t.zero_point), "int8", 0))
    if t.dtype in ("int8", "uint8", "int16") and t.scale:  # hybrid: int8 weights of a float layer
        raise OpError(f"weights {t.name!r} are quantised but the layer's input is float (a hybrid model); "
                      "TFLite Micro does not run hybrid models and memplan does not import them")
    return np.asarray(ir, dtype=np.float64), ConstInfo("float32")


def _bias(cv: _Converter, op: TOp, k: int, in_i: int, w_i: int, c_out: int) -> tuple[
        np.ndarray | None, ConstInfo | None, np.ndarray | None]:
    """(real bias, storage, exact float64 real bias) of input ``k`` of the op (None: no bias).
    An int32 bias of an int8 layer is read as TFLite Micro adds it: in the accumulator's
    domain, ``input_scale * weight_scale`` per output channel."""
    if len(op.inputs) <= k or op.inputs[k] < 0:
        return None, None, None
    b_i = op.inputs[k]
    t = cv.t(b_i)
    raw = cv.const(b_i, "bias").reshape(-1)
    if raw.size != c_out:
        raise OpError(f"bias {t.name!r} has {raw.size} values for {c_out} output channels")
    if t.dtype == "int32" and cv.quant(in_i) is not None:
        ws = np.asarray(cv.t(w_i).scale, dtype=np.float64)
        acc = cv.t(in_i).scale[0] * np.broadcast_to(ws, (c_out,))
        exact = raw.astype(np.float64) * acc
        info = ConstInfo("int32", QuantParams(tuple(float(a) for a in acc), (0,) * c_out, "int32", 0))
        return exact, info, exact
    if t.dtype in ("int32", "int64"):
        raise OpError(f"bias {t.name!r} is an integer but the layer is float")
    return cv.real_const(b_i, "bias").reshape(-1), ConstInfo("float32"), None


def _check_in_out(cv: _Converter, op: TOp, x: int) -> None:
    """An int8 layer needs int8 input and output parameters; float needs float both sides."""
    qi, qo = cv.quant(x) is not None, cv.quant(op.outputs[0]) is not None
    if qi != qo:
        raise OpError("the input and the output differ in being quantised (a hybrid op); memplan needs both int8 "
                      "or both float")


@handles("CONV_2D", "DEPTHWISE_CONV_2D")
def _conv(cv: _Converter, op: TOp) -> None:
    x_i, w_i = op.inputs[0], op.inputs[1]
    _check_in_out(cv, op, x_i)
    x, (n, c, h, w) = cv.nhwc(x_i)
    wt = cv.const(w_i, "filter")
    if wt.ndim != 4:
        raise OpError(f"filter has rank {wt.ndim}, expected 4")
    o = op.opts
    sh, sw = int(o.get("StrideH", 1)), int(o.get("StrideW", 1))
    dh, dw = int(o.get("DilationHFactor", 1)), int(o.get("DilationWFactor", 1))
    if op.name == "CONV_2D":
        c_out, kh, kw, ci = wt.shape
        if ci <= 0 or c % ci:
            raise OpError(f"filter input depth {ci} does not divide the input's {c} channels")
        groups = c // ci
        ir_w = wt.transpose(0, 3, 1, 2)
    else:
        _, kh, kw, c_out = wt.shape
        mult = int(o.get("DepthMultiplier", 1)) or 1
        if c_out != c * mult and c_out % c:
            raise OpError(f"depthwise filter has {c_out} channels for {c} input channels")
        groups = c
        ir_w = wt.transpose(3, 0, 1, 2)
    real, info = _weights(cv, w_i, ir_w, c_out)
    bias, binfo, exact = _bias(cv, op, 2, x_i, w_i, c_out)
    attrs = ConvAttrs((kh, kw), (sh, sw), _pads(o, h, w, kh, kw, sh, sw, dh, dw), (dh, dw), groups)
    cv.emit(op, OpKind.CONV, [x], attrs, op.outputs[0], weight=real, bias=bias, weight_info=info, bias_info=binfo,
            activation=_act(op), exact_bias=exact)


@handles("TRANSPOSE_CONV", "CUSTOM:Convolution2DTransposeBias")
def _transpose_conv(cv: _Converter, op: TOp) -> None:
    if op.name == "TRANSPOSE_CONV":
        x_i, w_i, b_k = op.inputs[2], op.inputs[1], 3
        o = op.opts
        padding, sh, sw = int(o.get("Padding", 0)), int(o.get("StrideH", 1)), int(o.get("StrideW", 1))
    else:  # MediaPipe's custom op: input, weights, bias; options are a TfLiteTransposeConvParams struct
        x_i, w_i, b_k = op.inputs[0], op.inputs[1], 2
        if len(op.custom) < 12:
            raise OpError("custom options are not a TfLiteTransposeConvParams struct")
        pad_c, sw, sh = (int(v) for v in np.frombuffer(op.custom[:12], dtype="<i4"))
        if pad_c not in (1, 2):
            raise OpError(f"padding {pad_c} is neither SAME nor VALID")
        padding = 0 if pad_c == 1 else 1
        o = {"FusedActivationFunction": 0}
    _check_in_out(cv, op, x_i)
    x, (n, c, h, w) = cv.nhwc(x_i)
    wt = cv.const(w_i, "filter")
    c_out, kh, kw, ci = wt.shape
    if ci != c:
        raise OpError(f"filter input depth {ci} differs from the input's {c} channels")
    out = cv.t(op.outputs[0]).shape
    oh, ow = int(out[1]), int(out[2])
    pads = []
    for n_in, n_out, k, s in ((h, oh, kh, sh), (w, ow, kw, sw)):
        if padding == 0:
            # TFLite computes the padding of the convolution this op transposes
            _, before, _ = same_padding(n_out, k, s, 1)
        else:
            before = 0
        after = s * (n_in - 1) + k - before - n_out
        pads.append((before, after))
    (pt, pb), (pl, pr) = pads
    op_h, op_w = max(-pb, 0), max(-pr, 0)
    attrs = ConvTransposeAttrs((kh, kw), (sh, sw), (pt, pl, max(pb, 0), max(pr, 0)), (1, 1), 1, (op_h, op_w))
    ir_w = wt.transpose(3, 0, 1, 2)  # (C_in, C_out, kh, kw)
    t = cv.t(w_i)
    if t.dtype in ("int8", "uint8") and t.scale and cv.quantized:
        if any(z != 0 for z in t.zero_point) or len(t.scale) not in (1, c_out):
            raise OpError(f"weights {t.name!r} are not symmetric int8 with one scale per output channel")
        s = np.asarray(t.scale, dtype=np.float64)
        real = ir_w.astype(np.float64) * (s.reshape(1, -1, 1, 1) if s.size > 1 else s[0])
        info = ConstInfo("int8", QuantParams(tuple(t.scale), tuple(t.zero_point), "int8", 1))
    else:
        real, info = _weights(cv, w_i, ir_w, c_out)
    bias, binfo, exact = _bias(cv, op, b_k, x_i, w_i, c_out)
    cv.emit(op, OpKind.CONV_TRANSPOSE, [x], attrs, op.outputs[0], weight=real, bias=bias, weight_info=info,
            bias_info=binfo, activation=_act(op) if op.name == "TRANSPOSE_CONV" else None, exact_bias=exact)


@handles("FULLY_CONNECTED")
def _fully_connected(cv: _Converter, op: TOp) -> None:
    x_i, w_i = op.inputs[0], op.inputs[1]
    _check_in_out(cv, op, x_i)
    if int(op.opts.get("WeightsFormat", 0)) != 0:
        raise OpError("shuffled weight formats are not supported")
    wt = cv.const(w_i, "weights")
    if wt.ndim != 2:
        raise OpError(f"weights have rank {wt.ndim}, expected 2")
    units, k = wt.shape
    xt = cv.t(x_i)
    numel = math.prod(xt.shape)
    if numel % k:
        raise OpError(f"input {xt.name!r} ({list(xt.shape)}) does not flatten to rows of {k}")
    rows = numel // k
    if x_i in cv.pending:
        if rows != 1 or len(xt.shape) != 2:
            ir = _ir_shape(tuple(xt.shape))
            if ir is None:
                raise OpError(f"model input {xt.name!r} of shape {list(xt.shape)}")
            cv._materialise(x_i, ir, _nhwc_positions(ir))
        else:
            cv._materialise(x_i, (1, k, 1, 1), np.arange(k, dtype=np.int64))
    v = cv.view(x_i)
    base_shape = tuple(cv.draft.tensors[v.base].shape)
    if base_shape[0] != 1:
        raise OpError("a batch other than 1")
    if rows == 1:
        real, info = _weights(cv, w_i, wt, units)
        cols = np.empty(k, dtype=np.int64)
        cols[:] = v.pos  # TFLite column j is IR flat position pos[j]
        ir_w = np.zeros((units, k), dtype=np.float64)
        ir_w[:, cols] = real
        bias, binfo, exact = _bias(cv, op, 2, x_i, w_i, units)
        out = cv.t(op.outputs[0])
        if math.prod(out.shape) != units:
            raise OpError(f"output shape {list(out.shape)} for {units} units")
        _emit_fc(cv, op, v.base, ir_w, info, bias, binfo, exact, units)
        return
    # rows > 1: the same weights on every pixel of an NHWC map whose channels are the rows' K: a 1x1 conv
    n, c, h, w = base_shape
    if c != k or rows != h * w or not np.array_equal(v.pos, _nhwc_positions(base_shape)):  # type: ignore[arg-type]
        raise OpError(f"a fully connected layer over {rows} rows of a tensor that is not an NHWC feature map")
    real, info = _weights(cv, w_i, wt.reshape(units, k, 1, 1), units)
    bias, binfo, exact = _bias(cv, op, 2, x_i, w_i, units)
    name = cv.out_name(op.outputs[0])
    layer = DraftLayer(cv.layer_id(op), OpKind.CONV, [v.base], name, ConvAttrs((1, 1)), weight=real, bias=bias,
                       weight_info=info, bias_info=binfo, activation=_act(op))
    cv.draft.add_layer(layer, (1, units, h, w), cv.fmap_dtype(op.outputs[0]))
    cv.draft.tensors[name].quant = cv.quant(op.outputs[0])
    if exact is not None:
        cv.biases[layer.id] = exact
    cv.set_view(op.outputs[0], View(name, tuple(cv.t(op.outputs[0]).shape), _nhwc_positions((1, units, h, w))))


def _emit_fc(self: _Converter, op: TOp, base: str, ir_w: np.ndarray, info: ConstInfo, bias: np.ndarray | None,
             binfo: ConstInfo | None, exact: np.ndarray | None, units: int) -> str:
    out_i = op.outputs[0]
    name = self.out_name(out_i)
    layer = DraftLayer(self.layer_id(op), OpKind.FULLY_CONNECTED, [base], name, FullyConnectedAttrs(units),
                       weight=ir_w, bias=bias, weight_info=info, bias_info=binfo, activation=_act(op))
    self.draft.add_layer(layer, (1, units, 1, 1), self.fmap_dtype(out_i))
    self.draft.tensors[name].quant = self.quant(out_i)
    if exact is not None:
        self.biases[layer.id] = exact
    self.set_view(out_i, View(name, tuple(self.t(out_i).shape), np.arange(units, dtype=np.int64)))
    return name


def _channel_const(cv: _Converter, i: int, c: int) -> np.ndarray | None:
    """A constant that broadcasts per channel against a C-channel NHWC map: (C,) values of its
    integers (int8) or reals, or None if it varies along other axes."""
    a = cv.const(i, "operand")
    if a.size == 1:
        return np.broadcast_to(a.reshape(-1), (c,))
    if a.size == c and a.shape[-1] == c:
        return a.reshape(-1)
    return None


@handles("ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM")
def _elementwise(cv: _Converter, op: TOp) -> None:
    a_i, b_i = op.inputs[0], op.inputs[1]
    kind = {"ADD": OpKind.ADD, "SUB": OpKind.SUB, "MUL": OpKind.MUL, "MAXIMUM": OpKind.MAX,
            "MINIMUM": OpKind.MIN}[op.name]
    act = _act(op) if op.name in ("ADD", "SUB", "MUL") else None
    consts = [cv.is_const(a_i), cv.is_const(b_i)]
    if consts[0] and consts[1]:
        raise OpError("both operands are constants")
    if consts[0] or consts[1]:
        if kind not in (OpKind.ADD, OpKind.SUB, OpKind.MUL) or (consts[0] and kind is OpKind.SUB):
            raise OpError(f"{op.name} with a constant operand")
        x_i, c_i = (b_i, a_i) if consts[0] else (a_i, b_i)
        _check_in_out(cv, op, x_i)
        x, (n, c, h, w) = cv.nhwc(x_i)
        vals = _channel_const(cv, c_i, c)
        if vals is None:
            raise OpError("a constant operand that varies along H or W")
        ct = cv.t(c_i)
        if kind is OpKind.MUL and cv.quant(x_i) is not None and ct.dtype == "int8" and len(ct.scale) == 1:
            ints = vals.astype(np.int64) - ct.zero_point[0]
            fits = bool(np.all((ints >= -128) & (ints <= 127)))
            if fits:  # exactly TFLite's MUL: (x - zp) * (c - zc), times s_x * s_c / s_out
                weight = (ints * ct.scale[0]).astype(np.float64).reshape(c, 1, 1, 1)
                info = ConstInfo("int8", QuantParams((ct.scale[0],), (0,), "int8", 0))
            else:  # integers beyond int8: memplan re-quantises the real per-channel factors
                weight = (ints * ct.scale[0]).astype(np.float64).reshape(c, 1, 1, 1)
                info = ConstInfo("float32")
            cv.emit(op, OpKind.CONV, [x], ConvAttrs((1, 1), groups=c), op.outputs[0], weight=weight,
                    weight_info=info, activation=act)
            return
        if kind is OpKind.ADD and cv.quant(x_i) is not None and ct.dtype == "int8" and len(ct.scale) == 1:
            # TFLite's ADD of an int8 constant: an identity layer whose bias is the constant with
            # its own int8 parameters; the int8 executor computes TFLite Micro's ADD arithmetic
            # from them (memplan.execute.quantize.identity_role), exactly
            ints = vals.astype(np.int64) - ct.zero_point[0]
            exact = ints.astype(np.float64) * ct.scale[0]
            cv.emit(op, OpKind.CONV, [x], ConvAttrs((1, 1), groups=c), op.outputs[0], weight=np.ones((c, 1, 1, 1)),
                    weight_info=ConstInfo("int8", QuantParams((1.0,), (0,), "int8", 0)), bias=exact,
                    bias_info=ConstInfo("int8", QuantParams((ct.scale[0],), (ct.zero_point[0],), "int8", None)),
                    activation=act, exact_bias=exact)
            return
        real = cv.real_const(c_i, "operand")
        real = np.broadcast_to(real.reshape(-1), (c,)) if real.size in (1, c) else None  # type: ignore[assignment]
        if real is None:
            raise OpError("a constant operand that varies along H or W")
        scale = real if kind is OpKind.MUL else np.ones(c)
        shift = np.zeros(c) if kind is OpKind.MUL else (real if kind is OpKind.ADD else -real)
        if cv.quant(x_i) is None:  # float: a per-channel affine, folded into a convolution where possible
            if act is not None:
                raise OpError("a fused activation on an elementwise op with a constant operand")
            cv.emit(op, Pseudo.AFFINE, [x], AffineAttrs(np.asarray(scale, dtype=np.float64),
                                                        np.asarray(shift, dtype=np.float64)), op.outputs[0],
                    activation=None)
            return
        cv.emit(op, OpKind.CONV, [x], ConvAttrs((1, 1), groups=c), op.outputs[0],
                weight=np.asarray(scale, dtype=np.float64).reshape(c, 1, 1, 1), weight_info=ConstInfo("float32"),
                bias=None if not np.any(shift) else np.asarray(shift, dtype=np.float64),
                bias_info=None if not np.any(shift) else ConstInfo("float32"), activation=act)
        return
    _check_in_out(cv, op, a_i)
    names = [cv.nhwc(i)[0] for i in (a_i, b_i)]
    cv.emit(op, kind, names, NoAttrs(), op.outputs[0], activation=act)


@handles("AVERAGE_POOL_2D", "MAX_POOL_2D")
def _pool(cv: _Converter, op: TOp) -> None:
    x, (n, c, h, w) = cv.nhwc(op.inputs[0])
    o = op.opts
    kh, kw = int(o.get("FilterHeight", 1)), int(o.get("FilterWidth", 1))
    sh, sw = int(o.get("StrideH", 1)), int(o.get("StrideW", 1))
    pads = _pads(o, h, w, kh, kw, sh, sw)
    if cv.quant(op.inputs[0]) != cv.quant(op.outputs[0]):
        raise OpError("input and output quantisation differ (TFLite Micro pools keep the input's parameters)")
    kind = OpKind.AVG_POOL if op.name == "AVERAGE_POOL_2D" else OpKind.MAX_POOL
    cv.emit(op, kind, [x], PoolAttrs((kh, kw), (sh, sw), pads, count_include_pad=False), op.outputs[0],
            activation=_act(op))


def _axes(cv: _Converter, i: int, rank: int) -> tuple[int, ...]:
    a = cv.const(i, "axis").reshape(-1)
    return tuple(sorted({int(v) % rank for v in a}))


@handles("MEAN")
def _mean(cv: _Converter, op: TOp) -> None:
    xt = cv.t(op.inputs[0])
    if len(xt.shape) != 4 or _axes(cv, op.inputs[1], 4) != (1, 2):
        raise OpError("MEAN over axes other than H and W of a 4-D map")
    x, _ = cv.nhwc(op.inputs[0])
    cv.emit(op, OpKind.GLOBAL_AVG_POOL, [x], NoAttrs(), op.outputs[0])


@handles("CONCATENATION")
def _concat(cv: _Converter, op: TOp) -> None:
    rank = len(cv.t(op.outputs[0]).shape)
    axis = int(op.opts.get("Axis", 0)) % max(rank, 1)
    if _act(op) is not None:
        raise OpError("a fused activation on CONCATENATION")
    if (rank, axis) not in ((4, 3), (2, 1)):
        raise OpError(f"concatenation along axis {axis} of rank {rank} (memplan concatenates channels)")
    names = [cv.nhwc(i)[0] for i in op.inputs]
    cv.emit(op, OpKind.CONCAT, names, NoAttrs(), op.outputs[0])


@handles("SOFTMAX")
def _softmax(cv: _Converter, op: TOp) -> None:
    if abs(float(op.opts.get("Beta", 1.0)) - 1.0) > 0:
        raise OpError(f"softmax beta {op.opts.get('Beta')} (memplan's softmax has beta 1)")
    x, _ = cv.nhwc(op.inputs[0])
    cv.emit(op, OpKind.SOFTMAX, [x], NoAttrs(), op.outputs[0])


def _standalone(cv: _Converter, op: TOp, act: Activation | None) -> None:
    """An activation (or a requantisation) as a depthwise 1x1 identity convolution: weight 1 at
    scale 1, so the int8 layer computes ``(q - zp_in) * s_in / s_out`` as TFLite Micro."""
    x, (n, c, h, w) = cv.nhwc(op.inputs[0])
    ones = np.ones((c, 1, 1, 1))
    info = ConstInfo("int8", QuantParams((1.0,), (0,), "int8", 0)) if cv.quant(op.inputs[0]) else ConstInfo("float32")
    cv.emit(op, OpKind.CONV, [x], ConvAttrs((1, 1), groups=c), op.outputs[0], weight=ones, weight_info=info,
            activation=act)


@handles("RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU", "PRELU", "RELU_0_TO_1")
def _activation(cv: _Converter, op: TOp) -> None:
    _check_in_out(cv, op, op.inputs[0])
    n = op.name
    if n == "PRELU":
        _, (_, c, _, _) = cv.nhwc(op.inputs[0])
        alpha = cv.real_const(op.inputs[1], "alpha")
        if alpha.size == 1:
            act = Activation(ActKind.LEAKY_RELU, (float(alpha.reshape(-1)[0]),))
        elif alpha.size == c and alpha.shape[-1] == c:
            act = Activation(ActKind.PRELU, tuple(float(a) for a in alpha.reshape(-1)))
        else:
            raise OpError("PRELU slopes that vary along H or W")
    else:
        act = {"RELU": Activation(ActKind.RELU), "RELU6": Activation(ActKind.CLIP, (0.0, 6.0)),
               "RELU_N1_TO_1": Activation(ActKind.CLIP, (-1.0, 1.0)), "RELU_0_TO_1": Activation(ActKind.CLIP, (0.0, 1.0)),
               "LOGISTIC": Activation(ActKind.SIGMOID), "TANH": Activation(ActKind.TANH),
               "HARD_SWISH": Activation(ActKind.HARD_SWISH),
               "LEAKY_RELU": Activation(ActKind.LEAKY_RELU, (float(op.opts.get("Alpha", 0.2)),))}[n]
    if cv.quant(op.inputs[0]) is None:  # float: fused into the producer where possible (normalize)
        x, _ = cv.nhwc(op.inputs[0])
        cv.emit(op, Pseudo.ACT, [x], None, op.outputs[0], activation=act)  # type: ignore[arg-type]
        return
    _standalone(cv, op, act)


@handles("QUANTIZE", "DEQUANTIZE")
def _quantize(cv: _Converter, op: TOp) -> None:
    x_i, y_i = op.inputs[0], op.outputs[0]
    qx, qy = cv.quant(x_i), cv.quant(y_i)
    if op.name == "QUANTIZE" and qx is None and qy is not None and x_i in cv.pending:
        # a float model input quantised first: the IR input is the int8 tensor
        cv.alias[x_i] = y_i
        cv.views[y_i] = cv.raw_view(x_i)
        cv.requantised_inputs[x_i] = y_i
        return
    if op.name == "DEQUANTIZE" and qx is not None and qy is None:
        if any(o.index != op.index and y_i in o.inputs for o in cv.m.ops) or y_i not in cv.m.outputs:
            raise OpError("a DEQUANTIZE of a feature map inside the graph (memplan runs a model int8 or float "
                          "throughout)")
        cv.views[y_i] = cv.view(x_i)
        cv.alias[y_i] = x_i
        return
    if qx is not None and qy is not None:
        _standalone(cv, op, None)
        return
    raise OpError("a conversion between float and int8 inside the graph")


@handles("PAD", "PADV2")
def _pad(cv: _Converter, op: TOp) -> None:
    xt = cv.t(op.inputs[0])
    p = cv.const(op.inputs[1], "paddings").astype(np.int64)
    if len(xt.shape) != 4 or p.shape != (4, 2):
        raise OpError("padding of a tensor that is not 4-D")
    if np.any(p < 0) or np.any(p[0] != 0):
        raise OpError("negative padding or padding of the batch")
    if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = cv.const(op.inputs[2], "pad value").reshape(-1)[0]
        q = cv.quant(op.inputs[0])
        zero = q.zero_point[0] if q is not None else 0
        if value != zero:
            raise OpError(f"padding with value {value}, not the zero point {zero}")
    x, _ = cv.nhwc(op.inputs[0])
    attrs = ZeroPadAttrs((int(p[3, 0]), int(p[3, 1])), (int(p[1, 0]), int(p[2, 0]), int(p[1, 1]), int(p[2, 1])))
    cv.emit(op, OpKind.PAD, [x], attrs, op.outputs[0])


@handles("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR")
def _resize(cv: _Converter, op: TOp) -> None:
    x, _ = cv.nhwc(op.inputs[0])
    out = cv.t(op.outputs[0]).shape
    ac, hp = bool(op.opts.get("AlignCorners", False)), bool(op.opts.get("HalfPixelCenters", False))
    if op.name == "RESIZE_BILINEAR":
        attrs = ResizeAttrs((int(out[1]), int(out[2])), "linear",
                            "align_corners" if ac else ("half_pixel" if hp else "asymmetric"))
    else:
        if ac:
            attrs = ResizeAttrs((int(out[1]), int(out[2])), "nearest", "align_corners", "round_prefer_ceil")
        else:
            attrs = ResizeAttrs((int(out[1]), int(out[2])), "nearest", "tf_half_pixel_for_nn" if hp else "asymmetric",
                                "floor")
    cv.emit(op, OpKind.RESIZE, [x], attrs, op.outputs[0])


def _slice_out(cv: _Converter, op: TOp, x: str, shape: tuple[int, int, int, int], out_i: int,
               start: tuple[int, int, int]) -> None:
    ot = cv.t(out_i)
    ir = _ir_shape(tuple(ot.shape))
    assert ir is not None
    spans = tuple((s, s + e) for s, e in zip(start, ir[1:]))
    cv.emit(op, OpKind.SLICE, [x], SliceAttrs(*spans), out_i)  # type: ignore[arg-type]


@handles("SPLIT", "SPLIT_V")
def _split(cv: _Converter, op: TOp) -> None:
    if op.name == "SPLIT":
        axis_i, x_i = op.inputs[0], op.inputs[1]
    else:
        x_i, axis_i = op.inputs[0], op.inputs[2]
    xt = cv.t(x_i)
    if len(xt.shape) != 4:
        raise OpError("SPLIT of a tensor that is not 4-D")
    axis = int(cv.const(axis_i, "axis").reshape(-1)[0]) % 4
    if axis == 0:
        raise OpError("SPLIT along the batch")
    x, shape = cv.nhwc(x_i)
    ir_axis = {3: 0, 1: 1, 2: 2}[axis]  # into (C, H, W)
    offset = 0
    for o in op.outputs:
        start = [0, 0, 0]
        start[ir_axis] = offset
        _slice_out(cv, op, x, shape, o, tuple(start))  # type: ignore[arg-type]
        offset += int(cv.t(o).shape[axis])


@handles("STRIDED_SLICE", "SLICE")
def _strided(cv: _Converter, op: TOp) -> None:
    xt = cv.t(op.inputs[0])
    if len(xt.shape) != 4:
        raise OpError("a slice of a tensor that is not 4-D")
    begin = cv.const(op.inputs[1], "begin").astype(np.int64).reshape(-1)
    o = op.opts
    if op.name == "STRIDED_SLICE":
        strides = cv.const(op.inputs[3], "strides").reshape(-1)
        if np.any(strides != 1) or o.get("EllipsisMask", 0) or o.get("NewAxisMask", 0) or o.get("ShrinkAxisMask", 0):
            raise OpError("a strided slice with strides other than 1 or with axis masks")
    start = [0 if (o.get("BeginMask", 0) >> d & 1) else int(begin[d]) % max(xt.shape[d], 1) for d in range(4)]
    ot = cv.t(op.outputs[0])
    if start[0] != 0 or ot.shape[0] != xt.shape[0]:
        raise OpError("a slice of the batch")
    x, shape = cv.nhwc(op.inputs[0])
    _slice_out(cv, op, x, shape, op.outputs[0], (start[3], start[1], start[2]))


@handles("DEPTH_TO_SPACE", "SPACE_TO_DEPTH")
def _block(cv: _Converter, op: TOp) -> None:
    x, _ = cv.nhwc(op.inputs[0])
    kind = OpKind.DEPTH_TO_SPACE if op.name == "DEPTH_TO_SPACE" else OpKind.SPACE_TO_DEPTH
    cv.emit(op, kind, [x], BlockAttrs(int(op.opts.get("BlockSize", 1)), "DCR"), op.outputs[0])


# ---------------------------------------------------------------------------- host layers
#: TFLite ops a host layer evaluates as one ONNX node on the TFLite-layout tensors
_HOST_OPS = {"CONCATENATION": "Concat", "TRANSPOSE": "Transpose", "RESHAPE": "Identity", "MEAN": "ReduceMean",
             "SOFTMAX": "Softmax", "SQUEEZE": "Identity", "EXPAND_DIMS": "Identity"}


def _host_capable(name: str) -> bool:
    return name in _HOST_OPS


def _onnx_equivalent(cv: _Converter, op: TOp) -> tuple[str, list[Any], list[Any]]:
    from onnx import helper

    n = op.name
    rank = len(cv.t(op.outputs[0]).shape)
    if n == "CONCATENATION":
        if _act(op) is not None:
            raise OpError("a fused activation on CONCATENATION")
        return "Concat", [helper.make_attribute("axis", int(op.opts.get("Axis", 0)) % rank)], list(op.inputs)
    if n == "TRANSPOSE":
        perm = [int(p) for p in cv.const(op.inputs[1], "perm").reshape(-1)]
        return "Transpose", [helper.make_attribute("perm", perm)], [op.inputs[0]]
    if n == "MEAN":
        xr = len(cv.t(op.inputs[0]).shape)
        axes = list(_axes(cv, op.inputs[1], xr))
        keep = 1 if rank == xr else 0
        return "ReduceMean", [helper.make_attribute("axes", axes), helper.make_attribute("keepdims", keep)], \
            [op.inputs[0]]
    if n == "SOFTMAX":
        return "Softmax", [helper.make_attribute("axis", -1)], [op.inputs[0]]
    return "Reshape", [], [op.inputs[0], np.asarray(cv.t(op.outputs[0]).shape, dtype=np.int64)]


def supported_operators() -> dict[str, tuple[str, ...]]:
    """The TFLite operators the importer handles: ``layers``, ``constants`` (folded) and
    ``host`` (host layers when no layer form applies)."""
    return {"layers": tuple(sorted(HANDLERS)), "constants": tuple(sorted(set(FOLDABLE) | {"SHAPE"})),
            "host": tuple(sorted(_HOST_OPS))}


# ---------------------------------------------------------------------------- entry points
def import_tflite(path: str | os.PathLike[str], input_shapes: Mapping[str, tuple[int, ...]] | None = None,
                  host_ops: str = "cpu") -> ImportResult:
    """:func:`load_tflite` with the correspondence of IR and TFLite tensors."""
    from memplan.frontend.normalize import normalize

    file = Path(path)
    if host_ops not in ("cpu", "error"):
        raise ValueError(f"host_ops must be cpu or error, got {host_ops!r}")
    try:
        model = read_tflite(file)
        cv = _Converter(model, host_ops)
        cv.requantised_inputs = {}  # type: ignore[attr-defined]
        notes: list[str] = []
        pinned: dict[str, tuple[int, ...]] = {}
        names = {model.tensors[i].name for i in model.inputs}
        for name in (input_shapes or {}):
            if name not in names:
                raise ModelError(f"--input-shape names {name!r}, which is not a model input; the model's inputs are: "
                                 f"{', '.join(sorted(names))}")
        for i in model.inputs:
            t = model.tensors[i]
            given = (input_shapes or {}).get(t.name)
            if given is not None and tuple(int(d) for d in given) != tuple(t.shape):
                raise ModelError(f"--input-shape {t.name}={'x'.join(map(str, given))} differs from the TFLite model's "
                                 f"static shape {'x'.join(map(str, t.shape))}; TFLite models are planned at their "
                                 "own shapes")
            if t.signature and t.signature[0] < 0:
                notes.append(f"input {t.name!r} has a dynamic batch ({'x'.join(str(d) if d >= 0 else '?' for d in t.signature)}); "
                             "planning batch 1")
            if t.shape and t.shape[0] != 1:
                raise ModelError(f"model input {t.name!r} has batch {t.shape[0]}; memplan plans batch 1")
            pinned[t.name] = tuple(t.shape)
        with np.errstate(all="ignore"):
            cv.run()
            normalize(cv.draft)
        graph = cv.draft.freeze(file.stem)
        weights = dict(graph.weights)
        for layer in graph.layers:
            exact = cv.biases.get(layer.id)
            if exact is not None and layer.bias is not None:
                arr = np.asarray(exact, dtype=np.float64)
                arr.setflags(write=False)
                weights[layer.bias] = arr
        for name, arr in weights.items():
            if not np.isfinite(arr).all():
                raise ModelError(f"constant {name!r} holds NaN or infinite values; the weights are corrupt")
        graph = dataclasses.replace(graph, weights=MappingProxyType(weights), input_shapes=MappingProxyType(pinned),
                                    notes=tuple(notes), host_ops=host_ops)
        views = {name: v for name, v in cv.exact_views.items() if name in graph.tensors}
        return ImportResult(graph, views)
    except MemplanError as exc:
        raise type(exc)(f"{file}: {exc.message}") from None


def load_tflite(path: str | os.PathLike[str], input_shapes: Mapping[str, tuple[int, ...]] | None = None,
                host_ops: str = "cpu") -> Graph:
    """Load a ``.tflite`` model as an IR graph (see the module documentation)."""
    return import_tflite(path, input_shapes, host_ops).graph


def truncated_model(path: str | os.PathLike[str], last_op: int) -> bytes:
    """The flatbuffer of the model cut after operator ``last_op`` (whose first output becomes
    the only model output), other tensors unchanged: to compare every layer TFLite Micro runs
    before an operator it aborts on. Needs ``tflite_micro`` (its schema's object API)."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    buf = Path(path).read_bytes()
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(buf, 0))
    sg = m.subgraphs[0]
    sg.operators = sg.operators[: last_op + 1]
    sg.outputs = [int(sg.operators[-1].outputs[0])]
    m.signatureDefs = None
    b = flatbuffers.Builder(len(buf) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def input_order(result: ImportResult, name: str, graph: Graph) -> np.ndarray:
    v = result.tensor_views.get(name)
    if v is not None:
        return v[1]
    return _nhwc_positions(graph.shape(name))
