"""Angular margins on the target logit: L-Softmax and A-Softmax (SphereFace).

Conventions (every feature loss): ``features`` x has shape ``[batch_size, dim]``,
``weights`` W has shape ``[dim, num_classes]`` (column j is class j's
classifier, the Flax Dense kernel layout) and the logits are ``f = x @ W``. Each
loss changes the target logit ``f_y = ||W_y|| ||x|| cos(theta_y)`` only, so it
costs the classifier matmul plus O(B*d + B*C) elementwise work.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from margin_jax import sharding
from margin_jax.losses import _common
from margin_jax.losses import _streamed
from margin_jax.losses._spec import LossSpec
from margin_jax.numerics import NORM_FLOOR_SQ
from margin_jax.numerics import norm_from_squared
from margin_jax.numerics import safe_norm


@sharding.accepts_explicit_axes
def target_cosine(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""cos(theta_y) between each feature and its target classifier, shape ``[batch_size]``.

  A diagnostic: the mean target angle is ``arccos`` of it (never differentiate
  through ``arccos``).
  """
  features, weights, labels, _, out_dtype = _common.prepare_features(
    features, weights, labels, shard=shard
  )
  return _common.target_cosines(features, weights, labels, shard=shard).astype(out_dtype)


def psi(cosine: ArrayLike, *, margin: int) -> jax.Array:
  r"""L-Softmax's monotone target function of cos(theta), without arccos.

  .. math::
    \psi(\theta) = (-1)^k \cos(m\theta) - 2k, \qquad
    \theta \in [k\pi/m, (k+1)\pi/m],\ k \in \{0, \dots, m-1\}

  cos(m theta) uses the binomial (Chebyshev) expansion of eq. 7,

  .. math::
    \cos(m\theta) = \sum_{n=0}^{\lfloor m/2 \rfloor} (-1)^n \binom{m}{2n}
      \cos^{m-2n}\theta\, (1 - \cos^2\theta)^n,

  and k counts the thresholds ``cos(j pi / m)``, j = 1..m-1, that cos(theta)
  is at or below, so only polynomials and comparisons are differentiated.

  Args:
    cosine: cos(theta), any shape, values in ``[-1, 1]``.
    margin: the integer m >= 1 (static).

  Returns:
    psi(theta), same shape as ``cosine``.

  References:
    Liu et al., Large-Margin Softmax Loss for CNNs, ICML 2016, eqs. 6-7.
  """
  margin = _common.check_integer_margin(margin)
  cos_m_theta, _ = _common.cos_sin_multiple(cosine, margin)
  k = sum((cosine <= math.cos(j * math.pi / margin)).astype(cosine.dtype) for j in range(1, margin))
  sign = 1.0 - 2.0 * jnp.mod(k, 2.0)  # (-1)^k
  return sign * cos_m_theta - 2.0 * k


@sharding.accepts_explicit_axes
def large_margin_softmax_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  margin: int,
  lam: ArrayLike,
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""L-Softmax: an angular margin m on the target class.

  .. math::
    f_{y} = \frac{\lambda \|W_y\| \|x\| \cos\theta_y + \|W_y\| \|x\| \psi(\theta_y)}{1 + \lambda},

    f_j = W_j^\top x \ (j \ne y), \qquad \ell = -\log \frac{e^{f_y}}{\sum_j e^{f_j}}

  with :func:`psi`. ``lam`` is the paper's blend that eases the margin in
  (Sec. 5.1): a large lambda is plain softmax; feed :func:`lambda_schedule`
  from the step to anneal it. ``margin=1`` is the softmax loss exactly.

  The closed-form gradients of the target logit are eqs. 9-10 (any m) and
  12-13 (m = 2). Eq. 11's printed condition for k is inverted: k = 0 when
  cos(theta) > cos(pi/2), k = 1 otherwise.

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    margin: integer m >= 1 (static); the papers use 2, 3 or 4.
    lam: the lambda blend >= 0 (may be traced), required: a large lambda is
      plain softmax, 0 the pure margin, which from the first step trains to
      chance. Anneal it with ``lambda_schedule(num_steps=N)(step)`` (the
      authors' schedule stretched to an N-step run) or pass 0.0 explicitly.
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
    >>> large_margin_softmax_loss(x, W, y, margin=2, lam=0.0).round(4)
    Array([0.8843, 0.1036], dtype=float32)

  References:
    Liu et al., Large-Margin Softmax Loss for Convolutional Neural Networks,
    ICML 2016, eqs. 4-13 and Sec. 5.1.
  """
  margin = _common.check_integer_margin(margin)
  valid = _lambda_checks(lam=lam)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where, shard=shard
  )
  return _common.apply_where(
    _large_margin(
      features @ weights,
      _common.target_norm_product(features, weights, labels, shard=shard),
      labels,
      margin=margin,
      lam=lam,
      shard=shard,
    ),
    where,
    out_dtype,
    valid,
  )


def _lambda_checks(*, lam, **_):
  return _common.check_range("lam", lam, low=0.0)


def _large_margin(logits, norm_product, labels, *, margin, lam, shard):
  """L-Softmax from the logits [B, C] and ||W_y|| ||x|| [B] (eqs. 4-8)."""
  if margin == 1:  # psi(theta) = cos(theta): the target logit is W_y^T x itself.
    return _common.cross_entropy(logits, labels, shard=shard)
  target_logit = _common.take_target(logits, labels, shard=shard)
  new_target = large_margin_target(target_logit, norm_product, margin=margin, lam=lam)
  return _common.cross_entropy_with_target(logits, labels, new_target, shard=shard)


def large_margin_target(target_logit, norm_product, *, margin: int, lam):
  """The L-Softmax target logit [B] from W_y^T x and ||W_y|| ||x|| [B] (eqs. 4-8):
  lambda-blended ||W_y|| ||x|| psi(theta_y); W_y^T x itself for m = 1."""
  if margin == 1:
    return target_logit
  margin_logit = norm_product * psi(_common.clip_cosine(target_logit, norm_product), margin=margin)
  return (lam * target_logit + margin_logit) / (1.0 + lam)


@sharding.accepts_explicit_axes
def a_softmax_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  margin: int,
  lam: ArrayLike,
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""A-Softmax (SphereFace): L-Softmax with unit-norm class weights.

  .. math::
    f_y = \|x\| \frac{\lambda \cos\theta_y + \psi(\theta_y)}{1 + \lambda},
    \qquad f_j = \|x\| \cos\theta_j

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``; each column is L2-normalised inside.
    labels: ``[batch_size]`` integers.
    margin: integer m >= 1 (static); the papers use 2, 3 or 4.
    lam: the lambda blend >= 0 (may be traced), required: a large lambda is
      plain NormFace-like softmax (unit W), 0 the pure margin, which from the first step trains to
      chance. Anneal it with ``lambda_schedule(**PUBLISHED_LAMBDA["a_softmax"], num_steps=N)(step)`` (the
      authors' schedule stretched to an N-step run) or pass 0.0 explicitly.
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
    >>> a_softmax_loss(x, W, y, margin=4, lam=0.0).round(4)
    Array([2.2902, 0.6483], dtype=float32)

  References:
    Liu et al., SphereFace: Deep Hypersphere Embedding for Face Recognition,
    CVPR 2017, eq. 6 (psi as L-Softmax eq. 6).
  """
  margin = _common.check_integer_margin(margin)
  valid = _lambda_checks(lam=lam)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where, shard=shard
  )
  # x @ normalize(W) computed as (x @ W) / ||W_j||: no normalised [d, C] copy of
  # W and no [d, C] passes for its gradient (the cost at many classes).
  logits = _common.matmul_unit_columns(features, weights)
  # ||W_y / ||W_y|| || is 1 (0 for a zero column): a constant, so no gradient
  # flows back through the gather (its scatter into a [d, C] zero array cost
  # ~7% of softmax at C = 10^3).
  unit_targets = _common.normalize(
    jax.lax.stop_gradient(_common.target_columns(weights, labels, shard=shard)), axis=1
  )
  norm_product = _common.safe_norm(features, axis=1) * _common.safe_norm(
    unit_targets, axis=1
  )  # ||x|| ||W_y / ||W_y|| ||
  return _common.apply_where(
    _large_margin(logits, norm_product, labels, margin=margin, lam=lam, shard=shard),
    where,
    out_dtype,
    valid,
  )


def _large_margin_streamed(head, *, margin, lam):
  stats = head.stats()
  target = large_margin_target(stats.dot_y[:, 0], head.norm_product(stats), margin=margin, lam=lam)
  return _streamed.cross_entropy(stats.lse, target)


def _a_softmax_streamed(head, *, margin, lam):
  stats = head.stats(unit_columns=True)
  # ||W_y / ||W_y|| ||: 1, or 0 for a zero column (as the materialised loss's
  # stop-gradient unit target).
  squared = jax.lax.stop_gradient(stats.squared_norm_y[:, 0])
  unit_norm = norm_from_squared(squared / jnp.maximum(squared, NORM_FLOOR_SQ))
  target_logit = stats.dot_y[:, 0] / norm_from_squared(stats.squared_norm_y[:, 0])
  norm_product = safe_norm(head.features, axis=1) * unit_norm
  target = large_margin_target(target_logit, norm_product, margin=margin, lam=lam)
  return _streamed.cross_entropy(stats.lse, target)


SPECS = (
  LossSpec(
    "l_softmax",
    large_margin_softmax_loss,
    "features",
    typical={"margin": 4, "lam": 0.0},
    # The Caffe layer settings of the authors' MNIST/CIFAR models, 18k iterations (Sec 5.1).
    lambda_schedule={
      "base": 1000.0,
      "gamma": 2.5e-5,
      "power": 35.0,
      "lambda_min": 0.0,
      "schedule_steps": 18_000,
    },
    paper="L-Softmax (Liu et al., ICML 2016) eqs 4-13, Sec 5.1",
    streamed=_large_margin_streamed,
    checks=_lambda_checks,
  ),
  LossSpec(
    "a_softmax",
    a_softmax_loss,
    "features",
    "cosine",
    typical={"margin": 4, "lam": 0.0},
    # The authors' released SphereFace-20 prototxt, for their 28k iterations (Sec 4.1).
    lambda_schedule={
      "base": 1000.0,
      "gamma": 0.12,
      "power": 1.0,
      "lambda_min": 5.0,
      "schedule_steps": 28_000,
    },
    paper="SphereFace (Liu et al., CVPR 2017) eq 7 (L-Softmax 6 with unit W)",
    streamed=_a_softmax_streamed,
    checks=_lambda_checks,
  ),
)
