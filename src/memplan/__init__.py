"""memplan: one CP-SAT model for fusion, tiling, residency, filters and SRAM offsets of CNN
inference on edge NPUs, with a bit-exact tiled executor that proves the plan."""

__version__ = "0.1.0"
