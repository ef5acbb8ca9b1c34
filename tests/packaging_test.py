"""pyproject.toml: JAX's GPU builds as extras, and no upper version caps."""

import pathlib

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_gpu_extras_and_lower_bounds_only():
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  extras = project["optional-dependencies"]
  assert extras["cuda12"] == ["jax[cuda12]"] and extras["cuda13"] == ["jax[cuda13]"]
  requirements = project["dependencies"] + extras["train"]
  for name in ("jax", "jaxlib", "flax", "optax", "tensorflow-datasets"):
    (requirement,) = [r for r in requirements if r.split(">=")[0] == name]
    assert "<" not in requirement, requirement
