"""Every notebook in notebooks/ runs top to bottom with its default (quick) settings; the
notebooks assert their own results, so a wrong figure is a failing cell."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# test dependencies (the test extra): missing, these tests fail rather than skip
import ipykernel  # noqa: E402,F401  (the python3 kernel the notebooks run in)
import matplotlib  # noqa: E402,F401  (the notebooks draw)
import nbclient  # noqa: E402
import nbformat  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMPLAN_FULL", raising=False)  # the quick defaults
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
