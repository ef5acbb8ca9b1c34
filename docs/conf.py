"""Sphinx configuration of margin_jax's documentation (`make docs`).

Offline by design: no intersphinx, MathJax served from the build
(the sphinx-mathjax-offline distribution's copy), the notebooks rendered with their stored outputs
(never executed here; `make test` executes them).
"""

import importlib.metadata
import pathlib
import shutil
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

project = "margin_jax"
author = "the margin_jax authors"
copyright = "2026, the margin_jax authors"

extensions = [
  "myst_nb",
  "sphinx.ext.autodoc",
  "sphinx.ext.napoleon",
  "sphinx.ext.viewcode",
]
# MathJax from the sphinx-mathjax-offline distribution (its directory name is
# not importable as an extension), served from _static/mathjax.
html_static_path = [
  str(
    importlib.metadata.distribution("sphinx-mathjax-offline").locate_file(
      "sphinx-mathjax-offline/static"
    )
  )
]
mathjax_path = "mathjax/tex-chtml.js"
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# `name` in a docstring links to the object of that name.
default_role = "py:obj"
autodoc_member_order = "bysource"
# The docstrings give each argument's shape and meaning; JAX's ArrayLike would
# render as an eight-member union.
autodoc_typehints = "none"
autodoc_default_options = {"members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Knobs", "params_style"), ("Streams", "notes_style")]

html_theme = "sphinx_book_theme"
html_title = "margin_jax"
html_theme_options = {
  "repository_url": "",
  "use_repository_button": False,
  "show_toc_level": 2,
}

# The notebooks live in notebooks/ (executed by `make test`); the site renders
# copies with their stored outputs.
NOTEBOOKS = DOCS / "notebooks"
NOTEBOOKS.mkdir(exist_ok=True)
for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
  shutil.copyfile(notebook, NOTEBOOKS / notebook.name)
