"""Epoch iterators over in-memory arrays, shaped ``[num_devices, per_device, ...]``.

``batch_size`` is always the global batch over all processes. Process ``p`` of
``P`` takes the ``p``-th contiguous slice of every global batch and reshapes it
to ``[num_devices, per_device]`` for ``jax.pmap``, so the union over processes
is exactly the single-process batch.
"""

import functools
import itertools
from collections.abc import Iterator

import numpy as np

from margin_jax.data import transforms


def _per_device(batch_size, num_devices, process_index, process_count) -> int:
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} is not in [0, process_count={process_count}).")
  shards = num_devices * process_count
  if batch_size <= 0 or num_devices <= 0 or batch_size % shards:
    raise ValueError(
      f"batch_size={batch_size} must be a positive multiple of num_devices *"
      f" process_count = {num_devices} * {process_count} = {shards}."
    )
  return batch_size // shards


@functools.lru_cache(maxsize=2)
def _epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The permutation of epoch ``epoch``: a pure function of (seed, epoch)."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def _batch(images, labels, indices, num_devices, per_device) -> dict:
  return {
    "image": images[indices].reshape(num_devices, per_device, *images.shape[1:]),
    "label": labels[indices].reshape(num_devices, per_device),
  }


def train_batches(
  images,
  labels,
  *,
  batch_size,
  num_devices,
  seed,
  epoch,
  process_index=0,
  process_count=1,
) -> Iterator[dict]:
  """Yields one epoch of shuffled training batches; drops the remainder.

  Args:
    images: uint8 array ``[N, H, W, C]`` (or any ``[N, ...]`` array).
    labels: int array ``[N]``.
    batch_size: global batch size over all processes.
    num_devices: local devices of this process (leading batch axis).
    seed: the run's data seed.
    epoch: epoch number; the permutation is a pure function of (seed, epoch).
    process_index: this process, in ``[0, process_count)``.
    process_count: number of processes.

  Yields:
    ``{"image": [num_devices, per_device, H, W, C], "label": int32
    [num_devices, per_device]}`` with ``per_device = batch_size //
    (num_devices * process_count)``; ``N // batch_size`` batches.
  """
  per_device = _per_device(batch_size, num_devices, process_index, process_count)
  if len(images) != len(labels) or len(images) < batch_size:
    raise ValueError(
      f"Got {len(images)} images and {len(labels)} labels; expected equal"
      f" counts of at least batch_size={batch_size}."
    )
  labels = np.asarray(labels, np.int32)
  order = _epoch_order(seed, epoch, len(images))
  per_process = batch_size // process_count
  for start in range(0, len(images) - batch_size + 1, batch_size):
    first = start + process_index * per_process
    yield _batch(images, labels, order[first : first + per_process], num_devices, per_device)


def endless_train_batches(
  images,
  labels,
  *,
  batch_size,
  num_devices,
  seed,
  start_step=0,
  process_index=0,
  process_count=1,
) -> Iterator[dict]:
  """`train_batches` epoch after epoch, from global step ``start_step`` on.

  Epoch e is the permutation of (seed, e), so a run resumed at step t sees
  the batches an uninterrupted run would have seen from step t.
  """
  steps_per_epoch = len(labels) // batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"{len(labels)} training examples < batch_size {batch_size}")
  epoch, skip = divmod(start_step, steps_per_epoch)
  while True:
    batches = train_batches(
      images,
      labels,
      batch_size=batch_size,
      num_devices=num_devices,
      seed=seed,
      epoch=epoch,
      process_index=process_index,
      process_count=process_count,
    )
    yield from itertools.islice(batches, skip, None)
    epoch, skip = epoch + 1, 0


def eval_batches(
  images,
  labels,
  *,
  batch_size,
  num_devices,
  process_index=0,
  process_count=1,
) -> Iterator[dict]:
  """Yields evaluation batches in order; pads the last one and masks padding.

  Every process yields the same number of batches, ``ceil(N / batch_size)``,
  and every example has ``mask=True`` in exactly one place over all batches,
  devices and processes. Padding repeats the last example.

  Args:
    images: array ``[N, ...]``.
    labels: int array ``[N]``.
    batch_size: global batch size over all processes.
    num_devices: local devices of this process.
    process_index: this process, in ``[0, process_count)``.
    process_count: number of processes.

  Yields:
    ``{"image", "label", "mask"}`` with leading axes ``[num_devices,
    per_device]``; ``mask`` is bool, False on padding.
  """
  per_device = _per_device(batch_size, num_devices, process_index, process_count)
  if len(images) != len(labels):
    raise ValueError(f"Got {len(images)} images but {len(labels)} labels.")
  labels = np.asarray(labels, np.int32)
  per_process = batch_size // process_count
  for start in range(0, len(images), batch_size):
    first = start + process_index * per_process
    indices = np.arange(first, first + per_process)
    batch = _batch(images, labels, np.minimum(indices, len(images) - 1), num_devices, per_device)
    batch["mask"] = (indices < len(images)).reshape(num_devices, per_device)
    yield batch


def source_train_batches(
  source,
  *,
  batch_size,
  num_devices,
  seed,
  start_step=0,
  num_steps,
  process_index=0,
  process_count=1,
  crop_to=None,
  num_threads=16,
) -> Iterator[dict]:
  """`endless_train_batches` over a random-access source, decoded ahead.

  ``source[i] -> (image uint8 [H, W, C], label)`` (e.g.
  `margin_jax.data.faces.FolderDataset` or ``RecordIODataset``) is read in
  the batches `endless_train_batches` would draw over arrays of the same
  length (epoch e the permutation of (seed, e); process p its slice of every
  global batch): a grain ``MapDataset`` over the steps decodes
  ``num_threads`` batches at a time in threads, ahead of the training step.
  ``crop_to=(h, w)`` takes each image's central ``h x w`` (SphereFace's
  112x96 from 112x112 faces).

  Yields:
    ``{"image": [num_devices, per_device, h, w, C] uint8, "label": int32
    [num_devices, per_device]}`` for steps ``start_step + 1 .. num_steps``.
  """
  import grain  # the [train] extra

  per_device = _per_device(batch_size, num_devices, process_index, process_count)
  num_examples = len(source)
  steps_per_epoch = num_examples // batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"{num_examples} training examples < batch_size {batch_size}")
  per_process = batch_size // process_count

  def load(step: int) -> dict:
    epoch, k = divmod(step, steps_per_epoch)
    first = k * batch_size + process_index * per_process
    indices = _epoch_order(seed, epoch, num_examples)[first : first + per_process]
    images, labels = zip(*(source[int(i)] for i in indices))
    images = np.stack(images)
    if crop_to is not None:
      images = transforms.center_crop(images, crop_to)
    return {
      "image": images.reshape(num_devices, per_device, *images.shape[1:]),
      "label": np.asarray(labels, np.int32).reshape(num_devices, per_device),
    }

  steps = grain.MapDataset.range(start_step, num_steps).map(load)
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * num_threads)
  return iter(steps.to_iter_dataset(options))
