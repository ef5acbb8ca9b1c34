"""Class centres: the center loss (Wen et al., ECCV 2016)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from margin_jax import sharding
from margin_jax.losses import _common
from margin_jax.losses._spec import LossSpec


@sharding.accepts_explicit_axes
def center_loss(
  features: ArrayLike,
  centers: ArrayLike,
  labels: ArrayLike,
  *,
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""Center loss: half the squared distance of each feature to its class centre.

  .. math::
    \ell_i = \tfrac12 \|x_i - c_{y_i}\|^2

  Used with the softmax loss, ``softmax + lambda * center``, as in its paper.

  Args:
    features: ``[batch_size, dim]``.
    centers: class centres, ``[num_classes, dim]`` (one row per class).
    labels: ``[batch_size]`` integers.
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
    >>> centers = jnp.array([[1.0, 1.0], [0.0, 2.0], [-1.0, 0.0]])  # [C, d]
    >>> center_loss(x, centers, y).round(4)
    Array([0.5, 2.5], dtype=float32)

  References:
    Wen et al., A Discriminative Feature Learning Approach for Deep Face
    Recognition, ECCV 2016, eq. 2.
  """
  features, centers, labels, where, out_dtype = _common.prepare_features(
    features, centers, labels, kind="centers", where=where, shard=shard
  )
  diff = features - _common.take_classes(centers, labels, axis=0, shard=shard)
  return _common.apply_where(0.5 * jnp.sum(diff * diff, axis=1), where, out_dtype)


# Trained jointly with softmax: softmax + center_weight * center loss
# (Wen et al., ECCV 2016, eq 5); `BoundLoss` forms the sum, weighted by its
# center_weight= (Wen et al. use 0.003-0.1), and streams its softmax.
SPECS = (
  LossSpec(
    "center",
    center_loss,
    "centers",
    paper="Center loss (Wen et al., ECCV 2016) eqs 2, 5",
  ),
)
