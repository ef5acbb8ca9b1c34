"""Face verification of a model during training and after: the embeddings
insightface evaluates with, and the numbers face-recognition papers report.

`embedder` embeds an image as the sum of the features of the image and of
its horizontal mirror, L2-normalised (insightface's evaluation); `report`
scores a verification set's pairs by cosine similarity: 10-fold accuracy
(LFW's protocol, on the set's own folds when it has them), TAR at FAR 1e-3
and 1e-4 and the equal error rate (`margin_jax.metrics`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from margin_jax import metrics
from margin_jax import models
from margin_jax.data import transforms

FAR_TARGETS = (1e-3, 1e-4)


def embedder(model, preprocess, *, crop_to=None, batch_size: int = 500):
  """``embed(variables, images) -> [N, d]``: unit embeddings of uint8 images
  ``[N, H, W, C]`` in evaluation mode, each the sum of the image's and its
  mirror's features; ``crop_to=(h, w)`` takes the central crop first."""
  apply = jax.jit(
    lambda variables, x: model.apply(variables, preprocess(None, x, train=False), train=False)[
      "features"
    ]
  )

  def embed(variables, images):
    images = np.asarray(images)
    if crop_to is not None:
      images = transforms.center_crop(images, crop_to)
    parts = [
      apply(variables, images[i : i + batch_size])
      + apply(variables, images[i : i + batch_size, :, ::-1])
      for i in range(0, len(images), batch_size)
    ]
    return models.embeddings(jnp.concatenate(parts))

  return embed


def report(embeddings, same, folds=None, *, pca_dim: int | None = None) -> dict[str, float]:
  """The verification numbers of pairs ``(embeddings[2k], embeddings[2k + 1])``.

  Args:
    embeddings: ``[2N, d]``, two consecutive rows a pair.
    same: ``[N]`` booleans, True for a pair of one identity.
    folds: optional ``[N]`` fold of each pair (LFW's own); else 10
      consecutive folds.
    pca_dim: the accuracy's scores after a PCA to ``pca_dim`` dimensions
      fitted on the other folds (`margin_jax.metrics.pca_fold_scores`, as
      L-Softmax and Noisy Softmax evaluate LFW); ``None``: plain cosine.

  Returns:
    ``accuracy`` and ``accuracy_std`` (10-fold), ``tar_far_1e-3``,
    ``tar_far_1e-4`` and ``eer`` (these three on the plain cosine scores).
  """
  first, second = embeddings[0::2], embeddings[1::2]
  scores = metrics.cosine_scores(first, second)
  fold_scores = scores
  if pca_dim is not None:
    fold_scores = metrics.pca_fold_scores(first, second, dim=pca_dim, folds=folds)
  mean, std = metrics.verification_accuracy(fold_scores, same, folds=folds)
  tars = metrics.tar_at_far(scores, same, FAR_TARGETS)
  return {
    "accuracy": float(mean),
    "accuracy_std": float(std),
    **{f"tar_far_{far:.0e}".replace("e-0", "e-"): float(t) for far, t in zip(FAR_TARGETS, tars)},
    "eer": float(metrics.equal_error_rate(scores, same)),
  }


def report_line(name: str, numbers: dict[str, float]) -> str:
  """``lfw: accuracy 0.9953 ± 0.0031, TAR@FAR=1e-3 0.991, TAR@FAR=1e-4 0.974, EER 0.006``."""
  return (
    f"{name}: accuracy {numbers['accuracy']:.4f} ± {numbers['accuracy_std']:.4f}, "
    f"TAR@FAR=1e-3 {numbers['tar_far_1e-3']:.3f}, TAR@FAR=1e-4 {numbers['tar_far_1e-4']:.3f}, "
    f"EER {numbers['eer']:.3f}"
  )
