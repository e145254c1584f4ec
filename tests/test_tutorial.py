"""docs/tutorial.ipynb runs from top to bottom (with VAE_TUTORIAL_QUICK=1: fewer steps, the
same code) and shows what it says: pictures and tables. The documentation build executes
it in full (mkdocs-jupyter)."""

import math
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                        "tutorial.ipynb")


def test_the_notebook_is_checked_in_without_outputs():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert code and not any(cell.outputs or cell.execution_count for cell in code)


def test_the_tutorial_runs_and_shows_its_pictures_and_tables(monkeypatch, tmp_path):
  monkeypatch.setenv("VAE_TUTORIAL_QUICK", "1")
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = [output for cell in notebook.cells if cell.cell_type == "code"
             for output in cell.outputs]
  pictures = [o for o in outputs if "image/png" in o.get("data", {})]
  # reconstructions, prior samples, a traversal, an interpolation, the sweep's two plots
  assert len(pictures) == 5
  text = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
  rate_rows = [line for line in text.splitlines() if line.startswith(("| 0.5 |", "| 1.0 |",
                                                                      "| 4.0 |"))]
  kls = [float(row.split("|")[2]) for row in rate_rows]
  assert len(kls) == 3 and kls[0] > kls[1] > kls[2] > 0  # a larger beta, a lower rate
  gap_row = text.strip().splitlines()[-1].strip("|").split("|")
  elbo, log_px, gap, approximation, amortisation = map(float, gap_row)
  assert elbo < log_px < 0 and abs(gap - (log_px - elbo)) < 0.02
  assert math.isfinite(approximation) and amortisation > -0.5  # q* fits at least as well
  assert "log_px" in text and "bound_gap" in text
