"""Degraded training sets: class-balanced subsets and polluted labels."""

import numpy as np


def class_balanced_subset(labels, fraction, *, seed) -> np.ndarray:
  """Indices of a deterministic subset holding ``fraction`` of every class.

  Each class ``c`` with ``n_c`` examples contributes ``round(fraction * n_c)``
  of them, drawn without replacement; e.g. 1% and 10% of MNIST (Noisy Softmax,
  Sec. 5.4) or 0.9 ... 0.5 of CIFAR-100 (Kobayashi, Sec. 4.2, Table 3a).

  Args:
    labels: int array ``[N]``.
    fraction: in ``(0, 1]``.
    seed: the subset is a pure function of (labels, fraction, seed).

  Returns:
    Sorted int64 indices into ``labels``.

  Example:
    >>> labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    >>> idx = class_balanced_subset(labels, 0.5, seed=0)
    >>> np.bincount(labels[idx]).tolist()  # half of each class
    [2, 3]

  References:
    Chen et al., Noisy Softmax: Improving the Generalization Ability of DCNN
    via Postponing the Early Softmax Saturation, CVPR 2017.
    Kobayashi, Large Margin In Softmax Cross-Entropy Loss, BMVC 2019.
  """
  if not 0 < fraction <= 1:
    raise ValueError(f"fraction={fraction} must be in (0, 1].")
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  picked = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    picked.append(rng.choice(members, round(fraction * len(members)), replace=False))
  return np.sort(np.concatenate(picked)).astype(np.int64)


def pollute_labels(labels, rate, *, num_classes, seed) -> tuple[np.ndarray, np.ndarray]:
  """Flips exactly ``round(rate * N)`` labels, each to a different class.

  The flipped examples are drawn without replacement and each gets a class
  drawn uniformly from the other ``num_classes - 1``; as in Kobayashi, Sec.
  4.2, Table 3b (pollution rates 0.1 ... 0.5 on CIFAR-100).

  Args:
    labels: int array ``[N]`` with values in ``[0, num_classes)``.
    rate: in ``[0, 1]``.
    num_classes: at least 2.
    seed: the result is a pure function of (labels, rate, num_classes, seed).

  Returns:
    ``(new_labels, flipped_indices)``: int32 ``[N]`` (a copy) and the sorted
    int64 indices whose label changed.

  References:
    Kobayashi, Large Margin In Softmax Cross-Entropy Loss, BMVC 2019.
  """
  labels = np.asarray(labels)
  if not 0 <= rate <= 1:
    raise ValueError(f"rate={rate} must be in [0, 1].")
  if num_classes < 2:
    raise ValueError(f"num_classes={num_classes} must be at least 2.")
  if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
    raise ValueError(
      f"labels span [{labels.min()}, {labels.max()}], expected [0, num_classes={num_classes})."
    )
  rng = np.random.default_rng(seed)
  flipped = np.sort(rng.choice(labels.size, round(rate * labels.size), replace=False))
  new_labels = labels.astype(np.int32)
  shift = rng.integers(1, num_classes, flipped.size)  # Never 0: a new class.
  new_labels[flipped] = (new_labels[flipped] + shift) % num_classes
  return new_labels, flipped.astype(np.int64)
