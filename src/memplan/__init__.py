"""memplan: one CP-SAT model for fusion, tiling, residency, filters and SRAM offsets of CNN
inference on edge NPUs, with a bit-exact tiled executor that proves the plan."""

# The one place the version is written. pyproject.toml reads it from here (setuptools
# `dynamic = ["version"]`, attr memplan.__version__) rather than the other way round
# (importlib.metadata), because installed metadata can be stale or absent: an editable install
# keeps the metadata of the day it was installed, and a checkout run with PYTHONPATH=src has
# none; this constant is always the code that is running.
__version__ = "0.1.0"

# ---------------------------------------------------------------------------- the Python API
# memplan.api, imported on first use so that `import memplan` stays fast (no numpy, onnx or
# ortools until a function needs them).
import sys as _sys
import types as _types
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from memplan.api import Plan, Result, Verification, hardware, load_model, load_plan, solve, verify

__all__ = ["Plan", "Result", "Verification", "__version__", "hardware", "load_model", "load_plan", "solve", "verify"]


def __getattr__(name: str) -> _Any:
    if name == "solve":  # the subpackage, callable as memplan.api.solve (see _Package)
        import memplan.solve

        return _sys.modules["memplan.solve"]
    if name in __all__:
        import memplan.api

        return getattr(memplan.api, name)
    raise AttributeError(f"module 'memplan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _CallableSolve(_types.ModuleType):
    """The planner subpackage memplan.solve, which is also the API function: the import system
    binds the name ``memplan.solve`` to the subpackage whenever it is imported, so the
    subpackage itself is made callable rather than shadowed by a function it would replace."""

    def __call__(self, *args: _Any, **kwargs: _Any) -> _Any:
        from memplan.api import solve as api_solve

        return api_solve(*args, **kwargs)


class _Package(_types.ModuleType):
    def __setattr__(self, name: str, value: _Any) -> None:
        if name == "solve" and type(value) is _types.ModuleType:
            value.__class__ = _CallableSolve
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
