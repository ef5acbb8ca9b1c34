"""Test setup: four forced CPU devices, set before JAX is first imported.

Every test process then sees ``jax.local_devices()`` == 4 CPU devices (unless
its environment sets a count), so the
pmap tests run the same multi-device code as a GPU host would. A persistent
compilation cache, fresh for each session and inherited by the subprocesses
of the multi-process tests, compiles each identical program once.
"""

import atexit
import gzip
import os
import shutil
import struct
import tempfile

import numpy as np
import pytest

# Before anything imports JAX. A device count already set wins (the 8-device
# subprocess of tests/parallel_test.py).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=4"]
  ).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_CACHE = tempfile.mkdtemp(prefix="margin_jax_xla_cache_")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def _write_idx(path, array):
  header = struct.pack(">I", 0x0800 | array.ndim)
  header += struct.pack(f">{array.ndim}I", *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory):
  """A 256/64-example MNIST-format dataset, prepared offline once.

  Returns ``(source_dir, data_dir)``: the raw IDX files (for
  ``MARGIN_JAX_DATA``) and the prepared tfds directory (``config.data_dir``).
  Each class draws a bright bar at its own row, so a few SGD steps learn it.
  """
  from margin_jax import data

  root = tmp_path_factory.mktemp("tiny_mnist")
  raw = root / "raw" / "mnist"
  raw.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for split, n, prefix in (("train", 256, "train"), ("test", 64, "t10k")):
    labels = np.arange(n) % 10
    images = rng.integers(0, 60, (n, 28, 28))
    images[np.arange(n), 2 + 2 * labels] = 255
    _write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
    _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
  data_dir = root / "tfds"
  data.load_arrays("mnist", data_dir=str(data_dir), source_dir=str(root / "raw"))
  return str(root / "raw"), str(data_dir)


# The two longest files (8 devices in a subprocess; a training run per loss),
# in the order `make test`'s two workers should start them.
_FIRST = ("parallel_test.py", "training_trainability_test.py")


def pytest_collection_modifyitems(items):
  """The longest files first, one to each of `make test`'s two workers (xdist
  hands each worker one file, then a second, in this order): the other files
  then share the workers while they run, instead of one of them running last."""
  items.sort(key=lambda item: _FIRST.index(item.path.name) if item.path.name in _FIRST else 2)
