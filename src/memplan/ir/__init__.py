"""Graph IR: frozen tensors, layers and graphs, and the per-op facts they share."""

from memplan.ir.check import check_graph
from memplan.ir.graph import DTYPE_BYTES, Graph, Layer, QuantParams, Role, Tensor
from memplan.ir.ops import (
    Activation,
    ActKind,
    ChannelShuffleAttrs,
    ConvAttrs,
    ConvTransposeAttrs,
    FullyConnectedAttrs,
    LRNAttrs,
    NoAttrs,
    OpKind,
    PoolAttrs,
    ResizeAttrs,
)

__all__ = [
    "ActKind", "Activation", "ChannelShuffleAttrs", "ConvAttrs", "ConvTransposeAttrs",
    "DTYPE_BYTES", "FullyConnectedAttrs", "Graph", "LRNAttrs", "Layer", "NoAttrs", "OpKind",
    "PoolAttrs", "QuantParams", "ResizeAttrs", "Role", "Tensor", "check_graph",
]
