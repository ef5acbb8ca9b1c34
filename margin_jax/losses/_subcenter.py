"""Sub-center ArcFace: K sub-centres per class, ``weights [num_subcenters, dim, num_classes]``,
and its diagnostics of noisy examples (K matmuls).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from margin_jax import sharding
from margin_jax.losses import _common
from margin_jax.losses._cosine_margins import THETA_OVERFLOW
from margin_jax.losses._cosine_margins import _angular_margin_loss
from margin_jax.losses._cosine_margins import arcface_checks
from margin_jax.losses._cosine_margins import arcface_target
from margin_jax.losses._cosine_margins import cosine_margin_streamed
from margin_jax.losses._spec import LossSpec


def _subcenter_cosines(features, weights):
  """max_k cos(theta_{j,k}) over the K sub-centres, [B, C], from weights [K, d, C]."""
  # The unit features broadcast to [K, B, d], so that every matmul, forward and
  # backward, is one dot batched over K: vmapped over the weights alone, the
  # unit-column matmul's tangent a @ dW_k puts K between B and C, and reverse
  # mode transposes [K, B, C] arrays (4 more [B, C] temporaries at K = 3).
  unit = _common.normalize(features, axis=1)
  unit = jnp.broadcast_to(unit, (weights.shape[0], *unit.shape))
  return jnp.max(jax.vmap(_common.matmul_unit_columns)(unit, weights), axis=0)


def subcenter_cosines(features: ArrayLike, weights: ArrayLike) -> jax.Array:
  r"""Each class's cosine as its closest sub-centre's, ``[batch_size, num_classes]``.

  .. math::
    \cos\theta_j = \max_{k} \frac{x^\top W_{k,j}}{\|x\| \|W_{k,j}\|}

  What `subcenter_arcface_loss` applies its margin to, and the test-time
  logits of a model trained with it (``classify="subcenter"`` in the table).

  Args:
    features: ``[batch_size, dim]``.
    weights: sub-centres ``[num_subcenters, dim, num_classes]``.

  Returns:
    Cosines ``[batch_size, num_classes]`` in the promoted input dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1.0, 2.0], [2.0, -1.0]])  # features [B=2, d=2]
    >>> W = jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]])  # weights [d=2, C=3]
    >>> subcenter_cosines(x, jnp.stack([W, -W])).round(2)  # K=2 sub-centres: W and -W
    Array([[0.45, 0.89, 0.32],
           [0.89, 0.45, 0.95]], dtype=float32)

  References:
    Deng et al., Sub-center ArcFace: Boosting Face Recognition by
    Large-scale Noisy Web Faces, ECCV 2020 (section numbers not checked
    against the paper's text, which is not in this repository) (max pooling over the
    sub-centres).
  """
  features, weights, out_dtype = _common.prepare_arrays(features, weights, kind="stacked")
  return _subcenter_cosines(features, weights).astype(out_dtype)


@sharding.accepts_explicit_axes
def subcenter_arcface_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  margin: ArrayLike,
  theta_overflow: str = "plain",
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""Sub-center ArcFace: ArcFace on each class's closest of K sub-centres.

  .. math::
    \cos\theta_j = \max_{k=1..K} \frac{x^\top W_{k,j}}{\|x\| \|W_{k,j}\|}, \qquad
    \ell = -\log \frac{e^{s \cos(\theta_y + m)}}
      {e^{s \cos(\theta_y + m)} + \sum_{j \ne y} e^{s \cos\theta_j}}

  (`subcenter_cosines`, then `arcface_loss`'s target, ``theta_overflow``
  included). An example only has to be near one of its class's sub-centres,
  so noisy examples gather in non-dominant sub-centres; `dominant_subcenters`
  and `far_from_dominant_subcenter` find them. The max is differentiable
  almost everywhere: the gradient reaches the closest sub-centre only
  (split evenly at exact ties). ``K = 1`` is `arcface_loss`.

  Args:
    features: ``[batch_size, dim]``.
    weights: sub-centres ``[num_subcenters, dim, num_classes]`` (the layout of
      EM-Softmax's stacked classifiers); the paper uses K = 3.
    labels: ``[batch_size]`` integers.
    scale: s > 0 (may be traced); the paper uses 64.
    margin: m in radians, in ``[0, pi)`` (may be traced); the paper uses 0.5.
    theta_overflow: ``"plain"`` (default), ``"insightface"`` or ``"easy"``
      (static), as in `arcface_loss`.
    where: optional boolean mask ``[batch_size]``; examples where it is False
      get loss 0 and no gradient (optax's ``where``).
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

  Returns:
    Per-example loss, shape ``[batch_size]``.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1.0, 2.0], [2.0, -1.0]])  # features [B=2, d=2]
    >>> W = jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]])  # weights [d=2, C=3]
    >>> y = jnp.array([1, 0])
    >>> K2 = jnp.stack([W, -W])  # sub-centres [K=2, d=2, C=3]; x_2 is nearer -W_2 than W_0
    >>> subcenter_arcface_loss(x, K2, y, scale=16.0, margin=0.5).round(4)
    Array([0.1451, 6.0532], dtype=float32)

  References:
    Deng et al., Sub-center ArcFace: Boosting Face Recognition by
    Large-scale Noisy Web Faces, ECCV 2020 (section numbers not checked
    against the paper's text, which is not in this repository) (ArcFace, its eq. 1,
    on the max over sub-centres).
  """
  valid = arcface_checks(scale=scale, margin=margin)
  _common.check_choice("theta_overflow", theta_overflow, THETA_OVERFLOW)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, kind="stacked", where=where, shard=shard
  )
  loss = _angular_margin_loss(
    _subcenter_cosines(features, weights),
    labels,
    scale=scale,
    m1=1,
    m2=margin,
    m3=0.0,
    theta_overflow=theta_overflow,
    shard=shard,
  )
  return _common.apply_where(loss, where, out_dtype, valid)


def _target_subcenter_cosines(features, weights, labels):
  """cos(x_i, W_{k, y_i}) for each sub-centre of each example's class, [B, K]
  (NaN for a label outside the classes)."""
  targets = _common.normalize(jnp.take(weights, labels, axis=2, mode="fill"), axis=1)  # [K, d, B]
  cosine = jnp.einsum("bd,kdb->bk", _common.normalize(features, axis=1), targets)
  return jnp.clip(cosine, -1.0, 1.0)


@sharding.accepts_explicit_axes
def dominant_subcenters(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  where: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
  r"""Each class's dominant sub-centre: the one most of its examples are closest to.

  Each example votes for the sub-centre of its own class with the largest
  cosine; ``counts[j, k]`` is the number of class-j examples closest to
  sub-centre k, and the dominant one is ``argmax_k counts[j, k]`` (the lowest
  index on a tie; sub-centre 0 for a class without examples). Over a dataset
  in batches, sum the counts and take ``counts.argmax(-1)``. Examples with a
  label outside the classes, or masked out by ``where``, do not vote. Not
  meant to be differentiated.

  Args:
    features: ``[batch_size, dim]``.
    weights: sub-centres ``[num_subcenters, dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    where: optional boolean mask ``[batch_size]`` of the examples that vote.

  Returns:
    ``(dominant, counts)``: int32 ``[num_classes]`` and ``[num_classes, num_subcenters]``.

  Example:
    >>> import jax.numpy as jnp
    >>> W = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]]).transpose(0, 2, 1)  # K=2, d=2, C=1
    >>> x = jnp.array([[1.0, 0.1], [1.0, -0.2], [0.1, 1.0]])  # two near e1, one near e2
    >>> dominant, counts = dominant_subcenters(x, W, jnp.array([0, 0, 0]))
    >>> dominant, counts
    (Array([0], dtype=int32), Array([[2, 1]], dtype=int32))

  References:
    Deng et al., Sub-center ArcFace: Boosting Face Recognition by
    Large-scale Noisy Web Faces, ECCV 2020 (section numbers not checked
    against the paper's text, which is not in this repository) (the dominant
    sub-class holds the majority of the clean faces).
  """
  features, weights, labels, where, _ = _common.prepare_features(
    features, weights, labels, kind="stacked", where=where, shard=None
  )
  num_subcenters, num_classes = weights.shape[0], weights.shape[2]
  nearest = jnp.argmax(_target_subcenter_cosines(features, weights, labels), axis=1)
  votes = labels < num_classes  # safe_labels sent an out-of-range label to num_classes
  if where is not None:
    votes = votes & where
  counts = jnp.zeros((num_classes, num_subcenters), jnp.int32)
  counts = counts.at[labels, nearest].add(votes.astype(jnp.int32), mode="drop")
  return jnp.argmax(counts, axis=1).astype(jnp.int32), counts


@sharding.accepts_explicit_axes
def far_from_dominant_subcenter(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  dominant: ArrayLike,
  *,
  threshold_degrees: float = 75.0,
) -> tuple[jax.Array, jax.Array]:
  r"""Flags the examples farther than a threshold angle from their class's dominant sub-centre.

  .. math::
    \text{far}_i = \angle(x_i, W_{k^*_{y_i}, y_i}) > \text{threshold}

  with :math:`k^*` from `dominant_subcenters`. The paper drops these examples
  (and the non-dominant sub-centres) once the model is discriminative, then
  retrains with K = 1; it uses 75 degrees. An example with a label outside
  the classes gets angle NaN and is not flagged.

  Args:
    features: ``[batch_size, dim]``.
    weights: sub-centres ``[num_subcenters, dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    dominant: the dominant sub-centre of each class, integers ``[num_classes]``.
    threshold_degrees: the angle in degrees, in ``[0, 180)`` (static); the paper's 75.

  Returns:
    ``(is_far, angles)``: boolean ``[batch_size]`` and the angles to the
    dominant sub-centre in degrees ``[batch_size]``.

  Example:
    >>> import jax.numpy as jnp
    >>> W = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]]).transpose(0, 2, 1)  # K=2, d=2, C=1
    >>> x = jnp.array([[1.0, 0.1], [1.0, -0.2], [0.1, 1.0]])
    >>> is_far, angles = far_from_dominant_subcenter(x, W, jnp.array([0, 0, 0]), jnp.array([0]))
    >>> is_far, angles.round().astype(int)
    (Array([False, False,  True], dtype=bool), Array([ 6, 11, 84], dtype=int32))

  References:
    Deng et al., Sub-center ArcFace: Boosting Face Recognition by
    Large-scale Noisy Web Faces, ECCV 2020 (section numbers not checked
    against the paper's text, which is not in this repository) (75 degrees).
  """
  _common.check_range("threshold_degrees", threshold_degrees, low=0.0, high=180.0)
  features, weights, labels, _, out_dtype = _common.prepare_features(
    features, weights, labels, kind="stacked", shard=None
  )
  num_classes = weights.shape[2]
  dominant = jnp.asarray(dominant)
  if dominant.shape != (num_classes,) or not jnp.issubdtype(dominant.dtype, jnp.integer):
    raise ValueError(
      f"dominant must be integers of shape [num_classes]=[{num_classes}], "
      f"got {dominant.dtype} {dominant.shape}."
    )
  cosine = _target_subcenter_cosines(features, weights, labels)  # [B, K]
  k = jnp.take(dominant, jnp.minimum(labels, num_classes - 1))
  cos_dominant = jnp.take_along_axis(cosine, k[:, None], axis=1)[:, 0]
  angles = jnp.degrees(jnp.arccos(cos_dominant))
  return angles > threshold_degrees, angles.astype(out_dtype)


SPECS = (
  LossSpec(
    "subcenter_arcface",
    subcenter_arcface_loss,
    "stacked",
    "subcenter",
    typical={"scale": 64.0, "margin": 0.5},
    paper="Sub-center ArcFace (Deng et al., ECCV 2020); section numbers not checked",
    # The streamed statistics take each class's closest sub-centre (K rows).
    streamed=cosine_margin_streamed(arcface_target),
    checks=arcface_checks,
  ),
)
