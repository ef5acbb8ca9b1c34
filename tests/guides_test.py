"""The guides' Python blocks run as written. "Your own model": in Linen,
L-Softmax (m=2) and ArcFace within 1 point of softmax's MNIST test error; in
NNX, ArcFace under 15%. "Millions of classes": the streamed head equals the
materialised loss and the sharded block runs on 8 devices, as a user would
type it into a fresh interpreter. The other guides' blocks run top to bottom."""

import functools
import os
import pathlib
import re
import subprocess
import sys

import pytest

from margin_jax import data
from margin_jax import losses

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MARGIN_JAX_DATA") or ROOT.parent / "shared" / "datasets")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  if not (SHARED / "mnist").is_dir():
    pytest.skip(f"No offline raw MNIST at {SHARED / 'mnist'} (set MARGIN_JAX_DATA).")
  return tmp_path_factory.mktemp("tfds")


GUIDES = ROOT / "docs" / "guides"


def _block(guide: str, marker: str) -> str:
  """The Python block after ``<!-- marker -->`` in ``docs/<guide>``."""
  text = (ROOT / "docs" / guide).read_text()
  match = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", text, re.DOTALL)
  assert match, f"docs/{guide} lost its {marker} block"
  return match.group(1)


def _run(marker, data_dir, monkeypatch, guide="guides/own_model.md") -> dict:
  """Executes a guide's Python block after ``<!-- marker -->``; returns its globals."""
  monkeypatch.setattr(
    data, "load_arrays", functools.partial(data.load_arrays, data_dir=data_dir, source_dir=SHARED)
  )
  source = _block(guide, marker)
  namespace = {}
  exec(compile(source, guide, "exec"), namespace)
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
  namespace = _run("streamed-example", None, monkeypatch, guide="guides/millions_of_classes.md")
  import jax.numpy as jnp
  import numpy as np
  from margin_jax import losses

  x, W, y = namespace["x"], namespace["W"], namespace["y"]
  want = losses.arcface_loss(x, W, y, scale=64.0, margin=0.5)
  np.testing.assert_allclose(namespace["per_example"], want, rtol=1e-5, atol=1e-5)
  assert namespace["grads"].shape == W.shape and namespace["top5"].shape == (256, 5)
  logits = losses.inference_logits(x, W, cosine=True)
  assert jnp.all(namespace["top5"][:, 0] == logits.argmax(-1))


def test_sharded_example_runs_on_eight_devices():
  """As the guide says: a fresh interpreter with 8 CPU devices."""
  source = _block("guides/millions_of_classes.md", "sharded-example")
  check = "\nassert per_example.shape == (256,) and bool(jax.numpy.isfinite(per_example).all())"
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  result = subprocess.run(
    [sys.executable, "-c", source + check], cwd=ROOT, env=env, capture_output=True, text=True
  )
  assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize(
  "page",
  ["index.md", "guides/by_name.md", "guides/face_recognition.md", "guides/adding_a_loss.md"],
)
def test_guide_blocks_run_top_to_bottom(page):
  blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), re.DOTALL)
  assert blocks
  table = dict(losses.TABLE)
  try:
    exec(compile("\n".join(blocks), page, "exec"), {})
  finally:  # a guide that registers a loss leaves the table as it was
    losses.TABLE.clear()
    losses.TABLE.update(table)
