"""Executes the notebooks in place and stores their outputs, which the
documentation site renders (`make notebooks`; then commit the .ipynb files).

  python docs/execute_notebooks.py [notebooks/NAME.ipynb ...]

Every code cell runs with errors fatal (the notebooks hold their own checks),
in a kernel of this interpreter, from the notebooks' directory. A notebook is
written only after all its cells ran, so a failure leaves the committed file
as it was.
"""

from __future__ import annotations

import pathlib
import sys

import nbformat
from nbclient import NotebookClient

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 600


def execute(path: pathlib.Path) -> None:
  notebook = nbformat.read(path, as_version=4)
  client = NotebookClient(
    notebook,
    kernel_name="python3",
    timeout=CELL_TIMEOUT_S,
    allow_errors=False,
    resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
  )
  client.execute()
  notebook.metadata.pop("widgets", None)
  tmp = path.with_suffix(".ipynb.tmp")
  nbformat.write(notebook, tmp)
  tmp.replace(path)


def main(argv=None) -> None:
  paths = [pathlib.Path(p) for p in (argv or sys.argv[1:])] or sorted(NOTEBOOK_DIR.glob("*.ipynb"))
  for path in paths:
    print(f"executing {path.name}", flush=True)
    execute(path)


if __name__ == "__main__":
  main()
