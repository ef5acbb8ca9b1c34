"""Every public name of the documented packages has an entry in the built site.

  python docs/check_pages.py [HTML_DIR]   (default docs/_build/html; `make docs` runs it)

A module's public names are its ``__all__``, else the functions and classes
it defines or imports from margin_jax whose names do not start with ``_``.
An entry is an element with the object's full name as its id, as Sphinx's
``py:function`` / ``py:class`` / ``py:data`` directives write it.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import re
import sys

PACKAGES = (
  "margin_jax.losses",
  "margin_jax.metrics",
  "margin_jax.parallel",
  "margin_jax.sharding",
  "margin_jax.models",
  "margin_jax.models.nnx_heads",
  "margin_jax.data",
  "margin_jax.data.faces",
)


def public_names(module_name: str) -> list[str]:
  module = importlib.import_module(module_name)
  if hasattr(module, "__all__"):
    return list(module.__all__)
  return sorted(
    name
    for name, value in vars(module).items()
    if not name.startswith("_")
    and (inspect.isfunction(value) or inspect.isclass(value))
    and getattr(value, "__module__", "").startswith("margin_jax")
  )


def missing_entries(html_dir) -> list[str]:
  """The full names of public objects with no entry in ``html_dir``'s pages."""
  ids = set()
  for page in pathlib.Path(html_dir).rglob("*.html"):
    ids.update(re.findall(r'id="(margin_jax\.[\w.]+)"', page.read_text(encoding="utf-8")))
  return [
    f"{module}.{name}"
    for module in PACKAGES
    for name in public_names(module)
    if f"{module}.{name}" not in ids
  ]


def main(argv=None) -> int:
  html_dir = pathlib.Path((argv or sys.argv[1:] or ["docs/_build/html"])[0])
  if not (html_dir / "index.html").is_file():
    print(f"{html_dir} holds no built site (index.html); run `make docs`.", file=sys.stderr)
    return 1
  missing = missing_entries(html_dir)
  for name in missing:
    print(f"no documentation entry for {name}: add it to a page of docs/api/", file=sys.stderr)
  return 1 if missing else 0


if __name__ == "__main__":
  sys.exit(main())
