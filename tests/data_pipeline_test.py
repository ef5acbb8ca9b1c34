"""Tests for margin_jax.data: epoch iterators, preprocessing, degraded sets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from margin_jax.data import degrade
from margin_jax.data import pipeline
from margin_jax.data import transforms


# --- Epoch iterators -------------------------------------------------------


def _ids(n, shape=(2, 2, 1)):
  """Images whose pixels all equal their index (mod 256), labels = index."""
  return np.broadcast_to(
    (np.arange(n) % 256).astype(np.uint8)[:, None, None, None], (n, *shape)
  ).copy(), np.arange(n)


@pytest.mark.parametrize("num_devices", [1, 2, 4])
def test_train_batches_shapes_and_drop_remainder(num_devices):
  images, labels = _ids(103)
  batches = list(
    pipeline.train_batches(images, labels, batch_size=8, num_devices=num_devices, seed=0, epoch=0)
  )
  assert len(batches) == 103 // 8
  for b in batches:
    assert b["image"].shape == (num_devices, 8 // num_devices, 2, 2, 1)
    assert b["image"].dtype == np.uint8
    assert b["label"].shape == (num_devices, 8 // num_devices)
    assert b["label"].dtype == np.int32
    np.testing.assert_array_equal(b["image"][..., 0, 0, 0], b["label"])
  seen = np.concatenate([b["label"].ravel() for b in batches])
  assert len(np.unique(seen)) == len(seen) == 96


def test_train_batches_permutation_is_a_function_of_seed_and_epoch():
  images, labels = _ids(64)

  def order(seed, epoch):
    return np.concatenate(
      [
        b["label"].ravel()
        for b in pipeline.train_batches(
          images, labels, batch_size=16, num_devices=2, seed=seed, epoch=epoch
        )
      ]
    )

  np.testing.assert_array_equal(order(3, 1), order(3, 1))
  assert not np.array_equal(order(3, 1), order(3, 2))
  assert not np.array_equal(order(3, 1), order(4, 1))
  assert sorted(order(3, 1)) == list(range(64))


def test_train_batches_processes_take_their_shard_of_the_global_batch():
  images, labels = _ids(100)
  kw = dict(batch_size=12, seed=1, epoch=5)
  single = list(pipeline.train_batches(images, labels, num_devices=6, **kw))
  shards = [
    list(
      pipeline.train_batches(images, labels, num_devices=3, process_index=p, process_count=2, **kw)
    )
    for p in range(2)
  ]
  assert len(shards[0]) == len(shards[1]) == len(single)
  for whole, first, second in zip(single, *shards):
    union = np.concatenate([first["label"], second["label"]])
    np.testing.assert_array_equal(union, whole["label"])


@pytest.mark.parametrize("process_count", [1, 2])
def test_source_batches_are_the_array_batches_per_process(process_count):
  """A random-access source (the face readers) is read in the batches the
  in-memory pipeline draws, each process its slice, across epochs and from a
  resumed step."""
  images, labels = _ids(50)
  source = [(image, label) for image, label in zip(images, labels)]
  kw = dict(batch_size=8, seed=3, start_step=4, process_count=process_count)
  for p in range(process_count):
    want = pipeline.endless_train_batches(images, labels, num_devices=2, process_index=p, **kw)
    got = list(
      pipeline.source_train_batches(
        source, num_devices=2, num_steps=14, process_index=p, num_threads=2, **kw
      )
    )
    assert len(got) == 10
    for batch in got:
      expected = next(want)
      for key in ("image", "label"):
        np.testing.assert_array_equal(batch[key], expected[key])


@pytest.mark.parametrize("process_count", [1, 2])
@pytest.mark.parametrize("num_devices", [1, 2, 3])
def test_eval_batches_visit_every_example_exactly_once(num_devices, process_count):
  images, labels = _ids(37)
  batch_size = 4 * num_devices * process_count
  per_process = [
    list(
      pipeline.eval_batches(
        images,
        labels,
        batch_size=batch_size,
        num_devices=num_devices,
        process_index=p,
        process_count=process_count,
      )
    )
    for p in range(process_count)
  ]
  assert len({len(batches) for batches in per_process}) == 1  # Same step count.
  seen = []
  for batches in per_process:
    for b in batches:
      assert b["image"].shape == (num_devices, 4, 2, 2, 1)
      assert b["mask"].shape == b["label"].shape == (num_devices, 4)
      assert b["mask"].dtype == bool
      seen.extend(b["label"][b["mask"]])
  assert sorted(seen) == list(range(37))


@pytest.mark.parametrize("fn", ["train_batches", "eval_batches"])
def test_batch_size_must_divide_over_devices_and_processes(fn):
  images, labels = _ids(64)
  kw = dict(seed=0, epoch=0) if fn == "train_batches" else {}
  with pytest.raises(ValueError, match=r"batch_size=10 .* 3 \* 1"):
    next(getattr(pipeline, fn)(images, labels, batch_size=10, num_devices=3, **kw))
  with pytest.raises(ValueError, match=r"batch_size=8 .* 2 \* 3"):
    next(getattr(pipeline, fn)(images, labels, batch_size=8, num_devices=2, process_count=3, **kw))
  with pytest.raises(ValueError, match="process_index=2"):
    next(
      getattr(pipeline, fn)(
        images, labels, batch_size=8, num_devices=2, process_index=2, process_count=2, **kw
      )
    )


# --- Preprocessing ---------------------------------------------------------


def _coordinates(n, size=32):
  """float images [n, size, size, 2]: channel 0 = row + 1, channel 1 = col + 1."""
  grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="ij"), -1)
  return np.broadcast_to(grid + 1.0, (n, size, size, 2)).astype(np.float32)


def _reference_crops(x, top, left, size, flip):
  out = np.stack([x[i, t : t + size, l : l + size] for i, (t, l) in enumerate(zip(top, left))])
  return np.where(flip[:, None, None, None], out[:, :, ::-1], out)


def test_to_float_and_pixel_mean():
  images = np.random.default_rng(0).integers(0, 256, (50, 4, 4, 3), np.uint8)
  x = transforms.to_float(images)
  assert x.dtype == jnp.float32
  np.testing.assert_allclose(x, images / 255.0, rtol=1e-6)
  mean = transforms.pixel_mean(images)
  assert mean.shape == (4, 4, 3)
  np.testing.assert_allclose(mean, images.mean(0) / 255.0, rtol=1e-6)
  np.testing.assert_allclose(transforms.subtract_mean(x, mean), images / 255.0 - mean, atol=1e-6)


def test_cifar_augment_is_a_padded_shifted_flipped_view():
  n = 4000
  x = _coordinates(n)
  out = np.asarray(jax.jit(transforms.cifar_augment)(jax.random.key(0), x))
  assert out.shape == x.shape
  flip = out[:, 16, 17, 1] < out[:, 16, 16, 1]
  top = out[:, 16, 16, 0].astype(int) - 13
  left = out[:, 16, 16, 1].astype(int) - 13 + flip
  padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  np.testing.assert_array_equal(out, _reference_crops(padded, top, left, 32, flip))
  assert abs(flip.mean() - 0.5) < 0.03
  for offsets in (top, left):
    np.testing.assert_allclose(np.bincount(offsets, minlength=9) / n, 1 / 9, atol=0.025)


def test_cifar_augment_same_key_same_batch_and_leading_axes():
  x = np.random.default_rng(0).integers(0, 256, (2, 8, 32, 32, 3), np.uint8)
  a = transforms.cifar_augment(jax.random.key(1), x)
  assert a.shape == x.shape and a.dtype == jnp.uint8
  np.testing.assert_array_equal(a, transforms.cifar_augment(jax.random.key(1), x))
  assert not np.array_equal(a, transforms.cifar_augment(jax.random.key(2), x))


def test_random_and_center_crop():
  n = 3000
  x = _coordinates(n)
  out = np.asarray(transforms.random_crop(jax.random.key(0), x, 30))
  assert out.shape == (n, 30, 30, 2)
  top, left = (out[:, 0, 0] - 1).astype(int).T
  np.testing.assert_array_equal(out, _reference_crops(x, top, left, 30, np.zeros(n, bool)))
  for offsets in (top, left):
    np.testing.assert_allclose(np.bincount(offsets, minlength=3) / n, 1 / 3, atol=0.04)
  np.testing.assert_array_equal(transforms.center_crop(x, 30), x[:, 1:31, 1:31])
  with pytest.raises(ValueError, match="size=33"):
    transforms.center_crop(x, 33)


def test_preprocess_recipes():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6, 32, 32, 3), np.uint8)
  mean = transforms.pixel_mean(rng.integers(0, 256, (20, 32, 32, 3), np.uint8))
  key = jax.random.key(7)
  scaled = images / np.float32(255.0)
  centred = scaled - mean

  def run(recipe, train):
    return np.asarray(transforms.preprocess(key, images, recipe=recipe, mean=mean, train=train))

  np.testing.assert_allclose(run("none", True), scaled, atol=1e-6)
  np.testing.assert_allclose(run("mean", True), centred, atol=1e-6)
  np.testing.assert_allclose(run("cifar_plus", False), centred, atol=1e-6)
  np.testing.assert_allclose(
    run("cifar_plus", True), transforms.cifar_augment(key, centred), atol=1e-6
  )
  np.testing.assert_allclose(run("noisy_crop", False), centred[:, 1:31, 1:31], atol=1e-6)
  np.testing.assert_allclose(
    run("noisy_crop", True), transforms.random_crop(key, centred, 30), atol=1e-6
  )
  np.testing.assert_array_equal(run("cifar_plus", True), run("cifar_plus", True))
  with pytest.raises(ValueError, match="Unknown recipe 'flip'"):
    transforms.preprocess(key, images, recipe="flip", mean=mean, train=True)
  with pytest.raises(ValueError, match="needs the training-set mean"):
    transforms.preprocess(key, images, recipe="mean", train=True)


# --- Degraded training sets ------------------------------------------------


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 1.0])
def test_class_balanced_subset(fraction):
  labels = np.repeat(np.arange(10), np.arange(100, 1100, 100))
  idx = degrade.class_balanced_subset(labels, fraction, seed=0)
  np.testing.assert_array_equal(idx, np.unique(idx))
  np.testing.assert_array_equal(
    np.bincount(labels[idx], minlength=10), [round(fraction * n) for n in range(100, 1100, 100)]
  )
  np.testing.assert_array_equal(idx, degrade.class_balanced_subset(labels, fraction, seed=0))
  if fraction < 1:
    assert not np.array_equal(idx, degrade.class_balanced_subset(labels, fraction, seed=1))
  with pytest.raises(ValueError, match="fraction=0"):
    degrade.class_balanced_subset(labels, 0, seed=0)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5])
def test_pollute_labels(rate):
  labels = np.random.default_rng(0).integers(0, 10, 50_000)
  new, flipped = degrade.pollute_labels(labels, rate, num_classes=10, seed=3)
  assert new.dtype == np.int32 and flipped.dtype == np.int64
  assert len(flipped) == round(rate * len(labels))
  np.testing.assert_array_equal(flipped, np.flatnonzero(new != labels))
  again = degrade.pollute_labels(labels, rate, num_classes=10, seed=3)
  np.testing.assert_array_equal(new, again[0])
  if rate:  # New classes are uniform over the other nine.
    shift = (new[flipped] - labels[flipped]) % 10
    np.testing.assert_allclose(
      np.bincount(shift, minlength=10)[1:] / len(flipped), 1 / 9, atol=0.02
    )


def test_pollute_labels_errors():
  with pytest.raises(ValueError, match="rate=1.5"):
    degrade.pollute_labels(np.zeros(4, int), 1.5, num_classes=10, seed=0)
  with pytest.raises(ValueError, match=r"labels span \[0, 12\]"):
    degrade.pollute_labels(np.array([0, 12]), 0.5, num_classes=10, seed=0)


def test_many_classes_draws_only_the_classes_it_uses():
  """`margin_jax.data.many_classes`: a function of its arguments, test classes
  from the training set, and an example nearer its own class's examples than
  others'."""
  from margin_jax import data

  got = data.many_classes(num_classes=10**7, num_train=64, num_test=32, seed=3)
  again = data.many_classes(num_classes=10**7, num_train=64, num_test=32, seed=3)
  for split in ("train", "test"):
    for a, b in zip(got[split], again[split]):
      np.testing.assert_array_equal(a, b)
  (images, labels), (test_images, test_labels) = got["train"], got["test"]
  assert images.dtype == np.uint8 and images.shape == (64, 8, 8, 1) and labels.dtype == np.int32
  assert got["num_classes"] == 10**7 and labels.min() >= 0 and labels.max() < 10**7
  assert set(test_labels) <= set(labels)
  train_x = images.reshape(64, -1).astype(float)
  test_x = test_images.reshape(32, -1).astype(float)
  nearest = labels[np.argmin(((test_x[:, None] - train_x[None]) ** 2).sum(-1), axis=1)]
  assert (nearest == test_labels).mean() > 0.9
  with pytest.raises(ValueError, match="num_train=0"):
    data.many_classes(num_classes=10, num_train=0, num_test=1)
  with pytest.raises(ValueError, match="noise_std=-1"):
    data.many_classes(num_classes=10, num_train=1, num_test=1, noise_std=-1)
