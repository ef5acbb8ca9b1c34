"""Downloads the official raw files of MNIST, Fashion-MNIST and CIFAR, verified.

No TensorFlow: the files are fetched with the standard library into
``<cache>/<dataset>/<official file name>`` and then built by the project's own
builders (`margin_jax.data.prepare.build`), so a downloaded dataset is
byte for byte the one prepared offline from the same files.

Each file is written to ``<file>.part`` (an interrupted download resumes from
there with an HTTP range request, or restarts where the server ignores ranges)
and renamed to its final name only after its checksum matched: a file under its
official name in the cache has been verified. The checksums are the published
MD5 sums of the *uncompressed* IDX files (MNIST, Fashion-MNIST) and the SHA-256
of the CIFAR tarballs that tensorflow-datasets records.

Files come from ``$MARGIN_JAX_DOWNLOAD_URL/<dataset>/<file>`` when that is set,
else from the official hosts.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import pathlib
import urllib.error
import urllib.request

import tqdm

URL_VARIABLE = "MARGIN_JAX_DOWNLOAD_URL"

# The official hosts (those tensorflow-datasets downloads from).
OFFICIAL_URLS = {
  "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
  "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
  "cifar10": "https://www.cs.toronto.edu/~kriz/",
  "cifar100": "https://www.cs.toronto.edu/~kriz/",
}

# Per dataset: {official file name: (hash, digest of what is hashed)}. "md5 of
# the gunzipped bytes" for IDX files, "sha256" of the file for tarballs.
CHECKSUMS = {
  "mnist": {
    "train-images-idx3-ubyte.gz": ("gunzip-md5", "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte.gz": ("gunzip-md5", "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte.gz": ("gunzip-md5", "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte.gz": ("gunzip-md5", "27ae3e4e09519cfbb04c329615203637"),
  },
  "fashion_mnist": {
    "train-images-idx3-ubyte.gz": ("gunzip-md5", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte.gz": ("gunzip-md5", "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte.gz": ("gunzip-md5", "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte.gz": ("gunzip-md5", "15d484375f8d13e6eb1aabb0c3f46965"),
  },
  "cifar10": {
    "cifar-10-binary.tar.gz": (
      "sha256",
      "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    ),
  },
  "cifar100": {
    "cifar-100-binary.tar.gz": (
      "sha256",
      "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
    ),
  },
}

_CHUNK = 1 << 20


class ChecksumError(ValueError):
  """A downloaded file's checksum is not the published one."""


def file_url(name: str, file: str) -> str:
  """Where ``file`` of dataset ``name`` is fetched from."""
  base = os.environ.get(URL_VARIABLE)
  base = f"{base.rstrip('/')}/{name}/" if base else OFFICIAL_URLS[name]
  return base + file


def _digest(path: pathlib.Path, kind: str) -> str:
  """Hex digest of ``path`` (``"sha256"``) or of its gunzipped bytes."""
  if kind == "sha256":
    opener, h = open, hashlib.sha256()
  else:
    opener, h = gzip.open, hashlib.md5()
  try:
    with opener(path, "rb") as f:
      while chunk := f.read(_CHUNK):
        h.update(chunk)
  except (OSError, EOFError) as e:  # A truncated or corrupt gzip stream.
    return f"unreadable ({e})"
  return h.hexdigest()


def _verify(path: pathlib.Path, url: str, kind: str, expected: str) -> None:
  """Removes ``path`` (downloaded from ``url``) and raises `ChecksumError`
  unless its digest matches."""
  actual = _digest(path, kind)
  if actual != expected:
    path.unlink()
    what = "MD5 of the uncompressed bytes" if kind == "gunzip-md5" else "SHA-256"
    raise ChecksumError(
      f"{url.rsplit('/', 1)[-1]} downloaded from {url} is corrupt or truncated: its {what}"
      f" is {actual}, expected {expected}. The file was removed; run again"
      " to download it anew."
    )


def _fetch(url: str, part: pathlib.Path) -> None:
  """Appends the rest of ``url`` to ``part`` (a range request), with progress."""
  have = part.stat().st_size if part.exists() else 0
  request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
  try:
    response = urllib.request.urlopen(request, timeout=60)
  except urllib.error.HTTPError as e:
    if e.code != 416:  # 416: the range starts at the end, the file is whole.
      raise
    return
  with response:
    resumed = response.status == 206
    total = response.headers.get("Content-Length")
    total = int(total) + (have if resumed else 0) if total else None
    with (
      open(part, "ab" if resumed else "wb") as f,
      tqdm.tqdm(
        total=total,
        initial=have if resumed else 0,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=part.name[: -len(".part")],
        dynamic_ncols=True,
      ) as bar,
    ):
      while chunk := response.read(_CHUNK):
        f.write(chunk)
        bar.update(len(chunk))
      if total is not None and bar.n < total:  # The connection dropped.
        raise http.client.IncompleteRead(b"", total - bar.n)


def download(name: str, cache_dir) -> pathlib.Path:
  """Downloads and verifies the official raw files of ``name``.

  Args:
    name: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"`` or ``"cifar100"``.
    cache_dir: receives ``<cache_dir>/<name>/<official file>``; files already
      there are checked, not fetched again.

  Returns:
    ``cache_dir``, the source directory for `margin_jax.data.prepare.build`.

  Raises:
    ChecksumError: a file's checksum is not the published one (the file is
      removed).
    ConnectionError: the server cannot be reached or answers with an error;
      the message names the URL and the offline alternative.
  """
  if name not in CHECKSUMS:
    raise ValueError(f"No download for dataset {name!r}; expected one of {sorted(CHECKSUMS)}.")
  folder = pathlib.Path(cache_dir).expanduser() / name
  folder.mkdir(parents=True, exist_ok=True)
  for file, (kind, expected) in CHECKSUMS[name].items():
    path, url = folder / file, file_url(name, file)
    if path.exists():
      _verify(path, url, kind, expected)
      continue
    part = folder / f"{file}.part"
    try:
      _fetch(url, part)
    except (OSError, http.client.HTTPException) as e:  # URLError is an OSError.
      raise ConnectionError(
        f"Cannot download {url} ({e}). Without network access, put the"
        f" official raw files in <DIR>/{name}/ and set MARGIN_JAX_DATA=<DIR>,"
        f" or run `python -m margin_jax.data.prepare --source <DIR>`; set"
        f" {URL_VARIABLE} to use a mirror. The partial download is kept in"
        f" {part} and resumes on the next run."
      ) from e
    _verify(part, url, kind, expected)
    os.replace(part, path)
  return pathlib.Path(cache_dir).expanduser()
