"""Command line: parse arguments, call the API, hand results to :mod:`memplan.report`.

Every user-facing failure is a :class:`memplan.errors.MemplanError`: it is printed as one line
on stderr, with the error's exit code and no traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from memplan.config import MAX_SEED, SOLVER_RANGES, TILING_RANGES
from memplan.errors import ConfigError, MemplanError, ModelError, PlanError, UsageError

if TYPE_CHECKING:
    from memplan.api import SolveSettings
    from memplan.config import HardwareProfile
    from memplan.ir.graph import Graph

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Command] = {}


def _command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        _COMMANDS[name] = fn
        return fn

    return register


HOST_OPS_HELP = "an operator memplan does not tile: cpu runs it as a host layer on the CPU (default), error refuses the model"


def parse_input_shapes(specs: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    """``NAME=1x3x224x224`` (repeatable) -> {NAME: (1, 3, 224, 224)}."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs or ():
        name, sep, dims = spec.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.lower().split("x"))
            if any(d <= 0 for d in shape):
                raise ValueError
        except ValueError:
            raise UsageError(
                f"--input-shape {spec!r} is not NAME=DxDx...: write e.g. --input-shape input=1x3x224x224"
            ) from None
        if name in shapes:
            raise UsageError(f"--input-shape gives input {name!r} twice: keep one")
        shapes[name] = shape
    return shapes


class _Parser(argparse.ArgumentParser):
    """Argument errors in one line, with the help command that shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"memplan: error: {' '.join(message.split())}; see {self.prog} --help\n")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``."""

    def parse(text: str) -> int:
        shown = text if len(text) <= 30 else f"{text[:20]}..."
        digits = text.strip().lstrip("+-")
        if digits.isascii() and digits.isdigit() and len(digits) > 30:  # int() refuses 4300+ digits
            raise argparse.ArgumentTypeError(f"{shown} is out of range: give an integer from {low:,} to {high:,}")
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{shown!r} is not an integer: give one from {low:,} to {high:,}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{shown} is out of range: give an integer from {low:,} to {high:,}")
        return value

    return parse


def _seconds(text: str) -> float:
    """An argparse type: a finite time limit in range."""
    low, high = SOLVER_RANGES["time_limit_s"]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and low < value <= high):
        raise argparse.ArgumentTypeError(f"{text!r} is not a time limit: give a positive number of seconds up to "
                                         f"{high:,}, e.g. 30")
    return value


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="memplan", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    from memplan import __version__

    p.add_argument("--version", action="version", version=f"memplan {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    ins = sub.add_parser("inspect", help="per-layer shapes, MACs and bytes of a model")
    ins.add_argument("model", help="ONNX model file")
    ins.add_argument("--input-shape", action="append", metavar="NAME=1x3xHxW", help="pin a dynamic input shape")
    ins.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    ins.add_argument("--host-ops", choices=["cpu", "error"], default="cpu", help=HOST_OPS_HELP)

    sol = sub.add_parser("solve", help="plan a model: fusion, tiling, residency, weights and SRAM offsets")
    sol.add_argument("model", help="ONNX model file")
    sol.add_argument("--strategy", default="cpsat", choices=["cpsat", "layer", "greedy"], help="planner (default cpsat)")
    sol.add_argument("--objective", default="energy", choices=["energy", "latency", "balanced", "memory"],
                     help="what to minimise (default energy); --weights gives a custom mix")
    sol.add_argument("--weights", metavar="energy=W,latency=W", help="custom objective weights (normalised by layer-by-layer)")
    sol.add_argument("--config", default="default", help="solver config name (default, fast, thorough) or .toml path")
    sol.add_argument("--time-limit", type=_seconds, help="override the config's time limit: seconds for the whole solve (preparation and search)")
    sol.add_argument("--seed", type=_int_in(0, MAX_SEED), help="override the config's random seed")
    sol.add_argument("--max-fuse-depth", type=_int_in(1, int(SOLVER_RANGES["max_fuse_depth"][1])),
                     help="longest fused group (layers)")
    sol.add_argument("--keep", action="append", default=[], metavar="LAYER", help="force this layer's weights to stay in SRAM")
    sol.add_argument("--reload", action="append", default=[], metavar="LAYER", help="force this layer's weights to reload per tile")
    sol.add_argument("--max-recompute", metavar="P", help="recompute budget, a hard constraint with every objective: the most "
                     "MACs beyond the untiled network, as a share of its MACs (10%%) or a MAC count (250000); with "
                     "--objective memory, the smallest SRAM within it (default unlimited)")
    sol.add_argument("--hardware", default="generic-npu", help="hardware profile name or .toml path")
    sol.add_argument("--sram", help="SRAM size, e.g. 256KiB or 1MiB (default: the profile's)")
    sol.add_argument("--row-only", action="store_true", help="tile whole rows only")
    sol.add_argument("--rolling-buffers", action="store_true",
                     help="let fused groups run as row stripes that keep their overlap rows in SRAM (rolling buffers) "
                          "instead of recomputing them (on by default on the ethos-u profiles)")
    sol.add_argument("--tile-multiple", type=_int_in(*TILING_RANGES["tile_multiple"]),
                     help="tile height and width must be multiples of this")
    sol.add_argument("--max-tiles", type=_int_in(*TILING_RANGES["max_tiles"]), help="most tiles per group")
    sol.add_argument("--fdt-slices", type=_int_in(*TILING_RANGES["fdt_slices"]),
                     help="most channel slices of a fused depthwise tiling group (0: none; profiles that read weights "
                          "in place only)")
    sol.add_argument("--multi-output", action="store_true",
                     help="let a fused group store a tensor it produces for later layers from inside, tile by tile "
                          "(multi-output groups), instead of ending the group there")
    sol.add_argument("--input-shape", action="append", metavar="NAME=1x3xHxW", help="pin a dynamic input shape")
    sol.add_argument("-o", "--output", help="write the plan JSON here")
    sol.add_argument("--host-ops", choices=["cpu", "error"], default="cpu", help=HOST_OPS_HELP + " (recorded in the plan)")
    sol.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    sol.add_argument("--plot", metavar="MAP.png", help="also draw the plan's memory map (.png, .svg or .pdf)")

    ver = sub.add_parser("verify", help="execute a plan tile by tile in int8 and check it against the untiled reference")
    ver.add_argument("model", help="ONNX model file the plan was made for")
    ver.add_argument("plan", help="plan JSON written by memplan solve -o")
    ver.add_argument("--input-shape", action="append", metavar="NAME=1x3xHxW",
                     help="pin a dynamic input shape (as given to memplan solve)")
    ver.add_argument("--seed", type=_int_in(0, MAX_SEED), default=0, help="quantisation and input seed (default 0)")
    ver.add_argument("--json", action="store_true", help="print a machine-readable report on stdout")
    ver.add_argument("--host-ops", choices=["cpu", "error"], help="the plan's setting (it is recorded there; a "
                     "different one is refused)")

    exp = sub.add_parser("export", help="write a verified plan as C99 sources with the reference runtime (memplan.firmware)")
    exp.add_argument("model", help="ONNX model file the plan was made for")
    exp.add_argument("plan", help="plan JSON written by memplan solve -o")
    exp.add_argument("--c", metavar="DIR", help="write C99 sources here (absent, empty or an earlier export); "
                     "make -C DIR builds DIR/memplan_run")
    exp.add_argument("--tflm-offsets", metavar="OUT.tflite", help="write a copy of the .tflite model with TensorFlow Lite "
                     "Micro's offline memory plan (OfflineMemoryAllocation) from an untiled memory plan; checked with "
                     "the TFLite Micro interpreter (needs tflite-micro)")
    exp.add_argument("--seed", type=_int_in(0, MAX_SEED), default=0, help="quantisation and input seed (default 0)")

    ops = sub.add_parser("ops", help="the ONNX operators memplan imports (others run on the host CPU)")
    ops.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    plt = sub.add_parser("plot", help="draw a plan: its memory map or its DRAM traffic per group (needs memplan[plot])")
    plt.add_argument("plan", help="plan JSON written by memplan solve -o")
    plt.add_argument("--kind", default="memory-map", choices=["memory-map", "traffic"], help="what to draw (default memory-map)")
    plt.add_argument("-o", "--output", required=True, help="image to write: .png, .svg or .pdf")

    zoo = sub.add_parser("zoo", help="write a model of the built-in zoo as ONNX")
    zoo.add_argument("name", help="model name (see `memplan zoo list`)")
    zoo.add_argument("-o", "--output", help="ONNX file to write")
    zoo.add_argument("--resolution", type=int, default=None, help="input height and width")
    zoo.add_argument("--seed", type=_int_in(0, MAX_SEED), default=0, help="weight seed")
    zoo.add_argument("--param", action="append", metavar="KEY=VALUE", help="model-specific parameter")

    swp = sub.add_parser("sweep", help="plan models over SRAM sizes, profiles and strategies on Dask, one row each")
    swp.add_argument("model", nargs="+", help="ONNX model files")
    swp.add_argument("--sram", required=True, metavar="RANGE",
                     help="SRAM sizes: 64KiB..2MiB:x2, 64KiB..256KiB:+64KiB or 64KiB,1MiB")
    swp.add_argument("--hardware", default="generic-npu", help="hardware profiles, comma-separated (default generic-npu)")
    swp.add_argument("--strategy", default="layer,greedy,cpsat", help="planners, comma-separated (default all three)")
    swp.add_argument("--objective", default="energy", choices=["energy", "latency", "balanced", "memory"],
                     help="what to minimise (default energy)")
    swp.add_argument("--config", default="default", help="solver config name or .toml path")
    swp.add_argument("--time-limit", type=_seconds, help="override the config's time limit per point (seconds)")
    swp.add_argument("--verify", action="store_true", help="verify every plan bit-exactly (slower)")
    swp.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on this Dask scheduler (default: a local cluster)")
    swp.add_argument("--workers", type=_int_in(1, 1024), help="local cluster processes (default: the cores)")
    swp.add_argument("-o", "--output", required=True, help="results .csv (or .parquet); rows already there are skipped")
    swp.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")

    plc = sub.add_parser("place", help="offsets for buffers with fixed lifetimes (MiniMalloc's CSV: id,lower,upper,size)")
    plc.add_argument("buffers", help="CSV with a header id,lower,upper,size; lifetimes [lower, upper)")
    plc.add_argument("--capacity", required=True, help="memory size in bytes, e.g. 1048576 or 1MiB")
    plc.add_argument("--time-limit", type=_seconds, default=60.0, help="seconds for the search (default 60)")
    plc.add_argument("-o", "--output", help="write the CSV with an offset column here (default: stdout)")
    return p


@_command("inspect")
def _cmd_inspect(args: argparse.Namespace) -> int:
    shapes = parse_input_shapes(args.input_shape)
    from memplan import report
    from memplan.frontend import load_model
    from memplan.ir.stats import graph_stats

    graph = load_model(args.model, shapes, host_ops=args.host_ops)
    print_notes(graph)
    stats = graph_stats(graph)
    report.print_inspect(stats, as_json=args.json)
    if not args.json:
        for i in graph.host_layers:  # what runs on the host CPU, and why
            layer = graph.layers[i]
            print(f"host layer {layer.id!r} ({layer.attrs.op_type}): {layer.attrs.reason}")  # type: ignore[union-attr]
    return 0


def print_notes(graph: "Graph") -> None:
    """The import's notes (a dynamic batch pinned to 1), one ``memplan: note:`` line each on stderr."""
    for note in graph.notes:
        text = " ".join(note.split()).encode("utf-8", "backslashreplace").decode("utf-8")
        print(f"memplan: note: {text}", file=sys.stderr)


def load_hardware(args: argparse.Namespace) -> "HardwareProfile":
    from memplan.config import load_profile, parse_size

    hw = load_profile(args.hardware)
    if args.sram is not None:
        hw = hw.with_sram(parse_size(args.sram))
    rules = {}
    if args.row_only:
        rules["row_only"] = True
    if args.rolling_buffers:
        rules["rolling_buffers"] = True
    if getattr(args, "multi_output", False):
        rules["multi_output"] = True
    for key in ("tile_multiple", "max_tiles"):
        value = getattr(args, key)
        if value is not None:
            if value < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be at least 1")
            rules[key] = value
    if getattr(args, "fdt_slices", None) is not None:
        rules["fdt_slices"] = args.fdt_slices
    try:
        return hw.with_tiling(**rules) if rules else hw
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def check_output(path: str | None, flag: str = "-o", protect: str | None = None, example: str = "out.json") -> None:
    """Refuse an output path that cannot be written, before any work: the folder must exist
    and be writable, the path must not be a folder (nor ``protect``, the input file)."""
    if path is None:
        return
    if not path.strip():
        raise UsageError(f"{flag} is empty: give the file to write, e.g. {flag} {example}")
    target = Path(path)
    if target.is_dir() or path.endswith(("/", os.sep)):
        raise UsageError(f"{flag} {path!r} names a folder: give a file name in it, "
                         f"e.g. {flag} {os.path.join(path, example)!r}")
    if protect is not None and target.exists() and Path(protect).exists() and target.samefile(protect):
        raise UsageError(f"{flag} {path!r} is the input model itself: write the output to another file")
    folder = target.parent
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise UsageError(f"{flag} {path!r}: {str(folder)!r} {state}; create the folder first or write elsewhere")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
    except OSError as exc:
        raise UsageError(f"{flag} {path!r}: cannot write in folder {str(folder)!r} ({exc.strerror or exc}); "
                         "choose a writable place") from None
    os.close(fd)
    os.unlink(probe)


def check_input_file(path: str, what: str) -> None:
    """A model or plan path names a readable file (verify reads both before parsing either)."""
    error = ModelError if what == "model" else PlanError
    target = Path(path)
    if not path or not target.exists():
        raise error(f"{what} file {path!r} does not exist; check the path")
    if not target.is_file():
        raise error(f"{what} file {path!r} is not a file; give the path of the {what} file")
    try:
        with open(target, "rb"):
            pass  # opened only to learn, before any work, that it can be read
    except OSError as exc:
        raise error(f"{what} file {path!r} cannot be read ({exc.strerror or exc})") from None


@_command("solve")
def _cmd_solve(args: argparse.Namespace) -> int:
    import time
    from dataclasses import replace

    t0 = time.perf_counter()  # the time limit budgets the command: imports and model load count too
    check_output(args.output, protect=args.model)
    plot = _plot_module(args.plot, "--plot", protect=args.model) if args.plot else None
    shapes = parse_input_shapes(args.input_shape)
    hw = load_hardware(args)
    from memplan import api, report

    settings = _solver_settings(args)
    graph = api.load_model(args.model, shapes, host_ops=args.host_ops)
    print_notes(graph)
    config = settings.config
    if not config.deterministic:  # deterministic configs bound deterministic time: the machine must not matter
        spent = time.perf_counter() - t0
        config = replace(config, time_limit_s=max(config.time_limit_s - spent, 0.01 * config.time_limit_s))
    with report.solve_progress(enabled=args.strategy == "cpsat" and not args.json) as progress:
        result = api.solve(graph, hw, objective=settings.objective, strategy=settings.strategy,
                           keep=settings.user.force_keep, reload=settings.user.force_reload, weights=settings.weights,
                           config=config, progress=progress, max_recompute=settings.max_recompute)
    if args.output:
        result.save(args.output)
    if plot is not None:
        plot.save_figure(plot.plot_memory_map(result.plan, hw.name), args.plot)
    report.print_solve(result.outcome, as_json=args.json, output=args.output)
    return 0


def _solver_settings(args: argparse.Namespace) -> "SolveSettings":
    """The solve's flags, checked before the model is read (memplan.api.solve checks them again)."""
    from memplan.api import solve_settings

    objective = "custom" if args.weights is not None else args.objective  # --weights overrides --objective
    return solve_settings(args.strategy, objective, args.config, args.time_limit, args.seed, args.max_fuse_depth,
                          args.keep, args.reload, args.weights, args.max_recompute)


@_command("verify")
def _cmd_verify(args: argparse.Namespace) -> int:
    shapes = parse_input_shapes(args.input_shape)
    check_input_file(args.model, "model")
    check_input_file(args.plan, "plan")
    from memplan import report
    from memplan.driver import verify_files

    result = verify_files(args.model, args.plan, shapes, seed=args.seed, host_ops=args.host_ops)
    report.print_verify(result, as_json=args.json)
    return 0


@_command("export")
def _cmd_export(args: argparse.Namespace) -> int:
    check_input_file(args.model, "model")
    check_input_file(args.plan, "plan")
    if args.c is None and args.tflm_offsets is None:
        raise UsageError("say what to export: --c DIR (C99 sources) and/or --tflm-offsets OUT.tflite")
    from memplan.firmware import check_exportable, check_target, export_c

    target = check_target(args.c) if args.c is not None else None  # before any work
    if args.tflm_offsets is not None:
        check_output(args.tflm_offsets, flag="--tflm-offsets", protect=args.model, example="model_planned.tflite")
    from memplan.driver import verified_plan

    v = verified_plan(args.model, args.plan, seed=args.seed)  # every check of memplan verify, or one line
    if target is not None:
        check_exportable(v.graph, v.plan)
        out = export_c(v.graph, v.plan, v.hw, v.prepared, target, args.seed)
        print(f"wrote {out}: plan tables, runtime, weights.bin, input.bin, expected.bin; build and run with make -C {out} run")
    if args.tflm_offsets is not None:
        from memplan.firmware.tflm_offsets import export_tflm_offsets

        r = export_tflm_offsets(args.model, v.graph, v.plan, dict(v.prepared.inputs), args.tflm_offsets)
        print(f"wrote {args.tflm_offsets}: {r.plan.planned} tensors planned offline in {r.plan.head_bytes:,} B; TFLite Micro "
              f"arena head {r.arena_offline.head:,} B with the plan vs {r.arena_default.head:,} B with its own planner "
              f"(total {r.arena_offline.total:,} vs {r.arena_default.total:,} B); outputs identical")
    return 0


@_command("ops")
def _cmd_ops(args: argparse.Namespace) -> int:
    from memplan import report
    from memplan.frontend.convert import supported_operators

    report.print_ops(supported_operators(), as_json=args.json)
    return 0


def _plot_module(path: str, flag: str, protect: str | None = None):  # type: ignore[no-untyped-def]
    """memplan.plot, once the image path is known to be writable and of a known format: a
    one-line error when it is not, or when matplotlib is missing."""
    check_output(path, flag=flag, protect=protect, example="map.png")
    try:
        from memplan import plot
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("matplotlib", "PIL"):
            raise
        raise UsageError(f"{flag} needs matplotlib, which is not installed: pip install 'memplan[plot]'") from None
    plot.figure_format(path)
    return plot


@_command("plot")
def _cmd_plot(args: argparse.Namespace) -> int:
    check_input_file(args.plan, "plan")
    plot = _plot_module(args.output, "-o", protect=args.plan)
    from memplan.plan.serialize import plan_from_json, read_plan_document

    plan, hw = plan_from_json(read_plan_document(args.plan))
    if args.kind == "memory-map":
        fig = plot.plot_memory_map(plan, hw.name)
    else:
        fig = plot.plot_group_traffic(plan, hw)
    plot.save_figure(fig, args.output)
    print(f"wrote {args.output}: {args.kind} of {plan.graph_name} ({len(plan.buffers)} buffers, "
          f"{len(plan.decisions.groups)} groups)")
    return 0


@_command("zoo")
def _cmd_zoo(args: argparse.Namespace) -> int:
    from memplan import report
    from memplan.frontend.export import save_onnx
    from memplan.zoo import ZOO, build_zoo_model, parse_zoo_params

    if args.name == "list":
        report.print_zoo_list(ZOO)
        return 0
    if not args.output:
        raise UsageError("memplan zoo NAME needs -o FILE.onnx")
    check_output(args.output, example="model.onnx")
    graph = build_zoo_model(args.name, resolution=args.resolution, seed=args.seed, **parse_zoo_params(args.param))
    save_onnx(graph, args.output)
    report.print_written(args.output, graph)
    return 0


@_command("sweep")
def _cmd_sweep(args: argparse.Namespace) -> int:
    from memplan import report
    from memplan.sweep import build_points, open_output, parse_sram_range, run_sweep, split_list

    sizes = parse_sram_range(args.sram)
    check_output(args.output, example="results.csv")
    open_output(args.output)  # the extension, before any work
    for model in args.model:
        check_input_file(model, "model")
    if args.scheduler is not None and args.workers is not None:
        raise UsageError("--workers sizes the local cluster: leave it out with --scheduler (the cluster has its own)")
    points = build_points(args.model, split_list(args.hardware, "--hardware"), sizes,
                          split_list(args.strategy, "--strategy"), args.objective)
    from memplan.config import load_solver_config

    load_solver_config(args.config)  # an unknown config is one error, not a column of error rows
    with report.sweep_progress(enabled=not args.json) as bar:
        summary = run_sweep(points, args.output, config=args.config, time_limit_s=args.time_limit, verify=args.verify,
                            scheduler=args.scheduler, workers=args.workers, on_row=bar.row if bar else None,
                            on_start=bar.start if bar else None)
    report.print_sweep(summary, as_json=args.json)
    return 0


@_command("place")
def _cmd_place(args: argparse.Namespace) -> int:
    from memplan.config import parse_size
    from memplan.pack import place_file

    try:
        capacity = parse_size(args.capacity)
    except UsageError as exc:
        raise UsageError(f"--capacity: {exc.message}") from None
    check_output(args.output, protect=args.buffers, example="offsets.csv")
    res, text = place_file(args.buffers, capacity, args.time_limit, args.output)
    if args.output is None:
        sys.stdout.write(text)
    print(f"memplan: packed {len(res.offsets or {})} buffers within {capacity} bytes by {res.method} "
          f"in {res.seconds:.2f} s ({res.nodes} search nodes)", file=sys.stderr)
    return 0


def _print_error(message: str) -> None:
    """``memplan: error: ...`` in one line, whatever a path or a library message holds
    (undecodable path bytes escaped)."""
    text = " ".join(message.split()).encode("utf-8", "backslashreplace").decode("utf-8")
    print(f"memplan: error: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except MemplanError as exc:
        if args.debug:
            raise
        _print_error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        print("memplan: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # the system refused a path the user gave: a name too long, no permission, a full disk
        if args.debug:
            raise
        where = f"{exc.filename!r}: " if exc.filename else ""
        _print_error(f"{where}{exc.strerror or exc}; check the path, its permissions and the free space")
        return 2
    except MemoryError:
        if args.debug:
            raise
        _print_error("out of memory; plan a smaller model, input shape or SRAM size")
        return 2
    except Exception as exc:  # noqa: BLE001 - the last resort: no traceback without --debug
        if args.debug:
            raise
        reason = str(exc).splitlines()[0] if str(exc) else ""
        _print_error(f"internal error ({type(exc).__name__}: {reason}); this is a bug in memplan: please report it "
                     "with the output of the same command run with --debug")
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
