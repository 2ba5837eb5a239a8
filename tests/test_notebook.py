"""The notebooks run top to bottom without errors, and are committed without outputs."""

import json
import os
import sys

import nbformat
from nbclient import NotebookClient
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = ["notebooks/inspect_priors.ipynb"]
KERNEL_NAME = "ssd-jax-test"


@pytest.fixture
def this_interpreter_kernel(tmp_path, monkeypatch):
  """A kernel spec running ``sys.executable``, found through ``JUPYTER_PATH``: the notebook runs
  with this venv whatever kernels (if any) the machine has registered."""
  spec_dir = tmp_path / "kernels" / KERNEL_NAME
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "ssd_jax test", "language": "python"}))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
  return KERNEL_NAME


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_notebook_is_committed_without_outputs(path):
  nb = nbformat.read(os.path.join(ROOT, path), as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert code
  for i, cell in enumerate(code):
    assert cell.outputs == [] and cell.execution_count is None, f"code cell {i} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_notebook_runs_without_errors(path, this_interpreter_kernel):
  nb = nbformat.read(os.path.join(ROOT, path), as_version=4)
  client = NotebookClient(nb, kernel_name=this_interpreter_kernel, timeout=240,
                          resources={"metadata": {"path": os.path.dirname(os.path.join(ROOT,
                                                                                       path))}})
  client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.execution_count is not None for c in code)
  errors = [o for c in code for o in c.outputs if o.output_type == "error"]
  assert not errors, errors
  images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
  assert len(images) >= 3  # the per-layer boxes, scale against layer, the coverage plots
  text = "".join(o.get("text", "") for c in code for o in c.outputs)
  assert "priors; boxes per cell" in text and "recall@0.5" in text
