"""Readers for the official raw files: IDX ``.gz``, CIFAR tarballs, image folders.

Every reader only opens its inputs for reading, returns whole splits in memory
and raises `FileNotFoundError` or `ValueError` naming the file and what was
expected. The expected layout under a source directory is
``<source>/<dataset name>/<official file names>``, as in ``../shared/datasets``.
"""

import gzip
import io
import pathlib
import pickle
import tarfile
import zlib

import numpy as np
from PIL import Image

# A split as {feature name: values}, e.g. {"image": uint8 [N, H, W, C],
# "label": int64 [N]}; "image" may instead be a list of encoded image files.
Split = dict[str, object]

CIFAR10_LABEL_NAMES = (
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
)
_READ_ERRORS = (OSError, EOFError, zlib.error, tarfile.TarError)

_IDX_FILES = {
  "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _require(path: pathlib.Path) -> pathlib.Path:
  if not path.is_file():
    raise FileNotFoundError(f"Raw file {path} does not exist.")
  return path


def read_idx(path, *, ndim: int) -> np.ndarray:
  """Reads a gzip-compressed IDX file of unsigned bytes.

  Args:
    path: a ``*-idx{ndim}-ubyte.gz`` file.
    ndim: the expected number of dimensions (3 for images, 1 for labels).

  Returns:
    A uint8 array of the shape written in the file's header.
  """
  path = _require(pathlib.Path(path))
  try:
    with gzip.open(path, "rb") as f:
      data = f.read()
  except _READ_ERRORS as e:
    raise ValueError(f"{path}: truncated or corrupt gzip file ({e}).") from e
  magic = bytes([0, 0, 0x08, ndim])
  if data[:4] != magic:
    raise ValueError(
      f"{path}: IDX magic number is {data[:4].hex()}, expected {magic.hex()}"
      f" (unsigned bytes, {ndim} dimensions)."
    )
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
  payload = len(data) - 4 - 4 * ndim
  if payload != np.prod(shape):
    raise ValueError(
      f"{path}: header promises {shape[0]} items of shape {shape[1:]}"
      f" ({np.prod(shape)} bytes) but the file holds {payload} bytes."
    )
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _checked_labels(labels, num_classes: int, where) -> np.ndarray:
  labels = np.asarray(labels, np.int64)
  if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
    raise ValueError(
      f"{where}: labels span [{labels.min()}, {labels.max()}], expected [0, {num_classes})."
    )
  return labels


def read_idx_dataset(folder) -> dict[str, Split]:
  """Reads MNIST or Fashion-MNIST from the four official IDX ``.gz`` files."""
  folder = pathlib.Path(folder)
  splits = {}
  for split, (image_file, label_file) in _IDX_FILES.items():
    images = read_idx(folder / image_file, ndim=3)
    labels = read_idx(folder / label_file, ndim=1)
    if len(images) != len(labels):
      raise ValueError(
        f"{folder / image_file} holds {len(images)} images but"
        f" {folder / label_file} holds {len(labels)} labels; expected equal."
      )
    splits[split] = {
      "image": images[..., None],
      "label": _checked_labels(labels, 10, folder / label_file),
    }
  return splits


def _tar_members(path) -> dict[str, bytes]:
  """Returns {member name: bytes} of every regular file in a tarball."""
  path = _require(pathlib.Path(path))
  try:
    with tarfile.open(path, "r:*") as tar:
      return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
  except _READ_ERRORS as e:
    raise ValueError(f"{path}: truncated or corrupt tar archive ({e}).") from e


def _member(members: dict[str, bytes], tarball, name: str) -> bytes:
  if name not in members:
    raise ValueError(f"{tarball}: member {name!r} is missing.")
  return members[name]


# Per dataset and format: tarball, member prefix, train/test members, meta.
_CIFAR_FILES = {
  ("cifar10", "python"): (
    "cifar-10-python.tar.gz",
    "cifar-10-batches-py/",
    [f"data_batch_{i}" for i in range(1, 6)],
    ["test_batch"],
    "batches.meta",
  ),
  ("cifar10", "binary"): (
    "cifar-10-binary.tar.gz",
    "cifar-10-batches-bin/",
    [f"data_batch_{i}.bin" for i in range(1, 6)],
    ["test_batch.bin"],
    None,
  ),
  ("cifar100", "python"): (
    "cifar-100-python.tar.gz",
    "cifar-100-python/",
    ["train"],
    ["test"],
    "meta",
  ),
  ("cifar100", "binary"): (
    "cifar-100-binary.tar.gz",
    "cifar-100-binary/",
    ["train.bin"],
    ["test.bin"],
    None,
  ),
}
# Per label feature: python batch key, python meta key, binary names file.
# Binary records hold the label bytes in this order, then 3072 pixels.
_CIFAR_LABELS = {
  "cifar10": {"label": (b"labels", b"label_names", "batches.meta.txt")},
  "cifar100": {
    "coarse_label": (b"coarse_labels", b"coarse_label_names", "coarse_label_names.txt"),
    "label": (b"fine_labels", b"fine_label_names", "fine_label_names.txt"),
  },
}


def _unpickle(members, tarball, name: str) -> dict:
  try:
    return pickle.loads(_member(members, tarball, name), encoding="bytes")
  except (pickle.UnpicklingError, EOFError, ValueError) as e:
    raise ValueError(f"{tarball}: member {name!r} is not a valid pickle ({e}).") from e


def _cifar_python_batch(members, tarball, name, labels) -> Split:
  batch = _unpickle(members, tarball, name)
  try:
    images = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32)
    split = {k: np.asarray(batch[key]) for k, (key, _, _) in labels.items()}
  except (KeyError, ValueError, TypeError) as e:
    raise ValueError(
      f"{tarball}: member {name!r} is not a CIFAR batch with a [N, 3072]"
      f" b'data' array and {[v[0] for v in labels.values()]} ({e!r})."
    ) from e
  return {"image": images.transpose(0, 2, 3, 1)} | split


def _cifar_binary_batch(members, tarball, name, labels) -> Split:
  data = np.frombuffer(_member(members, tarball, name), np.uint8)
  record = len(labels) + 3072
  if data.size % record:
    raise ValueError(
      f"{tarball}: member {name!r} holds {data.size} bytes, expected a"
      f" multiple of the {record}-byte record (truncated?)."
    )
  data = data.reshape(-1, record)
  images = data[:, len(labels) :].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return {"image": images} | {k: data[:, i] for i, k in enumerate(labels)}


def read_cifar(folder, name: str) -> tuple[dict[str, Split], dict[str, list]]:
  """Reads CIFAR-10 or CIFAR-100 from the official python or binary tarball.

  Args:
    folder: directory holding ``cifar-10[0]-{python,binary}.tar.gz`` (the
      python one is used when both are there).
    name: ``"cifar10"`` or ``"cifar100"``.

  Returns:
    ``(splits, label_names)``: splits in the official file order, and
    {label feature: class names} from the tarball's meta file(s).
  """
  folder = pathlib.Path(folder)
  fmt = "python" if (folder / _CIFAR_FILES[name, "python"][0]).is_file() else "binary"
  tar_name, prefix, train, test, meta = _CIFAR_FILES[name, fmt]
  tarball = folder / tar_name
  members = _tar_members(tarball)
  labels = _CIFAR_LABELS[name]
  read_batch = _cifar_python_batch if fmt == "python" else _cifar_binary_batch
  splits = {}
  for split, files in (("train", train), ("test", test)):
    batches = [read_batch(members, tarball, prefix + f, labels) for f in files]
    splits[split] = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  if fmt == "python":
    meta = _unpickle(members, tarball, prefix + meta)
    names = {k: [n.decode() for n in meta[v[1]]] for k, v in labels.items()}
  else:
    names = {
      k: _member(members, tarball, prefix + v[2]).decode().split() for k, v in labels.items()
    }
  for split in splits.values():
    for k in labels:
      split[k] = _checked_labels(split[k], len(names[k]), tarball)
  return splits, names


def read_image_folder(folder, name: str) -> dict[str, Split]:
  """Reads an image-folder tree ``[<name>/]{train,test}/<class>/*.{jpg,png}``.

  The tree is read from ``<folder>/<name>.tar`` if present (never extracted),
  else from the directory ``folder`` itself. Images are kept as their encoded
  files (no re-encoding) after checking each one decodes to an RGB 32x32
  image. The classes must be exactly CIFAR-10's, in both splits.

  Args:
    folder: the dataset's source directory.
    name: the dataset name (``"cifar10_jpeg"``).

  Returns:
    {split: {"image": list of encoded files, "label": int64 [N]}}, sorted by
    (class, file name).
  """
  folder = pathlib.Path(folder)
  tar_path = folder / f"{name}.tar"
  if tar_path.is_file():
    files, origin = _tar_members(tar_path), tar_path
  elif (folder / "train").is_dir():
    files = {
      str(p.relative_to(folder)): p.read_bytes()
      for p in sorted(folder.glob("*/*/*"))
      if p.is_file()
    }
    origin = folder
  else:
    raise FileNotFoundError(
      f"Neither {tar_path} nor an image folder {folder}/train/<class>/ exists."
    )
  examples = {"train": [], "test": []}
  for path in sorted(files):
    split, cls, file = pathlib.PurePosixPath(path).parts[-3:]
    if split not in examples or not file.lower().endswith((".jpg", ".jpeg", ".png")):
      continue
    if cls not in CIFAR10_LABEL_NAMES:
      raise ValueError(
        f"{origin}: {path} is in class folder {cls!r}, expected one of {CIFAR10_LABEL_NAMES}."
      )
    try:
      with Image.open(io.BytesIO(files[path])) as image:
        shape, mode = np.asarray(image).shape, image.mode
    except (OSError, SyntaxError, ValueError) as e:
      raise ValueError(f"{origin}: {path} is not a readable image ({e}).") from e
    if shape != (32, 32, 3) or mode != "RGB":
      raise ValueError(
        f"{origin}: {path} is a {mode} image of shape {shape}, expected RGB (32, 32, 3)."
      )
    examples[split].append((files[path], CIFAR10_LABEL_NAMES.index(cls)))
  splits = {}
  for split, pairs in examples.items():
    labels = np.array([label for _, label in pairs], np.int64)
    counts = np.bincount(labels, minlength=len(CIFAR10_LABEL_NAMES))
    if not counts.min() == counts.max() > 0:
      raise ValueError(
        f"{origin}: split {split!r} has {dict(zip(CIFAR10_LABEL_NAMES, counts.tolist()))}"
        " images per class; expected the same non-zero number in every class"
        " (truncated archive?)."
      )
    splits[split] = {"image": [file for file, _ in pairs], "label": labels}
  return splits


def raw_files_present(name: str, folder) -> bool:
  """Whether ``folder`` holds raw files that `read_raw` could read for ``name``."""
  folder = pathlib.Path(folder)
  if name in ("mnist", "fashion_mnist"):
    return (folder / _IDX_FILES["train"][0]).is_file()
  if name in ("cifar10", "cifar100"):
    return any((folder / _CIFAR_FILES[name, f][0]).is_file() for f in ("python", "binary"))
  if name == "cifar10_jpeg":
    return (folder / f"{name}.tar").is_file() or (folder / "train").is_dir()
  return False


def read_raw(name: str, folder) -> tuple[dict[str, Split], dict[str, list]]:
  """Reads dataset ``name`` from its raw files in ``folder``.

  Returns:
    ``(splits, label_names)``: {split: {feature: values}} and, where the raw
    files name the classes, {label feature: class names}.
  """
  if name in ("mnist", "fashion_mnist"):
    return read_idx_dataset(folder), {}
  if name in ("cifar10", "cifar100"):
    return read_cifar(folder, name)
  if name == "cifar10_jpeg":
    return read_image_folder(folder, name), {}
  raise ValueError(f"No offline raw-file reader for dataset {name!r}.")
