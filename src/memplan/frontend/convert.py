"""ONNX graph -> draft graph.

The :class:`Converter` walks the nodes in topological order. A node whose inputs are all
constants is evaluated (:mod:`memplan.frontend.constants`); a layout op only creates a view
(:mod:`memplan.frontend.layout`); every other node goes to the handler registered for its
operator in :mod:`memplan.frontend.ops_nn`, :mod:`memplan.frontend.ops_elementwise` or
:mod:`memplan.frontend.ops_quant`, which appends draft layers.

Model inputs are *pending* until a layer reads them: the layout ops between a model input and
its first real consumer (tf2onnx's NHWC->NCHW Transpose, the Reshape of a flat keyword-spotting
input) are absorbed, the IR input takes the shape the first layer sees, and
``Graph.input_layouts`` records the order of the caller's data (NCHW or NHWC).

Layer ids are ONNX node names; a node without a name takes the name of its first output, and a
repeated name gets a ``~k`` suffix (in file order, so ids are deterministic). A layer fused
from several nodes (Conv + BatchNormalization + Relu) keeps the id of the first and writes the
output tensor of the last.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

import numpy as np
import onnx

from memplan.errors import GraphError, ModelError, UnsupportedOpError
from memplan.frontend import constants
from memplan.frontend.common import HANDLERS, Node, NodeError, check_dtype, decode_attrs, dtype_name, is_float
from memplan.frontend.constants import Const
from memplan.frontend.draft import AffineAttrs, ConstInfo, Draft, DraftLayer, DraftTensor, PadAttrs, Pseudo
from memplan.frontend.layout import Ref, channel_permutation, fc_columns, nhwc_positions, positions
from memplan.ir.ops import Activation, ActKind, Attrs, ChannelShuffleAttrs, HostAttrs, OpKind, Shape

_DEFAULT_DOMAINS = ("", "ai.onnx")
#: what an operator memplan does not tile becomes: a host layer (``cpu``) or an error
HOST_OPS = ("cpu", "error")
#: graph structure a host layer cannot stand for: control flow and sequences
_STRUCTURAL = frozenset({"If", "Loop", "Scan", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase",
                         "SequenceInsert", "SequenceLength", "SplitToSequence", "ConcatFromSequence"})


def default_opset(model: onnx.ModelProto) -> int:
    """The model's opset of the default ONNX domain; it must be one the installed onnx knows."""
    for op in model.opset_import:
        if op.domain in _DEFAULT_DOMAINS:
            version, newest = int(op.version), onnx.defs.onnx_opset_version()
            if not 1 <= version <= newest:
                raise ModelError(
                    f"the model declares ONNX opset {version}, but the installed onnx {onnx.__version__} knows opsets "
                    f"1 to {newest}; re-export the model with opset {newest} or lower, or upgrade onnx"
                )
            return version
    raise ModelError("the model declares no opset for the default ONNX domain; re-export it with a standard opset")


def _non_finite(value: object) -> bool:
    """A float attribute value (scalar, list or tensor) holding NaN or an infinity."""
    if isinstance(value, float):
        return not np.isfinite(value)
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "fc" and not bool(np.isfinite(value).all())
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    return False


class Converter:
    """Translates one ONNX graph (with pinned input shapes) into a :class:`Draft`."""

    def __init__(
        self,
        model: onnx.ModelProto,
        shapes: Mapping[str, tuple[int, ...]],
        dtypes: Mapping[str, str],
        host_ops: str = "cpu",
    ) -> None:
        if host_ops not in HOST_OPS:
            raise ValueError(f"host_ops must be one of {HOST_OPS}, got {host_ops!r}")
        self.host_ops = host_ops
        #: outputs of host layers that are not int8 4-D feature maps: only host layers read them
        self.host_only: set[str] = set()
        #: ONNX element type of each integer host output (its consumers' models declare it)
        self.host_elem: dict[str, int] = {}
        self.opset = default_opset(model)
        self.graph = model.graph
        self._shapes = shapes  # ONNX-inferred static shapes, used as a cross-check
        self._dtypes = dtypes
        self.consts: dict[str, Const] = {}
        self.refs: dict[str, Ref] = {}
        #: values inside an activation pattern (Sigmoid / HardSigmoid gating their own input,
        #: a decomposed hard-swish): value -> (x, activation); the pattern's last node applies it
        self.gates: dict[str, tuple[str, Activation]] = {}
        self._pending: dict[str, tuple[int, ...]] = {}  # model input -> its ONNX shape
        self._input_dtypes: dict[str, str] = {}
        self.float_dtype = "float32"

        initializers = {t.name for t in self.graph.initializer}
        self.model_inputs = [i.name for i in self.graph.input if i.name not in initializers]
        self.model_outputs = [o.name for o in self.graph.output]
        reserved = set(initializers) | set(self.model_inputs) | {o for n in self.graph.node for o in n.output}
        self.draft = Draft(reserved=reserved)
        self.nodes = self._sorted_nodes()
        self._consumers: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in set(node.inputs):
                if name:
                    self._consumers.setdefault(name, []).append(node)
        self._producer_id = {o: node.id for node in self.nodes for o in node.outputs if o}

    # ------------------------------------------------------------------ graph structure
    def _sorted_nodes(self) -> list[Node]:
        """Needed nodes in a topological order (stable w.r.t. the file), with unique layer ids."""
        protos = list(self.graph.node)
        producer: dict[str, int] = {}
        for i, p in enumerate(protos):
            for o in p.output:
                if o and o in producer:
                    raise ModelError(f"tensor {o!r} is produced by two nodes; the file is malformed, re-export it")
                if o:
                    producer[o] = i
        known = set(producer) | {t.name for t in self.graph.initializer} | {i.name for i in self.graph.input}
        for p in protos:
            for name in p.input:
                if name and name not in known:
                    raise ModelError(
                        f"node {p.name or p.op_type!r} reads {name!r}, which no node, input or initializer provides; "
                        "the file is incomplete, re-export the model"
                    )
        for name in (o.name for o in self.graph.output):
            if name not in known:
                raise ModelError(f"model output {name!r} is never produced; the file is incomplete, re-export it")

        # Kahn's algorithm, always taking the earliest node in file order that is ready
        deps = [{producer[n] for n in p.input if n in producer} for p in protos]
        users: list[list[int]] = [[] for _ in protos]
        for i, d in enumerate(deps):
            for j in d:
                users[j].append(i)
        missing = [len(d) for d in deps]
        ready = [i for i, m in enumerate(missing) if m == 0]
        heapq.heapify(ready)
        order: list[int] = []
        while ready:
            i = heapq.heappop(ready)
            order.append(i)
            for u in users[i]:
                missing[u] -= 1
                if missing[u] == 0:
                    heapq.heappush(ready, u)
        if len(order) < len(protos):
            stuck = [protos[i].name or protos[i].op_type for i in range(len(protos)) if missing[i] > 0]
            raise GraphError(
                f"the graph has a cycle through nodes {', '.join(repr(s) for s in stuck[:5])}"
                f"{' ...' if len(stuck) > 5 else ''}; an ONNX graph must be acyclic, re-export the model"
            )

        # keep only nodes that contribute to a model output
        needed_values = {o.name for o in self.graph.output}
        needed: set[int] = set()
        for i in reversed(order):
            if any(o in needed_values for o in protos[i].output):
                needed.add(i)
                needed_values.update(n for n in protos[i].input if n)
        self._needed_values = needed_values

        nodes: list[Node] = []
        ids: set[str] = set()
        for i in order:
            p = protos[i]
            base = p.name or next((o for o in p.output if o), p.op_type)
            layer_id, k = base, 0
            while layer_id in ids:
                k += 1
                layer_id = f"{base}~{k}"
            ids.add(layer_id)
            if i not in needed:
                continue
            if p.domain not in _DEFAULT_DOMAINS:
                raise self._unsupported(p.op_type, layer_id, p.domain)
            try:
                attrs = decode_attrs(p)
            except Exception as exc:  # noqa: BLE001 - a malformed attribute is a corrupt file
                raise ModelError(
                    f"node {layer_id!r} ({p.op_type}) has an unreadable attribute ({exc}); re-export the model"
                ) from None
            for key, value in attrs.items():
                if _non_finite(value):
                    raise ModelError(
                        f"node {layer_id!r} ({p.op_type}) has attribute {key!r} with NaN or infinite values; "
                        "fix the model (its weights or parameters are corrupt) and re-export it"
                    )
            nodes.append(Node(layer_id, p.op_type, tuple(p.input), tuple(p.output), attrs))
        return nodes

    def consumers(self, name: str) -> list[Node]:
        return self._consumers.get(name, [])

    def is_model_output(self, name: str) -> bool:
        return name in self.model_outputs

    # ------------------------------------------------------------------ driver
    def run(self) -> Draft:
        for t in self.graph.initializer:
            if t.name not in self._needed_values:
                continue  # unused weights are never decoded
            try:
                array = onnx.numpy_helper.to_array(t)
            except Exception as exc:  # noqa: BLE001 - corrupt tensor payload
                raise ModelError(
                    f"initializer {t.name!r} cannot be read ({exc}); the file is corrupt, re-export it"
                ) from None
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                bad = int(array.size - np.isfinite(array).sum())
                raise ModelError(
                    f"initializer {t.name!r} holds {bad} NaN or infinite value{'s' if bad > 1 else ''}; the weights "
                    "are corrupt (a diverged training run or a broken export): fix them and re-export the model"
                )
            self.consts[t.name] = Const.of(array)
        for inp in self.graph.input:
            if inp.name not in self.model_inputs:
                continue
            tt = inp.type.tensor_type
            shape = tuple(int(d.dim_value) for d in tt.shape.dim)
            dtype = dtype_name(tt.elem_type)
            self._pending[inp.name] = shape
            self._input_dtypes[inp.name] = dtype
            self.refs[inp.name] = Ref(inp.name, shape)
        floats = [d for d in self._input_dtypes.values() if is_float(d)]
        self.float_dtype = floats[0] if floats else "float32"

        for node in self.nodes:
            try:
                self._convert(node)
            except NodeError as exc:
                raise ModelError(f"node {node.id!r} ({node.op}): {exc.message}") from None
            except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError) as exc:
                # a missing attribute or an input of the wrong shape: name the node, keep the cause
                reason = str(exc).splitlines()[0] if str(exc) else ""
                raise ModelError(
                    f"node {node.id!r} ({node.op}) is malformed or uses an unsupported form "
                    f"({type(exc).__name__}: {reason}); check the node in the model"
                ) from exc
        try:
            self._finish_outputs()
        except NodeError as exc:
            raise ModelError(exc.message) from None
        self.draft.inputs = [n for n in self.model_inputs if n in self.draft.tensors]
        return self.draft

    def _convert(self, node: Node) -> None:
        present = [n for n in node.inputs if n]
        if constants.can_fold(node.op) and all(n in self.consts for n in present):
            outs = constants.fold(node, [self.consts.get(n) if n else None for n in node.inputs], self.opset)
            for name, value in zip(node.outputs, outs, strict=True):
                if name:
                    self.consts[name] = value
            return
        hosting = self.host_ops == "cpu" and node.op not in _STRUCTURAL
        if hosting and any(n in self.host_only for n in present):
            self._host(node, "it reads the output of a host layer that is not an int8 4-D feature map")
            return
        handler = HANDLERS.get(node.op)
        if handler is None:
            if hosting:
                self._host(node, f"memplan has no NPU layer for {node.op}")
                return
            raise self._unsupported(node.op, node.id)
        n_layers = len(self.draft.layers)
        try:
            handler(self, node)
        except NodeError as exc:
            # a form the handler refuses (Softmax over another axis, Div of two feature maps, a
            # rank-3 Concat...) runs on the host, unless the handler already emitted something
            if not hosting or len(self.draft.layers) != n_layers or any(self._produced(o) for o in node.outputs if o):
                raise
            self._host(node, exc.message)
            return
        for k, name in enumerate(node.outputs):
            if name and name in self._needed_values and not self._produced(name):
                raise NodeError(
                    f"output {k} ({name!r}) is used, but memplan converts only the first output of {node.op}"
                )

    def _produced(self, name: str) -> bool:
        return name in self.refs or name in self.consts or name in self.gates

    @staticmethod
    def _unsupported(op: str, node_id: str, domain: str = "") -> UnsupportedOpError:
        qualified = f"{domain}:{op}" if domain not in _DEFAULT_DOMAINS else op
        return UnsupportedOpError(
            f"node {node_id!r} uses operator {qualified}, which memplan does not support; replace it in the model "
            "(memplan ops lists what it supports)"
        )

    def _host(self, node: Node, reason: str, view_of: str | None = None) -> None:
        """A host layer computing the node's first output (or, with ``view_of``, materialising
        that model output's view: the node is then an Identity)."""
        from onnx import helper

        from memplan.host import HostInput, host_model

        op_type = "Identity" if view_of is not None else node.op
        names = [view_of] if view_of is not None else list(node.inputs)
        inputs: list[HostInput | None] = []
        bases: list[str] = []
        for name in names:
            if not name:
                inputs.append(None)
                continue
            if name in self.consts:
                c = self.consts[name]
                value = np.asarray(c.array, dtype=np.float32) if c.quant is not None or is_float(c.dtype) else c.array
                inputs.append(HostInput(value=np.asarray(value)))
                continue
            if name not in self.refs:
                raise NodeError(f"input {name!r} is part of a fused activation pattern; a host layer cannot read it")
            ref, _ = self.view(name)
            base = ref.base
            if base not in bases:
                bases.append(base)
            base_shape = tuple(self.draft.tensors[base].shape)
            gather = None if ref.index is None else np.asarray(ref.index, dtype=np.int64)
            inputs.append(HostInput(bases.index(base), base_shape, self.host_elem.get(base, onnx.TensorProto.FLOAT),
                                    tuple(ref.shape), gather))
        out = node.outputs[0] if view_of is None else view_of
        shape = tuple(int(d) for d in self._shapes.get(out, ())) if out in self._shapes else None
        if shape is None or any(d <= 0 for d in shape):
            raise NodeError(f"output {out!r} has no static shape after pinning the inputs; memplan needs static shapes "
                            "(pin them with --input-shape)")
        if not shape or shape[0] != 1 or any(tuple(self.draft.tensors[b].shape)[0] != 1 for b in bases):
            raise NodeError(f"a host layer must keep the batch axis first with size 1; {out!r} has shape {shape}")
        if not bases:
            raise NodeError("a host layer needs a feature-map input")
        dtype = self.value_dtype(out)
        integer = not is_float(dtype)
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype)) if integer else onnx.TensorProto.FLOAT
        used = [k for k, o in enumerate(node.outputs) if o and o in self._needed_values] if view_of is None else [0]
        if used != [0]:
            raise NodeError(f"a host layer computes the first output of {op_type} only; outputs {used} are used")
        attributes = [] if view_of is not None else next(p.attribute for p in self.graph.node if
                                                         tuple(p.output) == node.outputs and p.op_type == node.op)
        model = host_model(op_type, list(attributes), inputs, shape, elem, self.opset,
                           1 if view_of is not None else len(node.outputs))
        attrs = HostAttrs(op_type, reason, model, "int32" if integer else "int8")
        layer_id = node.id if view_of is None else self._producer_id.get(view_of, view_of)
        tensor = out if view_of is None else self.draft.fresh_name(view_of)
        self.draft.add_layer(DraftLayer(layer_id, OpKind.HOST, bases, tensor, attrs), shape, "int32" if integer else dtype)
        self.refs[tensor] = Ref(tensor, shape)
        if view_of is None:
            self.refs[out] = Ref(out, shape)
        if integer:
            self.host_elem[tensor] = elem
        if integer or len(shape) != 4:
            self.host_only.add(tensor)

    def _finish_outputs(self) -> None:
        outputs: list[str] = []
        for name in self.model_outputs:
            if name in self.consts:
                raise NodeError(f"model output {name!r} is a constant; memplan plans only computed outputs")
            ref, _ = self.view(name)
            if ref.base in self.model_inputs:
                raise NodeError(f"model output {name!r} is a model input passed through; nothing computes it")
            if ref.index is not None and self.host_ops == "cpu":
                host_id = self._producer_id.get(name, name)
                self._host(Node(host_id, "Identity", (name,), (name,), {}), "the model output is a Transpose/Reshape "
                           "that reorders a feature map's elements", view_of=name)
                ref = self.refs[self.draft.layers[-1].output]
            if ref.index is not None:
                raise NodeError(
                    f"model output {name!r} is a Transpose/Reshape of feature map {ref.base!r} that reorders its "
                    "elements; memplan outputs NCHW feature maps only: remove the final transpose from the model"
                )
            base = ref.base
            if base in outputs:
                continue
            if base != name and name not in self.draft.tensors:
                self.draft.rename(base, name)
                base = name
            outputs.append(base)
        self.draft.outputs = outputs

    # ------------------------------------------------------------------ constants
    def const(self, name: str | None, what: str) -> Const:
        """A constant input; :class:`NodeError` if it is missing or computed from the model input."""
        if name is None:
            raise NodeError(f"the {what} input is missing")
        if name not in self.consts:
            raise NodeError(f"the {what} ({name!r}) must be a constant (an initializer or computed from constants)")
        return self.consts[name]

    def maybe_const(self, name: str | None) -> Const | None:
        return None if name is None else self.consts.get(name)

    @staticmethod
    def float_array(c: Const) -> np.ndarray:
        """The constant's values as float32 (float16 and integer payloads converted)."""
        return np.asarray(c.array, dtype=np.float32)

    @staticmethod
    def info(c: Const) -> ConstInfo:
        return ConstInfo(c.dtype, c.quant)

    # ------------------------------------------------------------------ feature maps
    def ref(self, name: str) -> Ref:
        """The view an input names (model inputs may still be pending: only for layout ops)."""
        ref = self.refs.get(name)
        if ref is None:
            if name in self.consts:
                raise NodeError(f"input {name!r} is a constant where memplan expects a feature map")
            raise NodeError(f"input {name!r} is not available")
        return ref

    def set_ref(self, name: str, ref: Ref) -> None:
        self.refs[name] = ref

    def view(self, name: str) -> tuple[Ref, Shape]:
        """The view an input names and the shape of its base feature map (materialising a
        pending model input)."""
        ref = self.ref(name)
        if ref.base in self._pending:
            self._materialise(ref)
            ref = self.refs[name]
        shape = self.draft.tensors[ref.base].shape
        if len(shape) != 4:  # a host layer's output of another rank: only host layers read it
            return ref, tuple(shape)  # type: ignore[return-value]
        return ref, (shape[0], shape[1], shape[2], shape[3])

    def fmap(self, name: str) -> tuple[str, Shape]:
        """A 4-D NCHW feature map for a layer input (inserting a channel shuffle if the view is a
        channel permutation)."""
        ref, base_shape = self.view(name)
        perm = channel_permutation(ref, base_shape)
        if perm is None:
            return ref.base, base_shape
        layer_id = self._producer_id.get(name, name)  # the layout op that completed the shuffle
        layer = DraftLayer(layer_id, OpKind.CHANNEL_SHUFFLE, [ref.base], name, ChannelShuffleAttrs(perm))
        source = self.draft.tensors[ref.base]
        self.draft.add_layer(layer, base_shape, source.dtype)
        if source.quant is not None and source.quant.axis is None:
            self.draft.tensors[name].quant = source.quant
        self.refs[name] = Ref(name, base_shape)
        return name, base_shape

    def fc_input(self, name: str) -> tuple[str, Shape, np.ndarray | None]:
        """Base feature map of a fully connected layer's input, and the column permutation that
        maps the ONNX flatten order onto the IR's C, H, W order (None: same order)."""
        ref, base_shape = self.view(name)
        return ref.base, base_shape, fc_columns(ref, base_shape)

    @staticmethod
    def _input_layout(ref: Ref, onnx_shape: tuple[int, ...]) -> tuple[Shape, str] | None:
        """IR shape and caller layout if the view a first layer reads can be the model input:
        the data in NCHW order (a reshape), in NHWC order (an NHWC->NCHW transpose) or 2-D."""
        if len(ref.shape) == 2 and ref.index is None:
            return (ref.shape[0], ref.shape[1], 1, 1), "NCHW"
        if len(ref.shape) != 4:
            return None
        n, c, h, w = ref.shape
        shape: Shape = (n, c, h, w)
        nchw = ref.index is None
        nhwc = np.array_equal(positions(ref).reshape(-1), nhwc_positions(shape).reshape(-1))
        # with C == 1 (or H == W == 1) both orders agree: say NHWC if the ONNX input itself is NHWC
        looks_nhwc = onnx_shape == (n, h, w, c) and onnx_shape != shape
        if nhwc and (not nchw or looks_nhwc):
            return shape, "NHWC"
        return (shape, "NCHW") if nchw else None

    def _materialise(self, ref: Ref) -> None:
        """Give a pending model input its IR shape: the view its first layer reads when that is
        a reshape or an NHWC transpose of the input, else the input's own shape."""
        name = ref.base
        onnx_shape = self._pending.pop(name)
        chosen = self._input_layout(ref, onnx_shape)
        if chosen is None:
            chosen = self._input_layout(Ref(name, onnx_shape), onnx_shape)
            ref = Ref(name, onnx_shape)
        if chosen is None:
            raise NodeError(
                f"model input {name!r} has shape {onnx_shape}; memplan needs a 4-D NCHW input (or NHWC, transposed "
                "inside the model) or a 2-D (N, features) one"
            )
        shape, layout = chosen
        dtype = check_dtype(self._input_dtypes[name], f"model input {name!r}")
        self.draft.tensors[name] = DraftTensor(shape, dtype)
        self.draft.input_layouts[name] = layout
        if ref.index is None:
            return  # the IR input keeps the caller's element order: views stay as they are
        # views so far index the caller's data; re-index them into the IR input
        inverse = np.argsort(positions(ref).reshape(-1))
        for key, r in list(self.refs.items()):
            if r.base == name:
                index = inverse[positions(r)]
                simple = np.array_equal(index.reshape(-1), np.arange(index.size))
                self.refs[key] = Ref(name, r.shape, None if simple else index)

    # ------------------------------------------------------------------ emitting layers
    def value_dtype(self, name: str) -> str:
        return self._dtypes.get(name, self.float_dtype)

    def emit(
        self,
        node: Node,
        op: OpKind | Pseudo,
        inputs: Iterable[str],
        attrs: Attrs | AffineAttrs | PadAttrs | None,
        shape: Shape,
        *,
        like: Ref | None = None,
        onnx_shape: tuple[int, ...] | None = None,
        dtype: str | None = None,
        weight: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        weight_info: ConstInfo | None = None,
        bias_info: ConstInfo | None = None,
        activation: Activation | None = None,
    ) -> DraftLayer:
        """Append a layer computing the node's first output; that output becomes a view of the
        new feature map shaped like ``like`` (same element order), or ``onnx_shape``."""
        out = node.outputs[0]
        layer = DraftLayer(
            node.id, op, list(inputs), out, attrs,
            weight=weight, bias=bias, weight_info=weight_info, bias_info=bias_info, activation=activation,
        )
        self.draft.add_layer(layer, shape, dtype or self.value_dtype(out))
        view_shape = like.shape if like is not None else (onnx_shape or shape)
        expected = self._shapes.get(out)
        if expected is not None and tuple(expected) != tuple(view_shape):
            raise NodeError(
                f"memplan computes shape {tuple(view_shape)} for {out!r} but ONNX shape inference gives "
                f"{tuple(expected)}; please report this model"
            )
        self.refs[out] = Ref(out, tuple(view_shape), like.index if like is not None else None)
        return layer


def supported_operators() -> dict[str, tuple[str, ...]]:
    """The ONNX operators the importer handles: ``layers`` (converted to layers, fused
    activations or views) and ``constants`` (only folded, on constant inputs)."""
    return {"layers": tuple(sorted(HANDLERS)), "constants": tuple(sorted(constants.FOLDABLE - set(HANDLERS)))}
