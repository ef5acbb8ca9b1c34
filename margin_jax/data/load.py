"""Whole splits as in-memory uint8 arrays, read through tfds without TensorFlow."""

import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from margin_jax.data import degrade
from margin_jax.data import download
from margin_jax.data import prepare
from margin_jax.data import raw
from margin_jax.data import registry


def _ensure_prepared(name, spec, data_dir, source_dir) -> None:
  """Prepares ``name`` from local raw files, else from downloaded ones."""
  if tfds.builder(name, data_dir=data_dir).is_prepared():
    return
  raw_dir = pathlib.Path(source_dir) / name if source_dir else None
  if spec.offline and raw_dir and raw.raw_files_present(name, raw_dir):
    prepare.build(name, source_dir=source_dir, data_dir=data_dir)
    return
  if name in download.CHECKSUMS:
    cache = download.download(name, pathlib.Path(data_dir) / "downloads")
    prepare.build(name, source_dir=cache, data_dir=data_dir)
    return
  checked = (
    f"no prepared dataset in {pathlib.Path(data_dir) / name} and no raw files"
    f" in {raw_dir or '(no source directory: $MARGIN_JAX_DATA is unset)'}"
  )
  if not spec.download:
    raise FileNotFoundError(f"Cannot load {name!r}: {checked}.")
  try:  # tfds' own builder (datasets margin_jax has no raw-file reader for).
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
  except Exception as e:  # Network, TensorFlow or disk: one clear message.
    raise FileNotFoundError(
      f"Cannot load {name!r}: {checked}, and tfds' download (which needs"
      f" TensorFlow for this dataset) failed: {e!r}."
    ) from e


# The splits already read, by (dataset, data directory), as read-only arrays: a
# process that trains several runs (the demo, a sweep, a test session) reads
# and decodes a dataset once.
_LOADED: dict[tuple[str, str], dict] = {}


def load_arrays(name: str, *, data_dir=None, source_dir=None) -> dict:
  """Loads the train and test splits of a dataset as whole uint8 arrays.

  Reading goes through ``tfds.data_source`` (ArrayRecord, no TensorFlow;
  images decoded by OpenCV, which tfds prefers to PIL when installed). If
  the dataset is not prepared in ``data_dir`` it is first prepared from the
  raw files in ``<source_dir>/<name>/`` (atomically, see
  `margin_jax.data.prepare.build`), else from the official raw files
  downloaded and verified into ``<data_dir>/downloads/<name>/`` (see
  `margin_jax.data.download`; MNIST, Fashion-MNIST, CIFAR-10/100).

  Args:
    name: a dataset of `DATASETS`, e.g. ``"mnist"`` or ``"cifar10_jpeg"``.
    data_dir: the tfds data directory; default ``$TFDS_DATA_DIR``, else
      ``~/tensorflow_datasets``.
    source_dir: the raw-file directory; default ``$MARGIN_JAX_DATA``.

  Returns:
    A dict with ``"train"`` and ``"test"``, each ``(images, labels)`` with
    images uint8 ``[N, H, W, C]`` and labels int32 ``[N]`` in tfds' stored
    order, ``"num_classes"`` (an int) and ``"name"``. The arrays are
    read-only and shared by later calls in the process for the same dataset
    and ``data_dir`` (copy one to change it).

  Usage (prepares or downloads MNIST on first use)::

    data = load_arrays("mnist")
    images, labels = data["train"]  # (60000, 28, 28, 1), (60000,)
  """
  spec = registry.get_spec(name)
  data_dir = str(data_dir or prepare.default_data_dir())
  key = (name, os.path.abspath(data_dir))
  if key in _LOADED:
    return dict(_LOADED[key])
  source_dir = source_dir or os.environ.get("MARGIN_JAX_DATA")
  _ensure_prepared(name, spec, data_dir, source_dir)
  result = {"num_classes": spec.num_classes, "name": name}
  for split in ("train", "test"):
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    examples = source.__getitems__(range(len(source)))
    images = np.stack([e["image"] for e in examples]).astype(np.uint8, copy=False)
    labels = np.array([e["label"] for e in examples], np.int32)
    images = images.reshape(-1, *spec.image_shape)
    for array in (images, labels):
      array.setflags(write=False)
    result[split] = (images, labels)
  _LOADED[key] = result
  return dict(result)


def load_dataset(
  name: str, *, data_dir=None, train_fraction: float = 1.0, label_noise: float = 0.0, seed: int = 0
) -> dict:
  """`load_arrays`, with the training split degraded as a protocol asks.

  Args:
    name: a dataset of `DATASETS`.
    data_dir: the tfds data directory (see `load_arrays`).
    train_fraction: < 1 keeps a class-balanced subset of the training split
      (Noisy Softmax Sec 5.4, Kobayashi Table 3a), `degrade.class_balanced_subset`.
    label_noise: > 0 flips that fraction of the training labels (Kobayashi
      Table 3b), `degrade.pollute_labels`.
    seed: the subset and the pollution are pure functions of it.

  Returns:
    ``{"train": (images, labels), "test": (images, labels), "num_classes": C}``.
  """
  arrays = load_arrays(name, data_dir=data_dir)
  images, labels = arrays["train"]
  if train_fraction < 1:
    keep = degrade.class_balanced_subset(labels, train_fraction, seed=seed)
    images, labels = images[keep], labels[keep]
  if label_noise > 0:
    labels, _ = degrade.pollute_labels(
      labels, label_noise, num_classes=arrays["num_classes"], seed=seed
    )
  return {"train": (images, labels), "test": arrays["test"], "num_classes": arrays["num_classes"]}
