"""Execution: float64 reference, int8 quantisation, region kernels and the untiled reference.

* :func:`run_float` - float64 interpreter with ONNX semantics (calibration, onnxruntime checks);
* :func:`quantize_graph` - a frozen :class:`QuantizedGraph` (parameters, integer weights,
  requantisation constants, activation tables);
* :func:`run_layer` - the integer kernel of one layer on an output region, from input
  :class:`Tile` s; :func:`required_input_regions` - what it reads;
* :func:`run_reference` - the whole graph, untiled, in int8;
* :func:`execute_plan` - a plan's command stream on simulated SRAM and DRAM;
  :func:`verify_plan` / :func:`verify_document` - that run held to the reference and the plan's totals.
"""

from memplan.execute.float_ref import run_float, run_float_detailed
from memplan.execute.kernels import MissingInputError, Tile, required_input_regions, run_layer
from memplan.execute.quantize import (
    Calibration,
    QLayer,
    QParams,
    QuantizedGraph,
    Requant,
    calibration_inputs,
    quantize_graph,
    substitute_constant_weights,
)
from memplan.execute.reference import run_reference, run_reference_float
from memplan.execute.tiled import Counts, TiledRun, execute_plan
from memplan.execute.verify import Prepared, VerifyReport, prepare, verify_document, verify_plan

__all__ = [
    "Calibration", "MissingInputError", "QLayer", "QParams", "QuantizedGraph", "Requant", "Tile",
    "calibration_inputs", "quantize_graph", "required_input_regions", "run_float", "run_float_detailed",
    "run_layer", "run_reference", "run_reference_float", "substitute_constant_weights",
    "Counts", "Prepared", "TiledRun", "VerifyReport", "execute_plan", "prepare", "verify_document", "verify_plan",
]
