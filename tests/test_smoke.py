"""The package imports and the CLI turns usage errors into one line and a non-zero exit."""

import pytest

from memplan.cli import main, parse_input_shapes
from memplan.errors import UsageError


def test_parse_input_shapes() -> None:
    assert parse_input_shapes(["x=1x3x224x224", "a=b=2x4"]) == {"x": (1, 3, 224, 224), "a=b": (2, 4)}


@pytest.mark.parametrize("spec", ["x", "x=", "x=1x0", "=1x2", "x=1xa"])
def test_parse_input_shapes_rejects(spec: str) -> None:
    with pytest.raises(UsageError, match="--input-shape"):
        parse_input_shapes([spec])


def test_cli_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "nope.onnx", "--input-shape", "bad"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("memplan: error:")


def test_failed_solve_writes_no_plan(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    model = Path(__file__).resolve().parents[1] / "models" / "resnet8_float.onnx"
    out = tmp_path / "plan.json"
    code = main(["solve", str(model), "--sram", "1KiB", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 3 and "needs at least" in err and err.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []
