"""Firmware output: a plan as C99 tables for the portable reference runtime.

* :func:`export_c` - ``memplan export MODEL PLAN --c DIR``: the plan's tables
  (``memplan_plan.h/.c``), the weight blob, the seeded input and the expected output, the
  runtime sources, a ``Makefile`` and an example ``main.c`` that runs the plan and checks
  every output byte and counter;
* :mod:`memplan.firmware.tflm_offsets` - TensorFlow Lite Micro's offline memory plan
  (``memplan export --tflm-offsets``) from an untiled memory plan;
* :func:`weight_blob` - the weight blob the plan's memory map
  (:func:`memplan.plan.memory_map.memory_map`) lays out;
* the runtime itself is package data: ``memplan/firmware/runtime/`` (:func:`runtime_dir`),
  described in its README.md.
"""

from memplan.firmware.export import (
    RUNTIME_FILES,
    check_exportable,
    check_target,
    export_c,
    plan_sources,
    runtime_dir,
    weight_blob,
)

__all__ = ["RUNTIME_FILES", "check_exportable", "check_target", "export_c", "plan_sources",
           "runtime_dir", "weight_blob"]
