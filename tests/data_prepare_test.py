"""Tests for margin_jax.data: raw readers, offline tfds preparation, loading."""

import gzip
import hashlib
import io
import os
import pathlib
import pickle
import struct
import tarfile

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking as tfds_mocking

from margin_jax import data as data_lib
from margin_jax.data import load
from margin_jax.data import prepare
from margin_jax.data import raw
from margin_jax.data import registry

SHARED = pathlib.Path(
  os.environ.get("MARGIN_JAX_DATA")
  or pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets"
)


@pytest.fixture(autouse=True)
def _no_default_source(monkeypatch):
  monkeypatch.delenv("MARGIN_JAX_DATA", raising=False)


# --- Writers of tiny synthetic raw files ------------------------------------


def _write_idx(path, array):
  header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _write_mnist(folder, sizes=(("train", 30), ("test", 12))):
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  written = {}
  for split, n in sizes:
    prefix = "train" if split == "train" else "t10k"
    images = rng.integers(0, 256, (n, 28, 28), np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    written[split] = (images[..., None], labels)
  return written


def _write_tar(path, members, mode="w:gz"):
  with tarfile.open(path, mode) as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))


def _cifar_arrays(rng, n, num_labels, num_classes):
  images = rng.integers(0, 256, (n, 32, 32, 3), np.uint8)
  labels = rng.integers(0, num_classes, (num_labels, n)).astype(np.uint8)
  return images, labels


def _write_cifar10_python(folder):
  """cifar-10-python.tar.gz with 5 x 3 train and 4 test images."""
  folder.mkdir(parents=True)
  rng = np.random.default_rng(1)
  members, written = {}, {}
  for split, files in (
    ("train", [f"data_batch_{i}" for i in range(1, 6)]),
    ("test", ["test_batch"]),
  ):
    images, labels = _cifar_arrays(rng, 3 * len(files) + (split == "test"), 1, 10)
    for i, file in enumerate(files):
      part = slice(3 * i, 3 * (i + 1) if split == "train" else None)
      members[f"cifar-10-batches-py/{file}"] = pickle.dumps(
        {
          b"data": images[part].transpose(0, 3, 1, 2).reshape(-1, 3072),
          b"labels": labels[0, part].tolist(),
        }
      )
    written[split] = (images, labels[0])
  names = [f"class{i}".encode() for i in range(10)]
  members["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": names})
  _write_tar(folder / "cifar-10-python.tar.gz", members)
  return written


def _write_cifar100_binary(folder):
  """cifar-100-binary.tar.gz: records of (coarse, fine, 3072 pixels)."""
  folder.mkdir(parents=True)
  rng = np.random.default_rng(2)
  members, written = {}, {}
  for split, n in (("train", 7), ("test", 5)):
    images, labels = _cifar_arrays(rng, n, 2, 20)
    records = np.concatenate([labels.T, images.transpose(0, 3, 1, 2).reshape(n, 3072)], axis=1)
    members[f"cifar-100-binary/{split}.bin"] = records.astype(np.uint8).tobytes()
    written[split] = (images, labels[1], labels[0])
  members["cifar-100-binary/coarse_label_names.txt"] = "\n".join(
    f"coarse{i}" for i in range(20)
  ).encode()
  members["cifar-100-binary/fine_label_names.txt"] = "\n".join(
    f"fine{i}" for i in range(100)
  ).encode()
  _write_tar(folder / "cifar-100-binary.tar.gz", members)
  return written


def _jpeg(image):
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="jpeg", quality=75)
  return buffer.getvalue()


def _image_folder_members(per_class=(("train", 2), ("test", 1))):
  rng = np.random.default_rng(3)
  return {
    f"cifar10_jpeg/{split}/{cls}/{i:04d}.jpg": _jpeg(rng.integers(0, 256, (32, 32, 3), np.uint8))
    for split, n in per_class
    for cls in raw.CIFAR10_LABEL_NAMES
    for i in range(n)
  }


def _decode(jpeg):
  return np.asarray(Image.open(io.BytesIO(jpeg)))


def _sorted_examples(images, labels):
  """Rows (image bytes + label) in a canonical order: tfds shuffles splits."""
  rows = np.concatenate(
    [
      np.asarray(images, np.uint8).reshape(len(images), -1),
      np.asarray(labels, np.uint8)[:, None],
    ],
    axis=1,
  )
  return np.sort(rows.view(f"V{rows.shape[1]}").ravel())


def _snapshot(folder):
  return {
    p: hashlib.md5(p.read_bytes()).hexdigest()
    for p in sorted(pathlib.Path(folder).rglob("*"))
    if p.is_file()
  }


# --- Raw readers: bad input gets a clear error -------------------------------


def test_read_idx(tmp_path):
  array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  _write_idx(tmp_path / "ok.gz", array)
  np.testing.assert_array_equal(raw.read_idx(tmp_path / "ok.gz", ndim=3), array)
  with pytest.raises(ValueError, match=r"ok.gz: IDX magic number is 00000803, expected 00000801"):
    raw.read_idx(tmp_path / "ok.gz", ndim=1)
  with gzip.open(tmp_path / "short.gz", "wb") as f:
    f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + bytes(4))
  with pytest.raises(ValueError, match=r"short.gz: header promises 5 items .* holds 4 bytes"):
    raw.read_idx(tmp_path / "short.gz", ndim=1)
  data = (tmp_path / "ok.gz").read_bytes()
  (tmp_path / "cut.gz").write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match=r"cut.gz: truncated or corrupt gzip"):
    raw.read_idx(tmp_path / "cut.gz", ndim=3)
  (tmp_path / "junk.gz").write_bytes(b"not a gzip file at all")
  with pytest.raises(ValueError, match=r"junk.gz: truncated or corrupt gzip"):
    raw.read_idx(tmp_path / "junk.gz", ndim=3)
  with pytest.raises(FileNotFoundError, match=r"missing.gz does not exist"):
    raw.read_idx(tmp_path / "missing.gz", ndim=3)


def test_read_idx_dataset_counts_must_agree(tmp_path):
  _write_mnist(tmp_path / "mnist")
  _write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(11, np.uint8))
  with pytest.raises(ValueError, match=r"holds 12 images but .*t10k-labels.* holds 11 labels"):
    raw.read_idx_dataset(tmp_path / "mnist")


def test_read_cifar_errors(tmp_path):
  _write_cifar100_binary(tmp_path / "cifar100")
  tarball = tmp_path / "cifar100" / "cifar-100-binary.tar.gz"
  data = tarball.read_bytes()
  tarball.write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match=r"cifar-100-binary.tar.gz: truncated or corrupt tar"):
    raw.read_cifar(tmp_path / "cifar100", "cifar100")
  _write_tar(tarball, {"cifar-100-binary/train.bin": bytes(3074 * 2 + 5)})
  with pytest.raises(
    ValueError,
    match=r"'cifar-100-binary/train.bin' holds 6153 bytes, expected a multiple of the 3074",
  ):
    raw.read_cifar(tmp_path / "cifar100", "cifar100")
  _write_tar(tarball, {"cifar-100-binary/train.bin": bytes(3074)})
  with pytest.raises(ValueError, match=r"member 'cifar-100-binary/test.bin' is missing"):
    raw.read_cifar(tmp_path / "cifar100", "cifar100")
  with pytest.raises(FileNotFoundError, match=r"cifar10/cifar-10-binary.tar.gz does not exist"):
    raw.read_cifar(tmp_path / "cifar10", "cifar10")


def test_read_image_folder_errors(tmp_path):
  members = _image_folder_members()
  members.pop("cifar10_jpeg/train/truck/0001.jpg")
  _write_tar(tmp_path / "cifar10_jpeg.tar", members, mode="w")
  with pytest.raises(ValueError, match=r"split 'train' has .*'truck': 1.* same non-zero number"):
    raw.read_image_folder(tmp_path, "cifar10_jpeg")
  members = _image_folder_members()
  members["cifar10_jpeg/test/cat/0000.jpg"] = b"\xff\xd8 broken"
  _write_tar(tmp_path / "cifar10_jpeg.tar", members, mode="w")
  with pytest.raises(ValueError, match=r"test/cat/0000.jpg is not a readable image"):
    raw.read_image_folder(tmp_path, "cifar10_jpeg")
  members = _image_folder_members()
  members["cifar10_jpeg/test/unicorn/0000.jpg"] = members["cifar10_jpeg/test/cat/0000.jpg"]
  _write_tar(tmp_path / "cifar10_jpeg.tar", members, mode="w")
  with pytest.raises(ValueError, match=r"class folder 'unicorn'"):
    raw.read_image_folder(tmp_path, "cifar10_jpeg")
  data = (tmp_path / "cifar10_jpeg.tar").read_bytes()
  (tmp_path / "cifar10_jpeg.tar").write_bytes(data[: len(data) // 2 + 100])
  with pytest.raises(ValueError, match=r"cifar10_jpeg.tar: truncated or corrupt tar"):
    raw.read_image_folder(tmp_path, "cifar10_jpeg")


# --- Offline preparation and loading ------------------------------------------


def test_load_prepares_mnist_offline_from_raw_files(tmp_path):
  written = _write_mnist(tmp_path / "src" / "mnist")
  before = _snapshot(tmp_path / "src")
  data = load.load_arrays("mnist", data_dir=tmp_path / "tfds", source_dir=tmp_path / "src")
  assert _snapshot(tmp_path / "src") == before  # Raw files only read.
  assert data["num_classes"] == 10
  for split, (images, labels) in written.items():
    got_images, got_labels = data[split]
    assert got_images.dtype == np.uint8 and got_images.shape == images.shape
    assert got_labels.dtype == np.int32 and got_labels.shape == labels.shape
    np.testing.assert_array_equal(
      _sorted_examples(got_images, got_labels), _sorted_examples(images, labels)
    )
  # The same tfds dataset as tfds' own: name, version, features.
  builder = tfds.builder("mnist", data_dir=tmp_path / "tfds")
  assert builder.is_prepared() and str(builder.version) == "3.0.1"
  assert builder.info.splits["train"].num_examples == 30
  assert sorted(os.listdir(tmp_path / "tfds")) == ["mnist"]  # No temp leftovers.


def test_prepare_cli_cifar10_python_tarball(tmp_path, capsys):
  written = _write_cifar10_python(tmp_path / "src" / "cifar10")
  prepare.main(["--source", str(tmp_path / "src"), "--data-dir", str(tmp_path / "tfds")])
  assert "cifar10:" in capsys.readouterr().out
  builder = tfds.builder("cifar10", data_dir=tmp_path / "tfds")
  assert builder.info.features["label"].names == [f"class{i}" for i in range(10)]
  test = tfds.data_source("cifar10", data_dir=tmp_path / "tfds", download=False)["test"]
  by_id = {ex["id"].decode(): ex for ex in test}
  assert sorted(by_id) == [f"test_{i:05d}" for i in range(4)]
  images, labels = written["test"]
  for i in range(4):
    np.testing.assert_array_equal(by_id[f"test_{i:05d}"]["image"], images[i])
    assert by_id[f"test_{i:05d}"]["label"] == labels[i]
  data = load.load_arrays("cifar10", data_dir=tmp_path / "tfds")
  assert data["train"][0].shape == (15, 32, 32, 3)


def test_prepare_cifar100_binary_tarball_with_coarse_labels(tmp_path):
  written = _write_cifar100_binary(tmp_path / "src" / "cifar100")
  path = prepare.build("cifar100", source_dir=tmp_path / "src", data_dir=tmp_path / "tfds")
  assert path == tmp_path / "tfds" / "cifar100" / "3.0.2"
  train = tfds.data_source("cifar100", data_dir=tmp_path / "tfds", download=False)["train"]
  images, labels, coarse = written["train"]
  for ex in train:
    i = int(ex["id"].decode().split("_")[1])
    np.testing.assert_array_equal(ex["image"], images[i])
    assert (ex["label"], ex["coarse_label"]) == (labels[i], coarse[i])
  names = tfds.builder("cifar100", data_dir=tmp_path / "tfds").info.features
  assert names["coarse_label"].names[3] == "coarse3" and names["label"].names[99] == "fine99"


def test_load_cifar10_jpeg_image_folder(tmp_path):
  members = _image_folder_members()
  (tmp_path / "src" / "cifar10_jpeg").mkdir(parents=True)
  _write_tar(tmp_path / "src" / "cifar10_jpeg" / "cifar10_jpeg.tar", members, mode="w")
  data = load.load_arrays("cifar10_jpeg", data_dir=tmp_path / "tfds", source_dir=tmp_path / "src")
  for split in ("train", "test"):
    files = {k: v for k, v in members.items() if f"/{split}/" in k}
    labels = [raw.CIFAR10_LABEL_NAMES.index(k.split("/")[2]) for k in files]
    np.testing.assert_array_equal(
      _sorted_examples(*data[split]),
      _sorted_examples(np.stack([_decode(f) for f in files.values()]), labels),
    )
  assert not tfds.builder("cifar10", data_dir=tmp_path / "tfds").is_prepared()


def test_failed_preparation_leaves_nothing_a_load_accepts(tmp_path, monkeypatch):
  _write_mnist(tmp_path / "src" / "mnist")

  def fail(*args):
    raise RuntimeError("interrupted")

  monkeypatch.setattr(prepare, "_verify", fail)
  with pytest.raises(RuntimeError, match="interrupted"):
    prepare.build("mnist", source_dir=tmp_path / "src", data_dir=tmp_path / "tfds")
  assert os.listdir(tmp_path / "tfds") == []
  assert not tfds.builder("mnist", data_dir=tmp_path / "tfds").is_prepared()
  # A partial dataset left by other means is refused, not read.
  partial = tmp_path / "tfds" / "mnist" / "3.0.1"
  partial.mkdir(parents=True)
  (partial / "mnist-train.array_record-00000-of-00001").write_bytes(b"partial")
  monkeypatch.undo()
  with pytest.raises(FileExistsError, match=r"mnist/3.0.1 exists but is not a prepared dataset"):
    load.load_arrays("mnist", data_dir=tmp_path / "tfds", source_dir=tmp_path / "src")


def test_unknown_or_unavailable_datasets(tmp_path):
  with pytest.raises(ValueError, match=r"Unknown dataset 'cifar11'; expected one of"):
    load.load_arrays("cifar11", data_dir=tmp_path)
  with pytest.raises(ValueError, match=r"'svhn_cropped' has no offline raw-file preparation"):
    prepare.build("svhn_cropped", source_dir=tmp_path, data_dir=tmp_path)
  with pytest.raises(
    FileNotFoundError,
    match=r"no prepared dataset in .*cifar10_jpeg and no raw files in .*src/cifar10_jpeg",
  ):
    load.load_arrays("cifar10_jpeg", data_dir=tmp_path / "tfds", source_dir=tmp_path / "src")


# MNIST and CIFAR are downloaded by margin_jax itself (data_download_test.py);
# a dataset without a margin_jax reader still goes through tfds' builder.
@pytest.mark.parametrize("name", ["svhn_cropped"])
def test_load_arrays_through_tfds_mock_data(tmp_path, monkeypatch, name):
  # tfds 4.9's mock installs `__getitems__` unbound (its `self` is missing).
  monkeypatch.setattr(
    tfds_mocking, "_getitems", lambda keys, generator: [generator[k] for k in keys]
  )
  spec = registry.get_spec(name)
  with tfds.testing.mock_data(num_examples=6):
    data = load.load_arrays(name, data_dir=tmp_path)
  assert data["num_classes"] == spec.num_classes
  for split in ("train", "test"):
    images, labels = data[split]
    assert images.shape == (6, *spec.image_shape) and images.dtype == np.uint8
    assert labels.shape == (6,) and labels.dtype == np.int32
    assert 0 <= labels.min() <= labels.max() < spec.num_classes


# --- The real MNIST and Fashion-MNIST (../shared/datasets) --------------------


@pytest.fixture(scope="session")
def real_arrays(tmp_path_factory):
  """Prepares and loads each real dataset once per test session."""
  if not (SHARED / "mnist").is_dir():
    pytest.skip(f"No offline raw datasets at {SHARED} (set MARGIN_JAX_DATA).")
  data_dir = tmp_path_factory.mktemp("tfds")
  cache = {}

  def get(name):
    if name not in cache:
      cache[name] = load.load_arrays(name, data_dir=data_dir, source_dir=SHARED)
    return cache[name]

  return get


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_real_idx_preparation_matches_the_idx_bytes(real_arrays, name):
  if not (SHARED / name).is_dir():
    pytest.skip(f"No raw {name} files at {SHARED / name}.")
  data = real_arrays(name)
  idx = raw.read_idx_dataset(SHARED / name)
  for split, count in (("train", 60_000), ("test", 10_000)):
    images, labels = data[split]
    assert images.shape == (count, 28, 28, 1) and labels.shape == (count,)
    np.testing.assert_array_equal(
      _sorted_examples(images, labels), _sorted_examples(idx[split]["image"], idx[split]["label"])
    )


def test_load_dataset_degrades_the_training_split_only(tiny_mnist):
  _, data_dir = tiny_mnist
  full = load.load_arrays("mnist", data_dir=data_dir)
  degraded = load.load_dataset(
    "mnist", data_dir=data_dir, train_fraction=0.5, label_noise=0.25, seed=3
  )
  images, labels = degraded["train"]
  kept = data_lib.class_balanced_subset(full["train"][1], 0.5, seed=3)
  assert abs(len(kept) - len(full["train"][1]) / 2) <= 10  # half of each class, rounded
  np.testing.assert_array_equal(images, full["train"][0][kept])
  assert np.sum(labels != full["train"][1][kept]) == round(0.25 * len(labels))
  for got, want in zip(degraded["test"], full["test"]):
    np.testing.assert_array_equal(got, want)
