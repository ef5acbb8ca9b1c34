"""Tests for margin_jax.data.download against a real HTTP server on 127.0.0.1.

The server serves copies of the offline MNIST files (../shared/datasets) in
the layout ``<url>/<dataset>/<official file>``, honours HTTP range requests
unless told not to, and can cut a response short to imitate a dropped
connection.
"""

import functools
import gzip
import http.server
import os
import pathlib
import shutil
import socket
import threading

import numpy as np
import pytest
import tensorflow_datasets as tfds

from margin_jax.data import download
from margin_jax.data import load
from margin_jax.data import prepare

SHARED = pathlib.Path(
  os.environ.get("MARGIN_JAX_DATA")
  or pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets"
)
MNIST_FILES = sorted(download.CHECKSUMS["mnist"])


class _Handler(http.server.SimpleHTTPRequestHandler):
  """Static files with optional range support and one-off truncation."""

  def __init__(self, *args, server_state, **kwargs):
    self.state = server_state
    super().__init__(*args, **kwargs)

  def log_message(self, *args):
    del args  # Keep the test output clean.

  def do_GET(self):  # noqa: N802 (http.server's naming)
    self.state["requests"].append((self.path, self.headers.get("Range")))
    path = pathlib.Path(self.translate_path(self.path))
    if not path.is_file():
      self.send_error(404)
      return
    data = path.read_bytes()
    start = 0
    range_header = self.headers.get("Range")
    if range_header and self.state["ranges"]:
      start = int(range_header.removeprefix("bytes=").rstrip("-"))
      self.send_response(206)
      self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
      self.send_response(200)
    body = data[start:]
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    cut = self.state["cut"].pop(path.name, None)
    self.wfile.write(body[:cut] if cut is not None else body)


@pytest.fixture
def server(tmp_path, monkeypatch):
  """A loopback server over a copy of the MNIST files; sets the URL variable."""
  if not (SHARED / "mnist").is_dir():
    pytest.skip(f"No offline raw datasets at {SHARED} (set MARGIN_JAX_DATA).")
  root = tmp_path / "www"
  shutil.copytree(SHARED / "mnist", root / "mnist")
  state = {"requests": [], "ranges": True, "cut": {}, "root": root}
  handler = functools.partial(_Handler, directory=str(root), server_state=state)
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  monkeypatch.setenv(download.URL_VARIABLE, f"http://127.0.0.1:{httpd.server_port}")
  monkeypatch.delenv("MARGIN_JAX_DATA", raising=False)
  yield state
  httpd.shutdown()
  httpd.server_close()


def _prepared_files(data_dir):
  folder = pathlib.Path(tfds.builder("mnist", data_dir=data_dir).data_path)
  return {p.name: p.read_bytes() for p in folder.glob("*.array_record*")}


def test_download_prepare_load_equals_the_offline_dataset(server, tmp_path):
  downloaded = load.load_arrays("mnist", data_dir=tmp_path / "online")
  offline_dir = tmp_path / "offline"
  prepare.build("mnist", source_dir=SHARED, data_dir=offline_dir)
  reference = load.load_arrays("mnist", data_dir=offline_dir)
  for split in ("train", "test"):
    for got, want in zip(downloaded[split], reference[split]):
      np.testing.assert_array_equal(got, want)
  files = _prepared_files(tmp_path / "online")
  assert files and files == _prepared_files(offline_dir)
  cache = tmp_path / "online" / "downloads" / "mnist"
  assert sorted(p.name for p in cache.iterdir()) == MNIST_FILES
  # A second load neither downloads nor prepares again.
  count = len(server["requests"])
  load.load_arrays("mnist", data_dir=tmp_path / "online")
  assert len(server["requests"]) == count


def _corrupt(path):
  """Rewrites a valid gzip of IDX bytes with one payload byte changed."""
  data = bytearray(gzip.decompress(path.read_bytes()))
  data[-1] ^= 0xFF
  path.write_bytes(gzip.compress(bytes(data)))


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_a_bad_file_names_its_checksums_and_leaves_nothing_trusted(server, tmp_path, damage):
  served = server["root"] / "mnist" / "t10k-labels-idx1-ubyte.gz"
  if damage == "corrupt":
    _corrupt(served)
    actual = r"[0-9a-f]{32}"
  else:
    served.write_bytes(served.read_bytes()[:-100])
    actual = r"unreadable \(.*\)"
  expected = download.CHECKSUMS["mnist"][served.name][1]
  with pytest.raises(
    download.ChecksumError,
    match=rf"t10k-labels-idx1-ubyte.gz downloaded from http://127.0.0.1:\d+/mnist/t10k-labels-idx1-ubyte.gz"
    rf" is corrupt or truncated: its MD5 of the uncompressed bytes is {actual}, expected {expected}",
  ):
    load.load_arrays("mnist", data_dir=tmp_path / "tfds")
  cache = tmp_path / "tfds" / "downloads" / "mnist"
  assert not (cache / served.name).exists()
  assert not list(cache.glob("*.part"))
  assert not tfds.builder("mnist", data_dir=tmp_path / "tfds").is_prepared()
  assert not (tmp_path / "tfds" / "mnist").exists()
  # Once the server is mended, the next run downloads the file again.
  shutil.copy(SHARED / "mnist" / served.name, served)
  assert load.load_arrays("mnist", data_dir=tmp_path / "tfds")["test"][1].shape == (10_000,)


def test_a_corrupted_cached_file_is_removed_not_trusted(server, tmp_path):
  cache = download.download("mnist", tmp_path)
  cached = cache / "mnist" / "train-labels-idx1-ubyte.gz"
  _corrupt(cached)
  with pytest.raises(download.ChecksumError, match=r"train-labels-idx1-ubyte.gz .* expected"):
    download.download("mnist", tmp_path)
  assert not cached.exists()
  download.download("mnist", tmp_path)  # Fetched again, verified.
  assert cached.read_bytes() == (SHARED / "mnist" / cached.name).read_bytes()


def test_an_unreachable_server_names_the_url_and_the_offline_alternative(tmp_path, monkeypatch):
  with socket.socket() as s:  # A loopback port that nothing listens on.
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  monkeypatch.setenv(download.URL_VARIABLE, f"http://127.0.0.1:{port}/")
  monkeypatch.delenv("MARGIN_JAX_DATA", raising=False)
  with pytest.raises(ConnectionError) as error:
    load.load_arrays("fashion_mnist", data_dir=tmp_path)
  message = str(error.value)
  assert f"http://127.0.0.1:{port}/fashion_mnist/train-images-idx3-ubyte.gz" in message
  assert "MARGIN_JAX_DATA" in message and "python -m margin_jax.data.prepare" in message
  assert not tfds.builder("fashion_mnist", data_dir=tmp_path).is_prepared()


@pytest.mark.parametrize("ranges", [True, False], ids=["resumes", "restarts"])
def test_an_interrupted_download_resumes_or_restarts(server, tmp_path, ranges):
  name = "train-images-idx3-ubyte.gz"
  size = (server["root"] / "mnist" / name).stat().st_size
  server["ranges"] = ranges
  server["cut"][name] = size // 3  # The connection drops after a third.
  with pytest.raises(ConnectionError, match=rf"{name}.*resumes on the next run"):
    download.download("mnist", tmp_path)
  part = tmp_path / "mnist" / f"{name}.part"
  assert part.stat().st_size == size // 3 and not (tmp_path / "mnist" / name).exists()
  download.download("mnist", tmp_path)
  assert (tmp_path / "mnist" / name).read_bytes() == (SHARED / "mnist" / name).read_bytes()
  assert not part.exists()
  assert (f"/mnist/{name}", f"bytes={size // 3}-") in server["requests"]


def test_a_cifar_tarball_is_checked_by_sha256(server, tmp_path):
  (server["root"] / "cifar10").mkdir()
  (server["root"] / "cifar10" / "cifar-10-binary.tar.gz").write_bytes(b"not a tarball")
  with pytest.raises(
    download.ChecksumError,
    match=r"cifar-10-binary.tar.gz .* its SHA-256 is [0-9a-f]{64}, expected c4a38c50",
  ):
    download.download("cifar10", tmp_path)
  assert not list((tmp_path / "cifar10").iterdir())
