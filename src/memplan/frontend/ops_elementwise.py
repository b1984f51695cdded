"""Converters of elementwise operators, activations, layout ops and Pad.

Per-channel arithmetic with a constant (BatchNormalization, Mul, Add, Sub, Div) becomes a draft
AFFINE; arithmetic of feature maps (Add, Sum, Sub, Mul, Max, Min, broadcasting) an IR layer;
a zero Pad read only by Conv / pools a draft PAD, any other zero Pad (of channels, too) an IR
PAD layer; an activation a draft ACT, a zero Pad a draft PAD: :mod:`memplan.frontend.normalize`
folds them into neighbouring layers. Layout ops only create views; a Slice or Split of a view
that picks a box of its feature map (channels, rows, columns; step 1) is an IR SLICE layer (one
per Split output) whose output is viewed the same way.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from memplan.frontend.common import (
    Node,
    NodeError,
    flatten_shape,
    handles,
    normalize_axis,
    reshape_target,
    squeeze_shape,
    unsqueeze_shape,
)
from memplan.frontend.constants import Const
from memplan.frontend.draft import AffineAttrs, PadAttrs, Pseudo
from memplan.frontend.layout import Ref, per_channel, positions, reshaped, transposed
from memplan.ir.ops import (
    Activation,
    ActKind,
    NoAttrs,
    OpKind,
    Shape,
    SliceAttrs,
    ZeroPadAttrs,
    infer_output_shape,
)

if TYPE_CHECKING:
    from memplan.frontend.convert import Converter


# ---------------------------------------------------------------------------------- layout ops
@handles("Identity", "Dropout")
def _identity(cv: Converter, node: Node) -> None:
    cv.set_ref(node.outputs[0], cv.ref(node.inputs[0]))


@handles("Reshape")
def _reshape(cv: Converter, node: Node) -> None:
    ref = cv.ref(node.inputs[0])
    if cv.opset < 5:
        spec = node.ints("shape")
        if spec is None:
            raise NodeError("Reshape needs a shape")
    else:
        spec = tuple(int(v) for v in cv.const(node.input(1), "shape").array.reshape(-1))
    shape = reshape_target(ref.shape, spec, bool(node.attr("allowzero", 0)))
    cv.set_ref(node.outputs[0], reshaped(ref, shape))


@handles("Flatten")
def _flatten(cv: Converter, node: Node) -> None:
    ref = cv.ref(node.inputs[0])
    cv.set_ref(node.outputs[0], reshaped(ref, flatten_shape(ref.shape, int(node.attr("axis", 1)))))


def _axes(cv: Converter, node: Node) -> tuple[int, ...] | None:
    if cv.opset < 13:
        return node.ints("axes")
    c = cv.maybe_const(node.input(1))
    if node.input(1) and c is None:
        raise NodeError("axes must be a constant")
    return None if c is None else tuple(int(v) for v in c.array.reshape(-1))


@handles("Squeeze")
def _squeeze(cv: Converter, node: Node) -> None:
    ref = cv.ref(node.inputs[0])
    cv.set_ref(node.outputs[0], reshaped(ref, squeeze_shape(ref.shape, _axes(cv, node))))


@handles("Unsqueeze")
def _unsqueeze(cv: Converter, node: Node) -> None:
    ref = cv.ref(node.inputs[0])
    axes = _axes(cv, node)
    if axes is None:
        raise NodeError("Unsqueeze needs axes")
    cv.set_ref(node.outputs[0], reshaped(ref, unsqueeze_shape(ref.shape, axes)))


@handles("Transpose")
def _transpose(cv: Converter, node: Node) -> None:
    ref = cv.ref(node.inputs[0])
    perm = node.ints("perm") or tuple(reversed(range(len(ref.shape))))
    cv.set_ref(node.outputs[0], transposed(ref, perm))


def _box_of(cv: Converter, node: Node, ref: Ref, base_shape: Shape, picked: np.ndarray, k: int = 0) -> None:
    """Output ``k`` of ``node`` is the part ``picked`` (base positions, shaped like the output)
    of view ``ref``: a view of the base if nothing is cut, else of a SLICE layer of the box."""
    name = node.outputs[k]
    coords = np.unravel_index(picked.reshape(-1), base_shape)
    lo = [int(a.min()) for a in coords]
    hi = [int(a.max()) + 1 for a in coords]
    box = tuple(b - a for a, b in zip(lo, hi))
    if lo[0] != 0 or hi[0] != base_shape[0] or picked.size != math.prod(box):
        raise NodeError(f"{node.op} output {name!r} is not a box of channels, rows and columns of feature map "
                        f"{ref.base!r} {base_shape}; memplan slices C, H and W with step 1")
    if box == base_shape:  # nothing is cut: the view reorders at most
        flat = picked.reshape(-1)
        cv.set_ref(name, Ref(ref.base, picked.shape, None if np.array_equal(flat, np.arange(flat.size)) else picked))
        return
    attrs = SliceAttrs((lo[1], hi[1]), (lo[2], hi[2]), (lo[3], hi[3]))
    inner = np.ravel_multi_index(tuple(a - b for a, b in zip(coords, lo)), box).reshape(picked.shape)
    simple = np.array_equal(inner.reshape(-1), np.arange(inner.size))
    layer_node = node if k == 0 else Node(f"{node.id}:{k}", node.op, node.inputs, (name,), node.attrs)
    cv.emit(layer_node, OpKind.SLICE, [ref.base], attrs, box,  # type: ignore[arg-type]
            like=Ref(name, picked.shape, None if simple else inner))


def _ints(cv: Converter, node: Node, i: int, what: str) -> tuple[int, ...] | None:
    name = node.input(i)
    return None if name is None else tuple(int(v) for v in cv.const(name, what).array.reshape(-1))


@handles("Slice")
def _slice(cv: Converter, node: Node) -> None:
    ref, base_shape = cv.view(node.inputs[0])
    rank = len(ref.shape)
    if cv.opset < 10:
        starts, ends, axes, steps = node.ints("starts"), node.ints("ends"), node.ints("axes"), None
    else:
        starts, ends = _ints(cv, node, 1, "starts"), _ints(cv, node, 2, "ends")
        axes, steps = _ints(cv, node, 3, "axes"), _ints(cv, node, 4, "steps")
    if starts is None or ends is None or len(starts) != len(ends):
        raise NodeError("Slice needs starts and ends of one length")
    axes = axes if axes is not None else tuple(range(len(starts)))
    if steps is not None and any(s != 1 for s in steps):
        raise NodeError(f"Slice steps {steps} are not supported; memplan slices with step 1")
    index: list[slice] = [slice(None)] * rank
    for start, end, axis in zip(starts, ends, axes, strict=True):
        a = normalize_axis(axis, rank)
        d = ref.shape[a]
        lo, hi = (min(max(v + d if v < 0 else v, 0), d) for v in (start, end))
        if hi <= lo:
            raise NodeError(f"Slice of axis {a} from {start} to {end} is empty")
        index[a] = slice(lo, hi)
    _box_of(cv, node, ref, base_shape, positions(ref)[tuple(index)])


@handles("Split")
def _split(cv: Converter, node: Node) -> None:
    ref, base_shape = cv.view(node.inputs[0])
    rank = len(ref.shape)
    axis = normalize_axis(int(node.attr("axis", 0)), rank)
    d = ref.shape[axis]
    sizes = node.ints("split") if cv.opset < 13 else _ints(cv, node, 1, "split")
    parts = len(node.outputs)
    if sizes is None and node.attr("num_outputs") is not None:  # opset 18: the last part may be smaller
        chunk = math.ceil(d / parts)
        sizes = (chunk,) * (parts - 1) + (d - chunk * (parts - 1),)
    elif sizes is None:
        if d % parts:
            raise NodeError(f"Split of {d} into {parts} equal parts")
        sizes = (d // parts,) * parts
    if len(sizes) != parts or sum(sizes) != d or min(sizes) < 1:
        raise NodeError(f"Split sizes {sizes} do not cut {d} into {parts} non-empty parts")
    pos = positions(ref)
    start = 0
    for k, (name, size) in enumerate(zip(node.outputs, sizes)):
        if name and (cv.consumers(name) or cv.is_model_output(name)):
            index: list[slice] = [slice(None)] * rank
            index[axis] = slice(start, start + size)
            _box_of(cv, node, ref, base_shape, pos[tuple(index)], k)
        start += size


@handles("Cast")
def _cast(cv: Converter, node: Node) -> None:
    ref = cv.ref(node.inputs[0])
    src, dst = cv.value_dtype(node.inputs[0]), cv.value_dtype(node.outputs[0])
    if src != dst:
        raise NodeError(f"a cast of a feature map from {src} to {dst} is not supported")
    cv.set_ref(node.outputs[0], ref)


@handles("Shape", "Size")
def _shape_of(cv: Converter, node: Node) -> None:
    ref = cv.ref(node.inputs[0])
    if node.op == "Size":
        value = np.asarray(ref.numel, dtype=np.int64)
    else:
        value = np.asarray(ref.shape[node.attr("start", 0):node.attr("end", None)], dtype=np.int64)
    cv.consts[node.outputs[0]] = Const.of(value)


# ---------------------------------------------------------------------------------- arithmetic
def affine(cv: Converter, node: Node, x: str, scale: np.ndarray | float, shift: np.ndarray | float) -> None:
    """Emit a per-channel affine ``scale * x + shift`` (constants broadcast against x)."""
    ref, base_shape = cv.view(x)
    s = per_channel(ref, base_shape, np.asarray(scale, dtype=np.float64))
    t = per_channel(ref, base_shape, np.asarray(shift, dtype=np.float64))
    if s is None or t is None:
        raise NodeError(
            f"its constant operand varies along N, H or W of the feature map {base_shape}; memplan folds only "
            "per-channel or scalar constants (a per-channel affine)"
        )
    cv.emit(node, Pseudo.AFFINE, [ref.base], AffineAttrs(s, t), base_shape, like=ref)


#: ONNX operators of two (Add, Sum, Max, Min: or more) feature maps and their IR op
_FMAP_OPS = {"Add": OpKind.ADD, "Sum": OpKind.ADD, "Sub": OpKind.SUB, "Mul": OpKind.MUL, "Max": OpKind.MAX,
             "Min": OpKind.MIN}


def _broadcast_view(lead: Ref, lead_base: Shape, ref: Ref, base_shape: Shape, target: tuple[int, ...]) -> bool:
    """Whether ``ref`` broadcast to ``target`` reads, for each element of ``lead``'s base, the
    element of its own base that IR broadcasting (size-1 C, H, W of ``base_shape``) reads."""
    if base_shape[0] != lead_base[0] or any(base_shape[a] not in (1, lead_base[a]) for a in (1, 2, 3)):
        return False
    src = positions(ref)
    src = np.broadcast_to(src.reshape((1,) * (len(target) - src.ndim) + src.shape), target)
    reads = np.empty(math.prod(lead_base), dtype=np.int64)
    reads[positions(lead).reshape(-1)] = src.reshape(-1)
    own = np.arange(math.prod(base_shape), dtype=np.int64).reshape(base_shape)
    return bool(np.array_equal(reads, np.broadcast_to(own, lead_base).reshape(-1)))


def _elementwise(cv: Converter, node: Node, op: OpKind, names: list[str]) -> None:
    """An elementwise layer of feature maps. The inputs may be views (e.g. NHWC transposes)
    as long as, seen from the base of an input of the full output shape, every input is its
    own base broadcast over size-1 C, H or W (a squeeze-excite scale ``(N, C, 1, 1)``)."""
    views = [cv.view(n) for n in names]
    if len(names) == 1:
        cv.set_ref(node.outputs[0], views[0][0])
        return
    try:
        target = tuple(np.broadcast_shapes(*(r.shape for r, _ in views)))
    except ValueError:
        raise NodeError(f"input shapes {[r.shape for r, _ in views]} do not broadcast") from None
    lead, lead_base = next(((r, b) for r, b in views if r.shape == target), views[0])
    if lead.shape == target and all(_broadcast_view(lead, lead_base, r, b, target) for r, b in views):
        cv.emit(node, op, [r.base for r, _ in views], NoAttrs(), lead_base, like=lead)
        return
    maps = [cv.fmap(n) for n in names]  # plain NCHW maps (or channel shuffles of them)
    try:
        out = infer_output_shape(op, NoAttrs(), tuple(s for _, s in maps))
    except ValueError as exc:
        raise NodeError(f"{exc}; memplan broadcasts feature maps only over size-1 C, H or W") from None
    cv.emit(node, op, [b for b, _ in maps], NoAttrs(), out)


def _extremum_clip(cv: Converter, node: Node, x: str, c: np.ndarray) -> None:
    """Max / Min of a feature map and a scalar constant: a Clip activation."""
    if c.size != 1:
        raise NodeError(f"{node.op} of a feature map and a non-scalar constant {c.shape} is not supported")
    bound = float(c.reshape(-1)[0])
    lo, hi = (bound, math.inf) if node.op == "Max" else (-math.inf, bound)
    act = Activation(ActKind.RELU) if (lo, hi) == (0.0, math.inf) else Activation(ActKind.CLIP, (lo, hi))
    _emit_activation(cv, node, x, act)


@handles("Add", "Sum", "Sub", "Mul", "Div", "Max", "Min")
def _arithmetic(cv: Converter, node: Node) -> None:
    names = [n for n in node.inputs if n]
    maps = [n for n in names if n not in cv.consts]
    if _apply_gate(cv, node, names):
        return
    if len(maps) == len(names):
        if node.op not in _FMAP_OPS:
            raise NodeError(f"{node.op} of two feature maps is not supported; memplan supports Add, Sum, Sub, Mul, "
                            "Max and Min of feature maps, and Div of a feature map by a per-channel constant")
        _elementwise(cv, node, _FMAP_OPS[node.op], names)
        return
    if len(names) != 2:
        raise NodeError(f"{node.op} mixing constants and feature maps of more than two inputs is not supported")
    x = maps[0]
    c = cv.float_array(cv.consts[names[1] if names[0] == x else names[0]]).astype(np.float64)
    x_first = names[0] == x
    if node.op == "Add" and c.size == 1 and c.reshape(-1)[0] == 3.0 and _hard_pattern(cv, node, x):
        return
    if node.op in ("Max", "Min"):
        _extremum_clip(cv, node, x, c)
    elif node.op in ("Add", "Sum"):
        affine(cv, node, x, 1.0, c)
    elif node.op == "Sub" and x_first:
        affine(cv, node, x, 1.0, -c)
    elif node.op == "Sub":
        affine(cv, node, x, -1.0, c)
    elif node.op == "Mul":
        affine(cv, node, x, c, 0.0)
    elif x_first:
        affine(cv, node, x, 1.0 / c, 0.0)
    else:
        raise NodeError("dividing a constant by a feature map is not supported")


@handles("BatchNormalization")
def _batch_norm(cv: Converter, node: Node) -> None:
    if int(node.attr("training_mode", 0)):
        raise NodeError("training_mode=1 is not inference; export the model in eval mode")
    gamma, beta, mean, var = (cv.float_array(cv.const(node.input(i), what)).astype(np.float64)
                              for i, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
    eps = float(node.attr("epsilon", 1e-5))
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    ref = cv.ref(node.inputs[0])
    channel_shape = (1, -1) + (1,) * (len(ref.shape) - 2)
    affine(cv, node, node.inputs[0], scale.reshape(channel_shape), shift.reshape(channel_shape))


# ---------------------------------------------------------------------------------- activations
def _scalar(cv: Converter, name: str | None, default: float) -> float:
    c = cv.maybe_const(name)
    if name and c is None:
        raise NodeError(f"{name!r} must be a constant")
    return default if c is None else float(np.asarray(c.array, dtype=np.float64).reshape(-1)[0])


def _clip(cv: Converter, node: Node) -> Activation:
    if cv.opset < 11:
        lo, hi = float(node.attr("min", -math.inf)), float(node.attr("max", math.inf))
    else:
        lo, hi = _scalar(cv, node.input(1), -math.inf), _scalar(cv, node.input(2), math.inf)
    if lo == 0.0 and hi == math.inf:
        return Activation(ActKind.RELU)
    return Activation(ActKind.CLIP, (lo, hi))


def _prelu(cv: Converter, node: Node) -> Activation:
    """One slope: LeakyRelu; a slope per channel (broadcast against the input view): PRelu."""
    slope = cv.float_array(cv.const(node.input(1), "slope")).astype(np.float64)
    if np.all(slope == slope.reshape(-1)[0]):
        return Activation(ActKind.LEAKY_RELU, (float(slope.reshape(-1)[0]),))
    ref, base_shape = cv.view(node.inputs[0])
    per = per_channel(ref, base_shape, slope)
    if per is None:
        raise NodeError(f"PRelu slopes of shape {slope.shape} vary along N, H or W of {base_shape}; "
                        "memplan supports one slope or one per channel")
    return Activation(ActKind.PRELU, tuple(float(v) for v in per))


def _activation(cv: Converter, node: Node) -> Activation:
    op = node.op
    if op == "Relu":
        return Activation(ActKind.RELU)
    if op == "Clip":
        return _clip(cv, node)
    if op == "LeakyRelu":
        return Activation(ActKind.LEAKY_RELU, (float(node.attr("alpha", 0.01)),))
    if op == "PRelu":
        return _prelu(cv, node)
    if op == "HardSigmoid":
        return Activation(ActKind.HARD_SIGMOID, (float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))))
    simple = {"Sigmoid": ActKind.SIGMOID, "HardSwish": ActKind.HARD_SWISH, "Tanh": ActKind.TANH}
    return Activation(simple[op])


def _sole_consumer(cv: Converter, name: str) -> Node | None:
    """The only node reading ``name`` (None if several do, or it is a model output)."""
    users = cv.consumers(name)
    return users[0] if len(users) == 1 and not cv.is_model_output(name) else None


def _gate_kind(cv: Converter, node: Node) -> ActKind | None:
    """SiLU / HardSwish when this Sigmoid / HardSigmoid only multiplies its own input."""
    out = node.outputs[0]
    mul = _sole_consumer(cv, out)
    if mul is None or mul.op != "Mul" or sorted(mul.inputs) != sorted((out, node.inputs[0])):
        return None
    if node.op == "Sigmoid":
        return ActKind.SILU
    alpha, beta = float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))
    return ActKind.HARD_SWISH if math.isclose(alpha, 1 / 6, rel_tol=1e-5) and beta == 0.5 else None


def _scalar_const(cv: Converter, name: str | None) -> float | None:
    """A scalar constant's value, looking ahead at a Constant node not converted yet (patterns
    are matched at their first node); None if ``name`` is not a scalar constant."""
    if not name:
        return None
    c = cv.maybe_const(name)
    if c is not None:
        array = np.asarray(c.array)
    else:
        node = next((n for n in cv.nodes if n.op == "Constant" and n.outputs[0] == name), None)
        if node is None:
            return None
        array = np.asarray(node.attr("value", node.attr("value_float")))
    return float(array.astype(np.float64).reshape(-1)[0]) if array.size == 1 else None


def _is_relu6(cv: Converter, node: Node) -> bool:
    if node.op != "Clip":
        return False
    if cv.opset < 11:
        return node.attr("min") == 0.0 and node.attr("max") == 6.0
    return _scalar_const(cv, node.input(1)) == 0.0 and _scalar_const(cv, node.input(2)) == 6.0


def _is_sixth(cv: Converter, node: Node, value: str) -> bool:
    """Whether ``node`` is ``value / 6`` or ``value * (1/6)``."""
    if node.op == "Div" and node.inputs[0] == value:
        k = _scalar_const(cv, node.inputs[1])
        return k is not None and math.isclose(k, 6.0, rel_tol=1e-5)
    if node.op == "Mul" and len(node.inputs) == 2 and value in node.inputs:
        k = _scalar_const(cv, node.inputs[1] if node.inputs[0] == value else node.inputs[0])
        return k is not None and math.isclose(k, 1 / 6, rel_tol=1e-5)
    return False


def _hard_pattern(cv: Converter, node: Node, x: str) -> bool:
    """Record ``node`` = ``x + 3`` as the start of a decomposed hard activation:
    ``x * relu6(x + 3) / 6`` (or ``* (1/6)``, or ``x * (relu6(x + 3) / 6)``) is HardSwish,
    ``relu6(x + 3) / 6`` alone HardSigmoid(1/6, 1/2). The values inside the pattern become
    gates and its last node emits the activation."""
    clip = _sole_consumer(cv, node.outputs[0])
    if clip is None or not _is_relu6(cv, clip):
        return False
    relu6 = clip.outputs[0]
    step = _sole_consumer(cv, relu6)
    if step is None:
        return False
    if step.op == "Mul" and sorted(step.inputs) == sorted((relu6, x)):  # x * relu6(x + 3), then / 6
        last = _sole_consumer(cv, step.outputs[0])
        if last is None or not _is_sixth(cv, last, step.outputs[0]):
            return False
        inner, act = [node, clip, step], Activation(ActKind.HARD_SWISH)
    elif _is_sixth(cv, step, relu6):  # relu6(x + 3) / 6, perhaps times x
        last = _sole_consumer(cv, step.outputs[0])
        if last is not None and last.op == "Mul" and sorted(last.inputs) == sorted((step.outputs[0], x)):
            inner, act = [node, clip, step], Activation(ActKind.HARD_SWISH)
        else:
            inner, act = [node, clip], Activation(ActKind.HARD_SIGMOID, (1 / 6, 0.5))
    else:
        return False
    for n in inner:
        cv.gates[n.outputs[0]] = (x, act)
    return True


def _apply_gate(cv: Converter, node: Node, names: list[str]) -> bool:
    """Inside an activation pattern: a node whose output is a gate does nothing; the node
    reading the last gate applies the pattern's activation to the gated input."""
    if node.outputs[0] in cv.gates:
        return True
    gate = next((n for n in names if n in cv.gates), None)
    if gate is None:
        return False
    x, act = cv.gates[gate]
    _emit_activation(cv, node, x, act)
    return True


def _emit_activation(cv: Converter, node: Node, x: str, act: Activation) -> None:
    ref, base_shape = cv.view(x)
    cv.emit(node, Pseudo.ACT, [ref.base], None, base_shape, like=ref, activation=act)


@handles("Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh")
def _act(cv: Converter, node: Node) -> None:
    if _apply_gate(cv, node, [node.inputs[0]]):
        return
    if node.op in ("Sigmoid", "HardSigmoid"):
        kind = _gate_kind(cv, node)
        if kind is not None:
            cv.gates[node.outputs[0]] = (node.inputs[0], Activation(kind))
            return
    _emit_activation(cv, node, node.inputs[0], _activation(cv, node))


# ---------------------------------------------------------------------------------- pad
@handles("Pad")
def _pad(cv: Converter, node: Node) -> None:
    mode = node.attr("mode", "constant")
    if mode != "constant":
        raise NodeError(f"Pad mode {mode!r} is not supported; memplan folds zero (constant) padding only")
    nhwc = _nhwc_pad(cv, node)
    ref, base_shape = cv.view(nhwc[0] if nhwc else node.inputs[0])
    if cv.opset < 11:
        pads = node.ints("pads") or node.ints("paddings")
        value = float(node.attr("value", 0.0))
    else:
        pads = tuple(int(v) for v in cv.const(node.input(1), "pads").array.reshape(-1))
        value = _scalar(cv, node.input(2), 0.0)
        axes_const = cv.maybe_const(node.input(3))
        if axes_const is not None:  # opset 18: pads only for the listed axes
            axes = [int(a) % 4 for a in axes_const.array.reshape(-1)]
            full = [0] * 8
            for i, a in enumerate(axes):
                full[a], full[a + 4] = pads[i], pads[i + len(axes)]
            pads = tuple(full)
    if pads is None or len(pads) != 8 or ref.shape != base_shape or ref.index is not None:
        raise NodeError("memplan folds Pad of a 4-D NCHW feature map only")
    if value != 0.0:
        raise NodeError(f"padding with {value} is not supported; memplan folds zero padding only")
    if min(pads) < 0:
        raise NodeError("negative pads (cropping) are not supported")
    if nhwc and len(pads) == 8:  # pads of (N, H, W, C) -> of (N, C, H, W)
        pads = (pads[0], pads[3], pads[1], pads[2], pads[4], pads[7], pads[5], pads[6])
    if pads[0] or pads[4]:
        raise NodeError("padding the batch is not supported")
    spatial = (pads[2], pads[3], pads[6], pads[7])
    if not any(pads):
        cv.set_ref(node.outputs[0], ref)
        return
    n, c, h, w = base_shape
    out_shape = (n, c + pads[1] + pads[5], h + spatial[0] + spatial[2], w + spatial[1] + spatial[3])
    users = nhwc[1] if nhwc else cv.consumers(node.outputs[0])
    # the NHWC view of the padded map, which the Transpose after the Pad makes NCHW again
    like = transposed(Ref(node.outputs[0], out_shape), (0, 2, 3, 1)) if nhwc else None
    if pads[1] or pads[5] or cv.is_model_output(node.outputs[0]) or not users or any(
            u.op not in _FOLDS_PAD for u in users):
        # channel padding (a residual's channel expansion), or nothing to fold into: a layer
        cv.emit(node, OpKind.PAD, [ref.base], ZeroPadAttrs((pads[1], pads[5]), spatial), out_shape, like=like)
        return
    cv.emit(node, Pseudo.PAD, [ref.base], PadAttrs(spatial), out_shape, like=like)


def _nhwc_pad(cv: Converter, node: Node) -> tuple[str, list[Node]] | None:
    """A Pad of NHWC data (tf2onnx pads a model input before its NHWC->NCHW Transpose): when
    the Pad's only reader is that Transpose and the transposed input is an NCHW map, the name of
    that NCHW view (reading it makes a pending model input NHWC) and the Transpose's readers."""
    raw = cv.ref(node.inputs[0])
    user = _sole_consumer(cv, node.outputs[0])
    if len(raw.shape) != 4 or user is None or user.op != "Transpose" or user.ints("perm") != (0, 3, 1, 2):
        return None
    name = f"{node.outputs[0]}~nchw_source"
    cv.set_ref(name, transposed(raw, (0, 3, 1, 2)))
    ref, base_shape = cv.view(name)
    if ref.index is not None or ref.shape != base_shape:
        return None
    return name, cv.consumers(user.outputs[0])


#: ONNX operators a spatial zero Pad folds into (see memplan.frontend.normalize.fold_pads)
_FOLDS_PAD = frozenset({"Conv", "MaxPool", "AveragePool"})

