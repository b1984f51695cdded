"""The model zoo: reference CNNs built in the IR with seeded random weights.

Each model follows its published architecture layer for layer, with batch normalisation folded
the way a deployment toolchain folds it: a BN right after a conv becomes that conv's bias, and
a BN that cannot be folded (DenseNet's pre-activation BN on a concatenation) becomes a
depthwise 1x1 conv with a bias, the IR's spelling of a per-channel affine. Weights are random
(He-normal, seeded), so the models are meant for planning and verification, not for accuracy.

ImageNet classifiers end in the fully connected logits without a softmax, as torchvision's do;
the MLPerf Tiny models (``resnet8``, ``dscnn``) end in a softmax, as their reference models do.

``build_zoo_model(name, resolution=None, seed=0, **params)`` is deterministic: the same
arguments always give the same graph and the same weights.

This module builds IR graphs only; exporting them to ONNX is :mod:`memplan.frontend.export`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from memplan.config import MAX_SEED
from memplan.errors import UsageError
from memplan.ir.builder import RELU, RELU6, GraphBuilder
from memplan.ir.graph import Graph
from memplan.ir.ops import ConvAttrs, OpKind, Pads, ceil_div

ParamValue = int | str


@dataclass(frozen=True)
class ZooEntry:
    """One model of the zoo.

    ``resolution`` is the default input height and width (None: the model's input size is fixed
    or set by its own parameters). ``params`` maps each accepted parameter to its default; an
    integer default makes the parameter a positive integer, a string default makes it one of
    ``choices[name]``. ``build(resolution, seed, **params)`` returns the checked graph."""

    name: str
    description: str
    resolution: int | None
    build: Callable[..., Graph]
    params: Mapping[str, ParamValue] = field(default_factory=lambda: MappingProxyType({}))
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))


#: the largest input height or width a zoo model takes (the frontend plans inputs of up to
#: 64 Mi elements: 3x4096x4096)
MAX_RESOLUTION = 4096
#: the largest value of each integer parameter (others: 1 << 20)
_PARAM_MAX: Mapping[str, int] = MappingProxyType(
    {"classes": 25_000, "levels": 8, "base": 1024, "n": 1000, "h": MAX_RESOLUTION, "w": MAX_RESOLUTION, "c": 4096})
#: the most weights a zoo model may have (ResNet-50 has 25.6M): the builder draws them all
MAX_WEIGHTS = 1 << 27


def _check_weights(model: str, count: int, fix: str) -> None:
    if count > MAX_WEIGHTS:
        raise UsageError(f"zoo model {model} would have about {count / 1e6:,.0f}M weights, more than the "
                         f"{MAX_WEIGHTS / 1e6:,.0f}M memplan builds; {fix}")


# ---------------------------------------------------------------------------- shared pieces
def _check_resolution(model: str, resolution: int, minimum: int, multiple: int = 1) -> None:
    if resolution < minimum or resolution % multiple:
        rule = f"at least {minimum}" + (f" and a multiple of {multiple}" if multiple > 1 else "")
        raise UsageError(f"zoo model {model} needs a resolution {rule}, got {resolution}")


def _tf_same_pads(in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int]) -> Pads:
    """TensorFlow/Keras ``padding='same'``: output ceil(in/stride), extra padding at the end."""
    pads: list[tuple[int, int]] = []
    for n, k, s in zip(in_hw, kernel, stride):
        total = max((ceil_div(n, s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return (top, left, bottom, right)


def _hw(b: GraphBuilder, x: str) -> tuple[int, int]:
    shape = b.shape(x)
    return (shape[2], shape[3])


def _bn_relu(b: GraphBuilder, x: str, name: str) -> str:
    """A standalone BatchNorm + ReLU: a depthwise 1x1 conv (per-channel scale) with bias and ReLU.

    The scale is drawn near 1 (a trained BN's typical range), the shift near 0."""
    c = b.shape(x)[1]
    scale = b.rng.uniform(0.5, 1.5, size=(c, 1, 1, 1)).astype(np.float32)
    shift = b.rng.normal(0.0, 0.05, size=(c,)).astype(np.float32)
    attrs = ConvAttrs(kernel=(1, 1), groups=c)
    return b.add_layer(OpKind.CONV, (x,), attrs, c, scale, shift, RELU, name)


# ---------------------------------------------------------------------------- ResNet-18/50
def _basic_block(b: GraphBuilder, x: str, width: int, stride: int, prefix: str) -> str:
    """torchvision BasicBlock: 3x3 (stride) - 3x3, 1x1/stride projection when the shape changes."""
    in_c = b.shape(x)[1]
    y = b.conv(x, width, 3, stride, name=f"{prefix}.conv1")
    y = b.conv(y, width, 3, 1, activation=None, name=f"{prefix}.conv2")
    shortcut = x
    if stride != 1 or in_c != width:
        shortcut = b.conv(x, width, 1, stride, activation=None, name=f"{prefix}.downsample")
    return b.add(y, shortcut, activation=RELU, name=f"{prefix}.add")


def _bottleneck(b: GraphBuilder, x: str, width: int, stride: int, prefix: str) -> str:
    """torchvision Bottleneck (ResNet v1.5): 1x1 - 3x3 (stride) - 1x1 to 4x width."""
    in_c, out_c = b.shape(x)[1], 4 * width
    y = b.conv(x, width, 1, name=f"{prefix}.conv1")
    y = b.conv(y, width, 3, stride, name=f"{prefix}.conv2")
    y = b.conv(y, out_c, 1, activation=None, name=f"{prefix}.conv3")
    shortcut = x
    if stride != 1 or in_c != out_c:
        shortcut = b.conv(x, out_c, 1, stride, activation=None, name=f"{prefix}.downsample")
    return b.add(y, shortcut, activation=RELU, name=f"{prefix}.add")


Block = Callable[[GraphBuilder, str, int, int, str], str]


def _resnet(name: str, block: Block, depths: Sequence[int], resolution: int, seed: int, classes: int) -> Graph:
    _check_resolution(name, resolution, 32)
    b = GraphBuilder(name, seed)
    x = b.input((1, 3, resolution, resolution))
    x = b.conv(x, 64, 7, 2, name="conv1")
    x = b.max_pool(x, 3, 2, pads=(1, 1, 1, 1), name="maxpool")
    for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), depths), start=1):
        for i in range(depth):
            stride = 2 if stage > 1 and i == 0 else 1
            x = block(b, x, width, stride, f"layer{stage}.{i}")
    x = b.global_avg_pool(x, name="avgpool")
    return b.build(b.fc(x, classes, name="fc"))


def _resnet18(resolution: int, seed: int, classes: int) -> Graph:
    return _resnet("resnet18", _basic_block, (2, 2, 2, 2), resolution, seed, classes)


def _resnet50(resolution: int, seed: int, classes: int) -> Graph:
    return _resnet("resnet50", _bottleneck, (3, 4, 6, 3), resolution, seed, classes)


# ---------------------------------------------------------------------------- MobileNetV2
#: (expansion t, output channels c, repeats n, first stride s), width multiplier 1.0
_MOBILENETV2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _inverted_residual(b: GraphBuilder, x: str, out_c: int, stride: int, expand: int, prefix: str) -> str:
    """Expand 1x1 (ReLU6) - depthwise 3x3 (ReLU6) - linear project 1x1, residual if shapes match."""
    in_c = b.shape(x)[1]
    y = x
    if expand != 1:
        y = b.conv(y, in_c * expand, 1, activation=RELU6, name=f"{prefix}.expand")
    y = b.depthwise(y, 3, stride, activation=RELU6, name=f"{prefix}.dw")
    y = b.conv(y, out_c, 1, activation=None, name=f"{prefix}.project")
    if stride == 1 and in_c == out_c:
        y = b.add(x, y, name=f"{prefix}.add")
    return y


def _mobilenetv2(resolution: int, seed: int, classes: int) -> Graph:
    _check_resolution("mobilenetv2", resolution, 32)
    b = GraphBuilder("mobilenetv2", seed)
    x = b.input((1, 3, resolution, resolution))
    x = b.conv(x, 32, 3, 2, activation=RELU6, name="features.0")
    index = 1
    for expand, out_c, repeats, first_stride in _MOBILENETV2_STAGES:
        for i in range(repeats):
            x = _inverted_residual(b, x, out_c, first_stride if i == 0 else 1, expand, f"features.{index}")
            index += 1
    x = b.conv(x, 1280, 1, activation=RELU6, name=f"features.{index}")
    x = b.global_avg_pool(x, name="avgpool")
    return b.build(b.fc(x, classes, name="classifier"))


# ---------------------------------------------------------------------------- DenseNet-121
def _densenet121(resolution: int, seed: int, classes: int, growth: int = 32, bn_size: int = 4) -> Graph:
    """torchvision DenseNet-121. Each dense layer reads the concatenation of all earlier features
    of its block (one CONCAT per layer, as torchvision's ``torch.cat(prev_features, 1)``)."""
    _check_resolution("densenet121", resolution, 32)
    b = GraphBuilder("densenet121", seed)
    x = b.input((1, 3, resolution, resolution))
    x = b.conv(x, 64, 7, 2, name="features.conv0")  # norm0 + relu0 folded
    x = b.max_pool(x, 3, 2, pads=(1, 1, 1, 1), name="features.pool0")
    blocks = (6, 12, 24, 16)
    for block, depth in enumerate(blocks, start=1):
        features = [x]
        for i in range(1, depth + 1):
            prefix = f"features.denseblock{block}.denselayer{i}"
            y = features[0] if len(features) == 1 else b.concat(*features, name=f"{prefix}.cat")
            y = _bn_relu(b, y, f"{prefix}.norm1")
            y = b.conv(y, bn_size * growth, 1, name=f"{prefix}.conv1")  # norm2 + relu2 folded
            y = b.conv(y, growth, 3, activation=None, bias=False, name=f"{prefix}.conv2")
            features.append(y)
        x = b.concat(*features, name=f"features.denseblock{block}.cat")
        if block < len(blocks):
            prefix = f"features.transition{block}"
            y = _bn_relu(b, x, f"{prefix}.norm")
            y = b.conv(y, b.shape(x)[1] // 2, 1, activation=None, bias=False, name=f"{prefix}.conv")
            x = b.avg_pool(y, 2, 2, name=f"{prefix}.pool")
    x = _bn_relu(b, x, "features.norm5")
    x = b.global_avg_pool(x, name="avgpool")
    return b.build(b.fc(x, classes, name="classifier"))


# ---------------------------------------------------------------------------- U-Net
def _residual_block(b: GraphBuilder, x: str, out_c: int, prefix: str) -> str:
    """3x3 conv (ReLU) - 3x3 conv, plus a 1x1 projection of the input, ReLU after the add."""
    y = b.conv(x, out_c, 3, name=f"{prefix}.conv1")
    y = b.conv(y, out_c, 3, activation=None, name=f"{prefix}.conv2")
    shortcut = b.conv(x, out_c, 1, activation=None, name=f"{prefix}.proj")
    return b.add(y, shortcut, activation=RELU, name=f"{prefix}.add")


def _unet(resolution: int, seed: int, levels: int, base: int, classes: int, up: str) -> Graph:
    """Residual U-Net. ``levels`` 2x2 max-pool downsamplings, level ``i`` runs at ``base * 2**i``
    channels and the bottleneck at ``base * 2**levels``. Upsampling halves the channels, either
    with a 2x2/2 ConvTranspose or with a 2x resize (nearest or bilinear) and a 3x3 conv; the
    decoder concatenates (skip, upsampled) and runs a residual block."""
    _check_resolution("unet", resolution, 2**levels, 2**levels)
    # the bottleneck and the top decoder level dominate: about 31 * (base * 2**levels)**2
    _check_weights("unet", 31 * (base << levels) ** 2, "lower base or levels")
    b = GraphBuilder("unet", seed)
    x = b.input((1, 3, resolution, resolution))
    skips: list[str] = []
    for level in range(levels):
        x = _residual_block(b, x, base << level, f"enc{level}")
        skips.append(x)
        x = b.max_pool(x, 2, name=f"enc{level}.pool")
    x = _residual_block(b, x, base << levels, "bottleneck")
    for level in reversed(range(levels)):
        out_c = base << level
        if up == "transpose":
            x = b.conv_transpose(x, out_c, 2, 2, activation=None, name=f"dec{level}.up")
        else:
            x = b.resize(x, 2, mode="nearest" if up == "nearest" else "linear", name=f"dec{level}.resize")
            x = b.conv(x, out_c, 3, activation=None, name=f"dec{level}.up")
        x = b.concat(skips[level], x, name=f"dec{level}.cat")
        x = _residual_block(b, x, out_c, f"dec{level}")
    return b.build(b.conv(x, classes, 1, activation=None, name="head"))


# ---------------------------------------------------------------------------- MLPerf Tiny
def _keras_conv(b: GraphBuilder, x: str, out_c: int, kernel: tuple[int, int], stride: int,
                name: str, groups: int = 1, relu: bool = True) -> str:
    """A Keras conv with ``padding='same'`` (TF's bottom/right-heavy padding)."""
    pads = _tf_same_pads(_hw(b, x), kernel, (stride, stride))
    return b.conv(x, out_c, kernel, stride, pads=pads, groups=groups,
                  activation=RELU if relu else None, name=name)


def _resnet8(resolution: int, seed: int, classes: int) -> Graph:
    """MLPerf Tiny image classification ResNet-8 (CIFAR-10): conv 16, three one-block stages
    (16, 32, 64; strides 1, 2, 2; 1x1 projection on the stride-2 ones), 8x8 average pool,
    dense, softmax."""
    _check_resolution("resnet8", resolution, 32)
    b = GraphBuilder("resnet8", seed)
    x = b.input((1, 3, resolution, resolution))
    x = _keras_conv(b, x, 16, (3, 3), 1, "conv1")
    for stage, (width, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        prefix = f"stage{stage}"
        y = _keras_conv(b, x, width, (3, 3), stride, f"{prefix}.conv1")
        y = _keras_conv(b, y, width, (3, 3), 1, f"{prefix}.conv2", relu=False)
        shortcut = x
        if stride != 1:
            shortcut = _keras_conv(b, x, width, (1, 1), stride, f"{prefix}.proj", relu=False)
        x = b.add(shortcut, y, activation=RELU, name=f"{prefix}.add")
    x = b.avg_pool(x, 8, 8, name="avgpool")
    x = b.fc(x, classes, name="fc")
    return b.build(b.softmax(x, name="softmax"))


def _dscnn(resolution: int | None, seed: int, classes: int) -> Graph:
    """MLPerf Tiny keyword spotting DS-CNN: 49x10 MFCC input, conv 64 10x4/2, four depthwise
    separable blocks (3x3 depthwise + 1x1 pointwise 64, each BN-folded with ReLU), average pool
    over the whole 25x5 map, dense, softmax."""
    if resolution is not None:
        raise UsageError("zoo model dscnn has a fixed 49x10 input: drop --resolution")
    b = GraphBuilder("dscnn", seed)
    x = b.input((1, 1, 49, 10))
    x = _keras_conv(b, x, 64, (10, 4), 2, "conv1")
    for i in range(1, 5):
        x = _keras_conv(b, x, 64, (3, 3), 1, f"block{i}.dw", groups=64)
        x = _keras_conv(b, x, 64, (1, 1), 1, f"block{i}.pw")
    x = b.global_avg_pool(x, name="avgpool")
    x = b.fc(x, classes, name="fc")
    return b.build(b.softmax(x, name="softmax"))


# ---------------------------------------------------------------------------- toy chain
def _toy_chain(resolution: int | None, seed: int, n: int, h: int, w: int, c: int) -> Graph:
    """Samsung's toy: ``n`` identical 3x3 convs (stride 1, same padding, ReLU) on an h x w x c map."""
    if resolution is not None:
        h = w = resolution
    _check_weights("toy_chain", n * 9 * c * c, "lower n or c")
    b = GraphBuilder("toy_chain", seed)
    x = b.input((1, c, h, w))
    for i in range(1, n + 1):
        x = b.conv(x, c, 3, 1, name=f"conv{i}")
    return b.build(x)


# ---------------------------------------------------------------------------- registry
def _entry(name: str, description: str, resolution: int | None, build: Callable[..., Graph],
           params: Mapping[str, ParamValue], choices: Mapping[str, tuple[str, ...]] | None = None) -> ZooEntry:
    return ZooEntry(name, description, resolution, build, MappingProxyType(dict(params)),
                    MappingProxyType(dict(choices or {})))


_UP_MODES = ("transpose", "nearest", "bilinear")

ZOO: Mapping[str, ZooEntry] = MappingProxyType({
    e.name: e
    for e in (
        _entry("resnet18", "ResNet-18 (torchvision), ImageNet, ~1.8 GMACs at 224", 224, _resnet18,
               {"classes": 1000}),
        _entry("resnet50", "ResNet-50 v1.5 (torchvision), ImageNet, ~4.1 GMACs at 224", 224, _resnet50,
               {"classes": 1000}),
        _entry("mobilenetv2", "MobileNetV2 1.0 (torchvision), ImageNet, ~300 MMACs at 224", 224,
               _mobilenetv2, {"classes": 1000}),
        _entry("densenet121", "DenseNet-121 (torchvision), ImageNet, ~2.9 GMACs at 224", 224,
               _densenet121, {"classes": 1000}),
        _entry("unet", "residual U-Net segmenter with concat skips (up=transpose|nearest|bilinear)", 256,
               _unet, {"levels": 4, "base": 32, "classes": 2, "up": "transpose"}, {"up": _UP_MODES}),
        _entry("resnet8", "MLPerf Tiny image classification ResNet-8, CIFAR-10 32x32", 32, _resnet8,
               {"classes": 10}),
        _entry("dscnn", "MLPerf Tiny keyword spotting DS-CNN, 49x10 MFCC input", None, _dscnn,
               {"classes": 12}),
        _entry("toy_chain", "n identical 3x3 convs on an h x w x c map (resolution sets h=w)", None,
               _toy_chain, {"n": 5, "h": 112, "w": 112, "c": 32}),
    )
})


def parse_zoo_params(specs: Sequence[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` strings (repeatable ``--param``) -> {KEY: VALUE}; values are checked and
    converted by :func:`build_zoo_model`, which knows each model's parameters."""
    params: dict[str, str] = {}
    for spec in specs or ():
        key, sep, value = spec.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier() or not value:
            raise UsageError(f"--param {spec!r} is not KEY=VALUE: write e.g. --param classes=10")
        if key in params:
            raise UsageError(f"--param {key} is given twice: keep one")
        params[key] = value
    return params


def _coerce_param(entry: ZooEntry, key: str, value: object) -> ParamValue:
    default = entry.params[key]
    if isinstance(default, int):
        parsed: int | None = None
        high = _PARAM_MAX.get(key, 1 << 20)
        if isinstance(value, int) and not isinstance(value, bool):
            parsed = value
        elif isinstance(value, str) and re.fullmatch(r"\+?[0-9]+", value.strip()):
            digits = value.strip().lstrip("+")
            parsed = int(digits) if len(digits) <= 18 else high + 1  # int() refuses 4300+ digits
        if parsed is None or parsed < 1:
            raise UsageError(f"parameter {key} of zoo model {entry.name} must be a positive integer, got {value!r}")
        if parsed > high:
            shown = str(value) if len(str(value)) <= 20 else f"{str(value)[:20]}..."
            raise UsageError(f"parameter {key} of zoo model {entry.name} must be at most {high:,}, got {shown}")
        return parsed
    allowed = entry.choices.get(key, ())
    if not isinstance(value, str) or value not in allowed:
        raise UsageError(f"parameter {key} of zoo model {entry.name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def build_zoo_model(name: str, resolution: int | None = None, seed: int = 0, **params: object) -> Graph:
    """Build zoo model ``name`` with seeded weights (same arguments -> identical graph and weights).

    ``resolution`` overrides the model's default input height=width; ``params`` are the model's
    parameters (ints or their decimal strings, see :data:`ZOO`). Raises
    :class:`memplan.errors.UsageError` for an unknown model, parameter or value."""
    entry = ZOO.get(name)
    if entry is None:
        raise UsageError(f"unknown zoo model {name!r}: choose one of {', '.join(ZOO)}")
    unknown = sorted(set(params) - set(entry.params))
    if unknown:
        valid = ", ".join(entry.params) or "none"
        raise UsageError(f"unknown parameter {unknown[0]!r} for zoo model {name}: valid parameters are {valid}")
    values = dict(entry.params)
    values.update({key: _coerce_param(entry, key, value) for key, value in params.items()})
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1):
        raise UsageError(f"resolution must be a positive integer, got {resolution!r}")
    if resolution is not None and resolution > MAX_RESOLUTION:
        raise UsageError(f"resolution must be at most {MAX_RESOLUTION:,}, got {resolution:,}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed must be an integer from 0 to {MAX_SEED:,}, got {seed!r}")
    return entry.build(resolution if resolution is not None else entry.resolution, seed, **values)
