"""Preparation of tfds datasets from raw files: builders, `build`, and the CLI.

Each builder is tfds' own (same name, version, features) with the download
replaced by `margin_jax.data.raw`, so the prepared dataset is the one tfds'
download would give and loading goes through ``tfds.data_source`` either way.
Files are ArrayRecord; no TensorFlow is needed. The command line is
``python -m margin_jax.data.prepare --source DIR --data-dir DIR [--datasets ...]``.
"""

import argparse
import os
import pathlib
import struct
import tempfile
import zlib

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import cifar as tfds_cifar
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from margin_jax.data import raw
from margin_jax.data import registry


def default_data_dir() -> str:
  """``$TFDS_DATA_DIR``, else tfds' default ``~/tensorflow_datasets``."""
  return tfds.core.constants.get_default_data_dir()


def _chunk(tag: bytes, data: bytes) -> bytes:
  crc = zlib.crc32(tag + data)
  return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def _encode(image):
  """Encodes a uint8 ``[H, W, 1 or 3]`` array as PNG; encoded files pass as is.

  A minimal lossless PNG writer: 8-bit grey or RGB, no row filters, stored
  (level 0) deflate. Files are larger than tfds' own PNGs, but writing is
  ~20x faster than PIL for these tiny images; any PNG decoder reads them.
  """
  if isinstance(image, bytes):
    return image
  height, width, channels = image.shape
  rows = np.zeros((height, 1 + width * channels), np.uint8)  # Filter byte 0.
  rows[:, 1:] = image.reshape(height, width * channels)
  header = struct.pack(">IIBBBBB", width, height, 8, {1: 0, 3: 2}[channels], 0, 0, 0)
  return b"".join(
    (
      b"\x89PNG\r\n\x1a\n",
      _chunk(b"IHDR", header),
      _chunk(b"IDAT", zlib.compress(rows.tobytes(), 0)),
      _chunk(b"IEND", b""),
    )
  )


class _FromRawSplits:
  """Builder mixin: examples come from `raw.read_raw` splits, not a download."""

  code_path = None  # No checksums file to look up: nothing is downloaded.

  def __init__(self, *, raw_splits=None, label_names=None, **kwargs):
    self._raw_splits = raw_splits
    self._label_names = label_names or {}
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    if self._raw_splits is None:
      raise FileNotFoundError(
        f"Dataset {self.name!r} is built from local raw files only: run"
        " `python -m margin_jax.data.prepare --source DIR --data-dir DIR`."
      )
    for feature, names in self._label_names.items():
      self.info.features[feature].names = names
    return {
      split: self._generate_examples(split, values) for split, values in self._raw_splits.items()
    }

  def _generate_examples(self, split, values):
    with_id = "id" in self.info.features  # tfds' CIFAR: "train_00042".
    for i in range(len(values["label"])):
      example = {k: _encode(v[i]) if k == "image" else v[i] for k, v in values.items()}
      if with_id:
        example["id"] = f"{split}_{i:05d}"
      yield i, example


class _Mnist(_FromRawSplits, tfds_mnist.MNIST, skip_registration=True):
  name = "mnist"


class _FashionMnist(_FromRawSplits, tfds_mnist.FashionMNIST, skip_registration=True):
  name = "fashion_mnist"


class _Cifar10(_FromRawSplits, tfds_cifar.Cifar10, skip_registration=True):
  name = "cifar10"


class _Cifar100(_FromRawSplits, tfds_cifar.Cifar100, skip_registration=True):
  name = "cifar100"


class Cifar10Jpeg(_FromRawSplits, tfds.core.GeneratorBasedBuilder):
  """CIFAR-10 from an image-folder tree of JPEG files (not byte-exact).

  The offline copy in ``../shared/datasets/cifar10_jpeg`` stores every image as
  a JPEG of quality ~75, so it is registered under its own name; results on it
  are reported as "CIFAR-10 (JPEG q75 copy)". The JPEG files are stored as is.
  """

  name = "cifar10_jpeg"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Image folder {train,test}/<class>/*.jpg."}

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      description=self.__doc__,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(32, 32, 3), encoding_format="jpeg"),
          "label": tfds.features.ClassLabel(names=raw.CIFAR10_LABEL_NAMES),
        }
      ),
      supervised_keys=("image", "label"),
      homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
      citation=tfds_cifar._CITATION,  # pylint: disable=protected-access
    )


_BUILDERS = {b.name: b for b in (_Mnist, _FashionMnist, _Cifar10, _Cifar100, Cifar10Jpeg)}


def _verify(builder, splits, spec: registry.DatasetSpec) -> None:
  """Reads the freshly built dataset back: split sizes and image shapes."""
  sources = builder.as_data_source()
  for split, values in splits.items():
    expected = len(values["label"])
    if len(sources[split]) != expected:
      raise RuntimeError(
        f"{builder.data_path}: split {split!r} has {len(sources[split])}"
        f" examples after preparation, expected {expected}."
      )
    for i in sorted({0, expected - 1}):
      shape = np.shape(sources[split][i]["image"])
      if shape != spec.image_shape:
        raise RuntimeError(
          f"{builder.data_path}: {split}[{i}] has image shape {shape}, expected {spec.image_shape}."
        )


def build(name: str, *, source_dir, data_dir=None) -> pathlib.Path:
  """Builds tfds dataset ``name`` from raw files, atomically.

  The raw files in ``<source_dir>/<name>/`` are only read. The dataset is built
  in a temporary directory inside ``data_dir``, read back and checked, and only
  then renamed to ``<data_dir>/<name>/<version>``: an interrupted or failed run
  leaves nothing that tfds (or a later call) would accept as prepared.

  Args:
    name: a dataset of `DATASETS` with ``offline=True``.
    source_dir: the directory holding one folder of raw files per dataset.
    data_dir: the tfds data directory; default `default_data_dir()`.

  Returns:
    The prepared dataset's directory (returned at once if already prepared).
  """
  spec = registry.get_spec(name)
  if not spec.offline:
    raise ValueError(
      f"Dataset {name!r} has no offline raw-file preparation; expected one of {sorted(_BUILDERS)}."
    )
  builder_cls = _BUILDERS[name]
  data_dir = pathlib.Path(data_dir or default_data_dir()).expanduser()
  final = builder_cls(data_dir=data_dir).data_path
  if builder_cls(data_dir=data_dir).is_prepared():
    return pathlib.Path(final)
  splits, label_names = raw.read_raw(name, pathlib.Path(source_dir) / name)
  data_dir.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix=f".incomplete-{name}-", dir=data_dir) as tmp:
    builder = builder_cls(
      raw_splits=splits,
      label_names=label_names,
      data_dir=tmp,
      file_format="array_record",
    )
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
        compute_stats=tfds.download.ComputeStatsMode.SKIP
      )
    )
    _verify(builder, splits, spec)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
      os.rename(builder.data_path, final)
    except OSError as e:
      if not builder_cls(data_dir=data_dir).is_prepared():  # Not a lost race.
        raise FileExistsError(
          f"{final} exists but is not a prepared dataset (no"
          " dataset_info.json); remove it and prepare again."
        ) from e
  return pathlib.Path(final)


def main(argv=None) -> None:
  """Parses the command line and prepares each requested dataset."""
  preparable = [n for n, s in registry.DATASETS.items() if s.offline]
  parser = argparse.ArgumentParser(
    prog="python -m margin_jax.data.prepare",
    description="Build tfds datasets from local raw files, atomically.",
  )
  parser.add_argument(
    "--source",
    default=os.environ.get("MARGIN_JAX_DATA"),
    help="folder with <dataset>/<raw files> (default: $MARGIN_JAX_DATA)",
  )
  parser.add_argument(
    "--data-dir",
    default=default_data_dir(),
    help="tfds data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
  )
  parser.add_argument(
    "--datasets",
    nargs="+",
    choices=preparable,
    help="datasets to prepare (default: every one with raw files in --source)",
  )
  args = parser.parse_args(argv)
  if not args.source:
    parser.error("--source is required when $MARGIN_JAX_DATA is not set")
  source = pathlib.Path(args.source)
  names = args.datasets or [n for n in preparable if raw.raw_files_present(n, source / n)]
  if not names:
    parser.error(f"no raw files of {preparable} found under {source}")
  for name in names:
    print(f"{name}: {build(name, source_dir=source, data_dir=args.data_dir)}")
