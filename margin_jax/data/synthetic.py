"""A synthetic class-conditional dataset with as many classes as you like:
the many-class task of ``experiments/configs/sharded_head.py``.

Class c's mean is a standard Gaussian vector drawn from a generator seeded
with ``(seed, c)``, so only the classes an example uses are ever drawn (no
``[C, ...]`` table: 10^7 classes cost nothing). An example is its class mean
plus ``noise_std`` times Gaussian noise, stored as a uint8 image
(``128 + 24 x``, clipped), so the trainer's data pipeline and preprocessing
recipes take it as they take MNIST.
"""

from __future__ import annotations

import numpy as np

_LEVELS_PER_UNIT = 24.0  # uint8 levels per unit of x: 0.5 noise spans 12 levels


def _class_means(classes: np.ndarray, dim: int, seed: int) -> np.ndarray:
  return np.stack([np.random.default_rng([seed, int(c)]).standard_normal(dim) for c in classes])


def _examples(labels, image_shape, noise_std, seed, rng) -> np.ndarray:
  dim = int(np.prod(image_shape))
  classes, index = np.unique(labels, return_inverse=True)
  x = _class_means(classes, dim, seed)[index] + noise_std * rng.standard_normal((len(labels), dim))
  pixels = np.clip(np.rint(128.0 + _LEVELS_PER_UNIT * x), 0, 255).astype(np.uint8)
  return pixels.reshape(len(labels), *image_shape)


def many_classes(
  *,
  num_classes: int,
  num_train: int,
  num_test: int,
  image_shape: tuple[int, ...] = (8, 8, 1),
  noise_std: float = 0.5,
  seed: int = 0,
) -> dict:
  """``num_train`` training examples with uniformly drawn labels of
  ``num_classes`` classes, and ``num_test`` test examples of the classes the
  training set has (their labels drawn from it), with fresh noise.

  Returns:
    ``{"train": (images, labels), "test": (images, labels), "num_classes": C}``
    as `margin_jax.data.load_dataset`: uint8 ``[N, *image_shape]``, int32 ``[N]``.

  Raises:
    ValueError: a size below 1 or a negative ``noise_std``.

  Example:
    >>> data = many_classes(num_classes=10**7, num_train=8, num_test=4)
    >>> data["train"][0].shape, data["train"][0].dtype, data["num_classes"]
    ((8, 8, 8, 1), dtype('uint8'), 10000000)
  """
  for name, value in (
    ("num_classes", num_classes),
    ("num_train", num_train),
    ("num_test", num_test),
  ):
    if value < 1:
      raise ValueError(f"{name}={value} must be >= 1.")
  if noise_std < 0:
    raise ValueError(f"noise_std={noise_std} must be >= 0.")
  rng = np.random.default_rng([seed, num_classes])
  train_labels = rng.integers(0, num_classes, num_train).astype(np.int32)
  test_labels = rng.choice(train_labels, num_test).astype(np.int32)
  return {
    "train": (_examples(train_labels, image_shape, noise_std, seed, rng), train_labels),
    "test": (_examples(test_labels, image_shape, noise_std, seed, rng), test_labels),
    "num_classes": num_classes,
  }
