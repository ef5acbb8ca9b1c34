"""The notebooks of ``notebooks/``: executed headless, paired with MyST, stored executed.

Each notebook holds its own checks (``assert`` on every gradient comparison and
plotted property), so executing it with errors fatal is the test. The
``.ipynb`` / ``.md`` pairs are jupytext-paired (``formats: ipynb,md:myst``);
after editing the ``.md``, run ``jupytext --sync notebooks/<name>.md`` and
``make notebooks`` (which executes them in place), and commit the ``.ipynb``
with its outputs: the documentation site renders them.
"""

import os
import pathlib
import sys

import jupytext
import nbformat
import pytest
import tensorflow_datasets as tfds
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from margin_jax.data import prepare
from margin_jax.data import raw

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = {"gradients", "margins", "quickstart"}
PAIRING = "ipynb,md:myst"
CELL_TIMEOUT_S = 300  # one cell; each notebook as a whole runs in well under 2 minutes on CPU


class _ThisInterpreter(KernelSpecManager):
  """Every kernel name resolves to ipykernel in the interpreter running pytest (the venv's).

  Independent of whatever ``python3`` kernelspecs the machine has installed.
  """

  def get_kernel_spec(self, kernel_name):
    return KernelSpec(
      argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      display_name=f"Python ({sys.executable})",
      language="python",
      name=kernel_name,
    )


def _ids(path):
  return path.stem


def _cells(notebook):
  return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_every_notebook_is_here():
  assert {path.stem for path in NOTEBOOKS} >= EXPECTED
  assert {path.stem for path in NOTEBOOK_DIR.glob("*.md")} == {path.stem for path in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_pair_has_not_drifted(path):
  markdown = path.with_suffix(".md")
  assert markdown.exists(), f"{path.name} has no MyST pair {markdown.name}"
  from_ipynb, from_md = jupytext.read(path), jupytext.read(markdown)
  for name, notebook in ((path.name, from_ipynb), (markdown.name, from_md)):
    formats = notebook.metadata.get("jupytext", {}).get("formats")
    assert formats == PAIRING, f"{name}: jupytext formats {formats!r}, expected {PAIRING!r}"
  sync = f"run `jupytext --sync notebooks/{markdown.name}`"
  ipynb_cells, md_cells = _cells(from_ipynb), _cells(from_md)
  assert len(ipynb_cells) == len(md_cells), (
    f"{path.name} has {len(ipynb_cells)} cells, {markdown.name} {len(md_cells)}: {sync}"
  )
  for index, (a, b) in enumerate(zip(ipynb_cells, md_cells)):
    assert a == b, (
      f"cell {index} differs between {path.name} and {markdown.name}: {sync}\n"
      f"--- ipynb\n{a[1]}\n--- md\n{b[1]}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_committed_notebook_holds_one_complete_run(path):
  """Every code cell executed, in order, in one run (so the outputs the site
  shows are those of the cells' current source: a cell edited and synced
  loses its execution count)."""
  notebook = nbformat.read(path, as_version=4)
  counts = [cell.execution_count for cell in notebook.cells if cell.cell_type == "code"]
  assert counts == list(range(1, len(counts) + 1)), (
    f"{path.name} holds execution counts {counts}: run `make notebooks`"
  )


def _mnist_available() -> bool:
  source = os.environ.get("MARGIN_JAX_DATA")
  return tfds.builder("mnist", data_dir=prepare.default_data_dir()).is_prepared() or bool(
    source and raw.raw_files_present("mnist", pathlib.Path(source) / "mnist")
  )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_executes(path, monkeypatch):
  shared = ROOT.parent / "shared" / "datasets"  # the Makefile exports this too
  if "MARGIN_JAX_DATA" not in os.environ and shared.is_dir():
    monkeypatch.setenv("MARGIN_JAX_DATA", str(shared))
  if path.stem == "quickstart" and not _mnist_available():
    pytest.skip(
      "quickstart trains on MNIST: no prepared tfds mnist and no raw files in "
      f"$MARGIN_JAX_DATA={os.environ.get('MARGIN_JAX_DATA')!r} on this machine"
    )
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  notebook = nbformat.read(path, as_version=4)
  kernel = KernelManager(kernel_name="python3", kernel_spec_manager=_ThisInterpreter())
  client = NotebookClient(
    notebook,
    km=kernel,
    timeout=CELL_TIMEOUT_S,
    allow_errors=False,  # any error, a failed assert included, raises CellExecutionError
    resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
  )
  try:
    client.execute()
  finally:  # the client leaves a kernel it did not start running
    kernel.shutdown_kernel(now=True)
