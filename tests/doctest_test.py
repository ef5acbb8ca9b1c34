"""Every docstring example of the library runs and shows its output."""

import doctest
import importlib
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "margin_jax"
MODULES = sorted(
  ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
  for p in PACKAGE.rglob("*.py")
  if p.name != "__main__.py"
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_every_example_shows_output():
  """No docstring example is a bare call: each ends with an expected output."""
  finder = doctest.DocTestFinder()
  for name in MODULES:
    for test in finder.find(importlib.import_module(name)):
      if test.examples:
        assert test.examples[-1].want, f"{test.name}: the example shows no output"
