"""The README's "your own model" example runs as written and meets its claim:
L-Softmax (m=2) and ArcFace within 1 point of softmax's MNIST test error."""

import functools
import os
import pathlib
import re

import pytest

from margin_jax import data

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MARGIN_JAX_DATA") or ROOT.parent / "shared" / "datasets")


def _example() -> str:
  text = (ROOT / "README.md").read_text()
  match = re.search(r"<!-- user-model-example -->\n```python\n(.*?)```", text, re.S)
  assert match, "README.md lost its user-model example"
  return match.group(1)


def test_user_model_example(tmp_path, monkeypatch):
  if not (SHARED / "mnist").is_dir():
    pytest.skip(f"No offline raw MNIST at {SHARED / 'mnist'} (set MARGIN_JAX_DATA).")
  monkeypatch.setattr(
    data, "load_arrays", functools.partial(data.load_arrays, data_dir=tmp_path, source_dir=SHARED)
  )
  namespace = {}
  exec(compile(_example(), "README.md", "exec"), namespace)
  errors = namespace["errors"]
  assert set(errors) == {"softmax", "l_softmax", "arcface"}
  assert errors["softmax"] < 0.1
  for name in ("l_softmax", "arcface"):
    assert errors[name] <= errors["softmax"] + 0.01, errors
