"""memplan: one CP-SAT model for fusion, tiling, residency, filters and SRAM offsets of CNN
inference on edge NPUs, with a bit-exact tiled executor that proves the plan."""

# The one place the version is written. pyproject.toml reads it from here (setuptools
# `dynamic = ["version"]`, attr memplan.__version__) rather than the other way round
# (importlib.metadata), because installed metadata can be stale or absent: an editable install
# keeps the metadata of the day it was installed, and a checkout run with PYTHONPATH=src has
# none; this constant is always the code that is running.
__version__ = "0.1.0"
