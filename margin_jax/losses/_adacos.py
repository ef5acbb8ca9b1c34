"""AdaCos: the scale of the cosine logits set from the number of classes, or
adapted to each batch.

AdaCos's loss is NormFace's, softmax over ``s cos(theta_j)``; only the scale
``s`` is chosen for the caller: `adacos_fixed_scale` once from the number of
classes, or `adacos_dynamic_scale` at every step from the batch and the
previous scale. The dynamic scale is state the caller carries between steps,
as optax carries optimiser state, and feeds to `normface_loss`::

  scale = jnp.float32(adacos_fixed_scale(num_classes))  # s_d^(0), Algorithm 1 (an array:
  # a Python float would trace the step a second time)
  ...
  # in the step, on the batch (x, W, y):
  scale = adacos_dynamic_scale(x, W, y, scale=scale)  # s_d^(t), no gradient
  loss = normface_loss(x, W, y, scale=scale).mean()
  # return scale with the new parameters; it is the next step's input.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from margin_jax import sharding
from margin_jax.losses import _common


def adacos_fixed_scale(num_classes: int) -> float:
  r"""AdaCos's fixed scale for ``num_classes`` classes.

  .. math::
    \tilde s_f = \sqrt 2 \log(C - 1)

  the scale at which the target probability's curve over theta_y is steepest
  near 45 degrees when the non-target cosines are about 0; also the initial
  dynamic scale of Algorithm 1. Pass it to `normface_loss` as ``scale``.

  Args:
    num_classes: C >= 3 (a Python integer; C = 2 would give scale 0).

  Returns:
    The scale, a Python float.

  Example:
    >>> round(adacos_fixed_scale(10), 4), round(adacos_fixed_scale(10_000), 4)
    (3.1073, 13.0252)

  References:
    Zhang et al., AdaCos: Adaptively Scaling Cosine Logits for Effectively
    Learning Deep Face Representations, CVPR 2019 (the fixed scale; the
    paper's text is not in this repository, so its equation numbers were not
    checked here).
  """
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 3:
    raise ValueError(f"num_classes must be a Python integer >= 3, got {num_classes!r}.")
  return math.sqrt(2.0) * math.log(num_classes - 1)


@sharding.accepts_explicit_axes
def adacos_dynamic_scale(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""AdaCos's dynamic scale for this batch, from the previous step's scale.

  .. math::
    B_{avg}^{(t)} = \frac1N \sum_{i} \sum_{j \ne y_i} e^{\tilde s_d^{(t-1)} \cos\theta_{i,j}},
    \qquad
    \tilde s_d^{(t)} = \frac{\log B_{avg}^{(t)}}{\cos\left(\min(\frac\pi4, \theta_{med}^{(t)})\right)}

  with the cosines of `normface_loss` and :math:`\theta_{med}` the median of
  the target angles :math:`\theta_{i,y_i}` in the batch (the mean of the two
  middle ones for an even count, as ``np.median``; some PyTorch ports take
  the lower one). :math:`\log B_{avg}` is computed as a logsumexp. The update
  is under ``stop_gradient``: the scale is not a parameter and no gradient
  flows through it.

  As in Algorithm 1, step t computes :math:`\tilde s_d^{(t)}` from
  :math:`\tilde s_d^{(t-1)}` before its loss, trains with
  ``normface_loss(features, weights, labels, scale=new_scale)``, and carries
  ``new_scale`` to step t + 1; start from `adacos_fixed_scale`. The scale
  is state of the training loop (like optimiser state): keep it in the
  train state and, with data parallelism, compute it on the global batch (or
  average it across devices) so every replica uses the same one. With few
  classes :math:`B_{avg}` can fall below 1 and the scale below 0; the
  method targets many classes.

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    scale: the previous scale :math:`\tilde s_d^{(t-1)}` > 0 (may be traced).
    where: optional boolean mask ``[batch_size]``: only these examples enter
      :math:`B_{avg}` and the median. With none kept the scale is returned unchanged.
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

  Returns:
    The new scale, a scalar in the compute dtype (float32 for bf16/f16
    inputs, float64 for float64). NaN if a kept example's label is outside
    the classes.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1.0, 2.0], [2.0, -1.0]])  # features [B=2, d=2]
    >>> W = jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]])  # weights [d=2, C=3]
    >>> y = jnp.array([1, 0])
    >>> s = adacos_fixed_scale(3)
    >>> adacos_dynamic_scale(x, W, y, scale=s).round(4)
    Array(0.7618, dtype=float32)

  References:
    Zhang et al., AdaCos: Adaptively Scaling Cosine Logits for Effectively
    Learning Deep Face Representations, CVPR 2019, Algorithm 1 (the
    dynamic scale; equation numbers not checked against the paper's text).
  """
  _common.check_range("scale", scale, low=0.0, low_open=True)
  features, weights, labels, where, _ = _common.prepare_features(
    features, weights, labels, where=where, shard=shard
  )
  cosine = lax.stop_gradient(_common.cosine_logits(features, weights))
  scale = lax.stop_gradient(jnp.asarray(scale, cosine.dtype))
  batch_size, num_classes = cosine.shape
  keep = jnp.ones(batch_size, bool) if where is None else where
  # B_avg as a logsumexp over the kept examples' non-target classes.
  others = ~_common.target_mask(labels, num_classes, shard=shard) & keep[:, None]
  count = jnp.sum(keep)
  log_b_avg = jax.nn.logsumexp(jnp.where(others, scale * cosine, -jnp.inf)) - jnp.log(count)
  theta_y = jnp.arccos(jnp.clip(_common.take_target(cosine, labels, shard=shard), -1.0, 1.0))
  theta_med = jnp.nanmedian(jnp.where(keep, theta_y, jnp.nan))
  theta_med = jnp.where(jnp.any(keep & jnp.isnan(theta_y)), jnp.nan, theta_med)
  new_scale = log_b_avg / jnp.cos(jnp.minimum(math.pi / 4, theta_med))  # the dynamic scale
  return jnp.where(count > 0, new_scale, scale)
