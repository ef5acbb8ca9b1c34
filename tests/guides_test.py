"""The README's "your own model" examples run as written and meet their
claims: in Linen, L-Softmax (m=2) and ArcFace within 1 point of softmax's
MNIST test error; in NNX, ArcFace under 15%."""

import functools
import os
import pathlib
import re

import pytest

from margin_jax import data

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MARGIN_JAX_DATA") or ROOT.parent / "shared" / "datasets")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  if not (SHARED / "mnist").is_dir():
    pytest.skip(f"No offline raw MNIST at {SHARED / 'mnist'} (set MARGIN_JAX_DATA).")
  return tmp_path_factory.mktemp("tfds")


def _run(marker, data_dir, monkeypatch) -> dict:
  """Executes the README's Python block after ``<!-- marker -->``; returns its globals."""
  monkeypatch.setattr(
    data, "load_arrays", functools.partial(data.load_arrays, data_dir=data_dir, source_dir=SHARED)
  )
  text = (ROOT / "README.md").read_text()
  match = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", text, re.DOTALL)
  assert match, f"README.md lost its {marker} block"
  namespace = {}
  exec(compile(match.group(1), "README.md", "exec"), namespace)
  return namespace


def test_user_model_example(data_dir, monkeypatch):
  errors = _run("user-model-example", data_dir, monkeypatch)["errors"]
  assert set(errors) == {"softmax", "l_softmax", "arcface"}
  assert errors["softmax"] < 0.1
  for name in ("l_softmax", "arcface"):
    assert errors[name] <= errors["softmax"] + 0.01, errors


def test_user_model_example_nnx(data_dir, monkeypatch):
  assert _run("user-model-example-nnx", data_dir, monkeypatch)["error"] < 0.15


def test_streamed_example(monkeypatch):
  namespace = _run("streamed-example", None, monkeypatch)
  import jax.numpy as jnp
  import numpy as np
  from margin_jax import losses

  x, W, y = namespace["x"], namespace["W"], namespace["y"]
  want = losses.arcface_loss(x, W, y, scale=64.0, margin=0.5)
  np.testing.assert_allclose(namespace["per_example"], want, rtol=1e-5, atol=1e-5)
  assert namespace["grads"].shape == W.shape and namespace["top5"].shape == (256, 5)
  logits = losses.inference_logits(x, W, cosine=True)
  assert jnp.all(namespace["top5"][:, 0] == logits.argmax(-1))
