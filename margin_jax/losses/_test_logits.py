"""Test-time logits: how each loss's model classifies."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from margin_jax.losses import _common


def ensemble_weights(weights: ArrayLike) -> jax.Array:
  r"""The averaged classifier :math:`\bar W = \frac1V \sum_v W_v` of EM-Softmax.

  Args:
    weights: ``[num_classifiers, dim, num_classes]``.

  Returns:
    ``[dim, num_classes]``.

  References:
    Wang et al., Ensemble Soft-Margin Softmax Loss, IJCAI 2018, Sec. 4.3.
  """
  return jnp.mean(_common.check_weights(weights, "stacked"), axis=0)


def inference_logits(features: ArrayLike, weights: ArrayLike, *, cosine: bool = False) -> jax.Array:
  r"""The logits a trained model classifies with (argmax), ``[batch_size, num_classes]``.

  Every margin acts on the target logit during training only; at test time
  the papers classify with the plain logits :math:`x W` (L-Softmax, Noisy,
  Virtual, M-Softmax, Kobayashi's regulariser, hinge, LSR, center loss), EM-
  and E-Softmax with the averaged classifier :func:`ensemble_weights`. The
  losses that normalise the class weights (A-Softmax, NormFace, CosFace,
  ArcFace) classify by angle: pass ``cosine=True`` for
  :math:`\cos\theta_j = x^\top W_j / (\|x\| \|W_j\|)`.

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``, or stacked ``[num_classifiers, dim, num_classes]``.
    cosine: classify by cosine similarity instead of the inner product.

  Returns:
    Logits, ``[batch_size, num_classes]``, in the promoted input dtype.
  """
  weights = jnp.asarray(weights)
  if weights.ndim == 3:
    weights = ensemble_weights(weights)
  features = jnp.asarray(features)
  if features.ndim != 2 or weights.ndim != 2 or weights.shape[0] != features.shape[1]:
    raise ValueError(
      f"features {features.shape} and weights {weights.shape} must be [batch_size, dim] "
      "and [dim, num_classes] (or [num_classifiers, dim, num_classes])."
    )
  if cosine:
    features, weights = _common.normalize(features, axis=1), _common.normalize(weights, axis=0)
  return features @ weights
