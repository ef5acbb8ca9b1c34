"""EM-Softmax: V weak soft-margin classifiers kept diverse by an HSIC penalty."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from margin_jax import sharding
from margin_jax.losses import _common
from margin_jax.losses import _streamed
from margin_jax.losses._logit_losses import soft_margin_softmax_loss
from margin_jax.losses._spec import LossSpec


@sharding.accepts_explicit_axes
def hsic_diversity(weights: ArrayLike, *, shard: sharding.ClassShard | None = None) -> jax.Array:
  r"""HSIC between every ordered pair of weak classifiers, inner-product kernel.

  .. math::
    \Omega = \sum_{v=1}^V \sum_{u \ne v} \operatorname{tr}(K_v H K_u H)
           = 2 \sum_{v < u} \| (\hat W_v H)(\hat W_u H)^\top \|_F^2,
    \quad K_v = \hat W_v^\top \hat W_v,\ H = I_C - \tfrac1C \mathbf 1 \mathbf 1^\top

  with every class column of every :math:`W_v` L2-normalised (Sec. 3.2) and
  without HSIC's :math:`(K-1)^{-2}` factor (eq. 6). The right-hand side is a
  ``d x d`` product per unordered pair, so the cost is
  ``V(V-1)/2 * d^2 * C`` and no ``C x C`` matrix is ever built.

  The paper's gradient :math:`\partial/\partial W_v = \lambda W_v K_v`
  (Sec. 3.2-3.3) omits constant factors: for the sum over ordered pairs it is
  :math:`4 \hat W_v \sum_{u \ne v} H \hat W_u^\top \hat W_u H` with respect to
  the normalised columns, then projected through the normalisation.

  Args:
    weights: stacked weak classifiers, ``[num_classifiers, dim, num_classes]``.
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

  Returns:
    A scalar (0 for a single classifier).

  References:
    Wang et al., Ensemble Soft-Margin Softmax Loss for Image Classification,
    IJCAI 2018, eqs. 5-7.
  """
  weights = _common.check_weights(weights, "stacked")
  out_dtype = _common.result_dtype(weights)
  weights = weights.astype(_common.compute_dtype(out_dtype))
  return _hsic(shard, weights).astype(out_dtype)


def _pairs(num_classifiers: int):
  return [(v, u) for v in range(num_classifiers) for u in range(v + 1, num_classifiers)]


def _hsic_forward(shard, weights):
  # With unit columns U_v and their class mean mu_v, the centred product is
  # (U_v H)(U_u H)^T = U_v U_u^T - C mu_v mu_u^T: no centred [d, C] copy.
  norms = _common.safe_norm(weights, axis=1)  # [V, C]
  unit = weights / _common.expand_to(norms, 1, weights.shape[1])
  num_classes = sharding.class_count(weights.shape[2], shard)
  mean = _common.sum_classes(unit, shard=shard) / num_classes  # [V, d]
  cross = {}
  for v, u in _pairs(weights.shape[0]):
    raw = _common.psum_classes(unit[v] @ unit[u].T, shard=shard)
    cross[v, u] = raw - num_classes * jnp.outer(mean[v], mean[u])  # [d, d]
  total = sum((2.0 * jnp.sum(k * k) for k in cross.values()), jnp.zeros((), weights.dtype))
  return total, (unit, norms, mean, cross, num_classes)


@jax.custom_jvp
def _hsic(shard, weights):
  return _hsic_forward(shard, weights)[0]


@_hsic.defjvp
def _hsic_jvp(primals, tangents):
  # d total = 4 sum_{v<u} <K_vu, dK_vu> with K_vu the centred product and
  # dK_vu = dU_v U_u^T + U_v dU_u^T - C (dmu_v mu_u^T + mu_v dmu_u^T), through the
  # normalisation dU_v = (dW_v - U_v colsum(U_v * dW_v)) / n_v (the projection
  # dropped where the norm is floored). Transposed, it is the closed-form
  # gradient 4 sum_{u != v} K_vu (U_u H), projected: only d x d products with
  # the kept unit columns, no centred [d, C] copy.
  (shard, weights), (_, d_weights) = primals, tangents
  total, (unit, norms, mean, cross, num_classes) = _hsic_forward(shard, weights)
  d_units = []
  for v, d_w in enumerate(jnp.unstack(d_weights)):  # transposed: one stack
    radial = jnp.sum(unit[v] * d_w, axis=0)
    radial = jnp.where(norms[v] ** 2 > _common.NORM_FLOOR_SQ, radial, 0.0)
    d_unit = d_w - unit[v] * _common.expand_tangent(radial, 0, d_w.shape[0])
    d_units.append(_common.mask_padding(_common.divide_columns(d_unit, norms[v]), 0.0, shard=shard))
  d_mean = [_common.sum_classes(d_unit, shard=shard) / num_classes for d_unit in d_units]
  d_total = jnp.zeros((), weights.dtype)
  for v, u in _pairs(weights.shape[0]):
    d_raw = _common.psum_classes(d_units[v] @ unit[u].T + unit[v] @ d_units[u].T, shard=shard)
    d_cross = d_raw - num_classes * (jnp.outer(d_mean[v], mean[u]) + jnp.outer(mean[v], d_mean[u]))
    d_total = d_total + 4.0 * jnp.sum(cross[v, u] * d_cross)
  return total, d_total


@sharding.accepts_explicit_axes
def ensemble_soft_margin_softmax_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  margin: ArrayLike,
  diversity: ArrayLike,
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""EM-Softmax: summed soft-margin losses of V weak classifiers plus HSIC diversity.

  .. math::
    \ell_i = \sum_{v=1}^V -\log \frac{e^{x_i^\top w^v_y - m}}
      {e^{x_i^\top w^v_y - m} + \sum_{k \ne y} e^{x_i^\top w^v_k}}
      + \lambda\, \Omega(W_1, \dots, W_V)

  with :func:`hsic_diversity` as :math:`\Omega`, added to every example so the
  batch mean is the paper's objective. ``margin=0`` is E-Softmax; V=1 with
  ``diversity=0`` and ``margin=0`` is softmax. Predict with
  :func:`ensemble_weights` (the averaged classifier, Sec. 4.3).

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[num_classifiers, dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    margin: the soft margin m >= 0 (may be traced).
    diversity: the HSIC weight lambda >= 0 (may be traced).
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
    >>> W_stack = jnp.stack([W, -W])  # V=2 weak classifiers [2, d, C]
    >>> ensemble_soft_margin_softmax_loss(x, W_stack, y, margin=0.3, diversity=0.1).round(4)
    Array([3.4773   , 6.1714997], dtype=float32)

  References:
    Wang et al., Ensemble Soft-Margin Softmax Loss for Image Classification,
    IJCAI 2018, eqs. 4, 6 and the EM-Softmax objective of Sec. 3.2.
  """
  valid = _ensemble_checks(margin=margin, diversity=diversity)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, kind="stacked", where=where, shard=shard
  )
  # All V classifier matmuls as one dot batched over V, the leading axis of both
  # operands and of the [V, B, C] logits. Per-classifier matmuls on W[v] copy
  # each [d, C] slice (and stack the gradients back): 4 more [B, C]-sized
  # temporaries and ~10% more time at C = 10^4 on XLA:CPU.
  num_classifiers = weights.shape[0]
  logits = jax.lax.dot_general(
    jnp.broadcast_to(features, (num_classifiers, *features.shape)),
    weights,
    (((2,), (1,)), ((0,), (0,))),
  )
  loss = soft_margin_softmax_loss(
    logits.reshape(-1, logits.shape[2]),
    jnp.tile(labels, num_classifiers),
    margin=margin,
    shard=shard,
  )
  loss = loss.reshape(num_classifiers, -1).sum(0)
  loss = loss + diversity * hsic_diversity(weights, shard=shard)
  return _common.apply_where(loss, where, out_dtype, valid)


def _ensemble_checks(*, margin, diversity, **_):
  return _common.check_range("margin", margin, low=0.0) & _common.check_range(
    "diversity", diversity, low=0.0
  )


def _ensemble_streamed(head, *, margin, diversity):
  # One pass over the classes for all V classifiers (each its own statistics);
  # the HSIC term (d x d products of the unit columns, as materialised) only
  # where it weighs.
  stats = head.stats(each_row=True)
  loss = _streamed.cross_entropy(stats.lse, stats.dot_y.T - margin).sum(0)
  if _common.concrete_number(diversity) == 0:
    return loss
  return loss + diversity * hsic_diversity(head.weights, shard=head.shard)


SPECS = (
  LossSpec(
    "e_softmax",
    ensemble_soft_margin_softmax_loss,
    "stacked",
    "averaged",
    typical={"margin": 0.0, "diversity": 0.1},
    paper="EM-Softmax (Wang et al., IJCAI 2018) eq 7",
    streamed=_ensemble_streamed,
    checks=_ensemble_checks,
  ),
  LossSpec(
    "em_softmax",
    ensemble_soft_margin_softmax_loss,
    "stacked",
    "averaged",
    typical={"margin": 0.5, "diversity": 0.1},
    paper="EM-Softmax (Wang et al., IJCAI 2018) eqs 4, 6-8",
    streamed=_ensemble_streamed,
    checks=_ensemble_checks,
  ),
)
