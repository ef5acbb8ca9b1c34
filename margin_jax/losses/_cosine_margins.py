"""Cosine margins: NormFace, CosFace, ArcFace and insightface's combined margin.

Each normalises the features and the class columns, scales the cosines by s
and changes the target cosine only. Conventions as in
`margin_jax.losses._angular`: x ``[batch_size, dim]``, W ``[dim, num_classes]``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from margin_jax import sharding
from margin_jax.losses import _common
from margin_jax.losses import _streamed
from margin_jax.losses._spec import LossSpec

# What the angular margins do where the target angle passes pi (`arcface_loss`).
THETA_OVERFLOW = ("plain", "insightface", "easy")


def _check_arc_margin(margin, name: str = "margin"):
  """An angular margin in radians, in [0, pi) (`_common.check_range`)."""
  hint = ""
  value = _common.concrete_number(margin)
  if value is not None and value >= math.pi:
    hint = (
      f" The margin is in radians; {value} looks like degrees:"
      f" math.radians({value}) = {math.radians(value):.4f}."
    )
  return _common.check_range(name, margin, low=0.0, high=math.pi, hint=hint)


def check_scale(scale):
  """The scale s > 0 of the cosines (`_common.check_range`)."""
  return _common.check_range("scale", scale, low=0.0, low_open=True)


def _check_cos_margin(margin):
  # An additive margin on a cosine in [-1, 1]: at 2 or more no target can win.
  return _common.check_range("margin", margin, low=0.0, high=2.0)


def _normface_checks(*, scale, **_):
  return check_scale(scale)


def _cosface_checks(*, scale, margin, **_):
  return check_scale(scale) & _check_cos_margin(margin)


def arcface_checks(*, scale, margin, **_):
  """ArcFace's ranges: s > 0, m in [0, pi)."""
  return check_scale(scale) & _check_arc_margin(margin)


def _combined_checks(*, scale, m1=1.0, m2=0.0, m3=0.0, **_):
  # m1 < 1 stays a margin where m2 outweighs it: insightface's (0.9, 0.4, 0.15).
  m1_valid = _common.check_range("m1", m1, low=0.0, low_open=True)
  m3_valid = _common.check_range("m3", m3, low=0.0, high=2.0)
  return check_scale(scale) & m1_valid & _check_arc_margin(m2, "m2") & m3_valid


@sharding.accepts_explicit_axes
def normface_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""NormFace / N-Softmax: softmax over scaled cosines.

  .. math::
    \ell = -\log \frac{e^{s \cos\theta_y}}{\sum_j e^{s \cos\theta_j}}

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    scale: the scale s > 0 (may be traced); typically 16-64 (~16 for small
      nets; face recognition uses 30-64).
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
    >>> normface_loss(x, W, y, scale=16.0).round(4)
    Array([0.0009, 0.    ], dtype=float32)

  References:
    Wang et al., NormFace: L2 Hypersphere Embedding for Face Verification,
    ACM MM 2017, eq. 6 (the N-Softmax compared in the EM and Virtual papers).
  """
  valid = _normface_checks(scale=scale)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where, shard=shard
  )
  return _common.apply_where(
    _common.cross_entropy(scale * _common.cosine_logits(features, weights), labels, shard=shard),
    where,
    out_dtype,
    valid,
  )


@sharding.accepts_explicit_axes
def cosface_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  margin: ArrayLike,
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""CosFace / AM-Softmax: an additive cosine margin.

  .. math::
    \ell = -\log \frac{e^{s (\cos\theta_y - m)}}
      {e^{s (\cos\theta_y - m)} + \sum_{j \ne y} e^{s \cos\theta_j}}

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    scale: s > 0 (may be traced); the paper uses 64.
    margin: m in ``[0, 2)`` (may be traced); the paper uses 0.35 (0.25-0.45).
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
    >>> cosface_loss(x, W, y, scale=16.0, margin=0.35).round(4)
    Array([0.2127, 0.    ], dtype=float32)

  References:
    Wang et al., CosFace: Large Margin Cosine Loss, CVPR 2018, eq. 4.
  """
  valid = _cosface_checks(scale=scale, margin=margin)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where, shard=shard
  )
  cosine = _common.cosine_logits(features, weights)
  logits = scale * cosine
  target = cosface_target(
    _common.take_target(cosine, labels, shard=shard), scale=scale, margin=margin
  )
  return _common.apply_where(
    _common.cross_entropy_with_target(logits, labels, target, shard=shard), where, out_dtype, valid
  )


def cosface_target(cos_y, *, scale, margin):
  """CosFace's target logit s (cos(theta_y) - m) [B] (eq. 4)."""
  return scale * (cos_y - margin)


def _static_number(value) -> bool:
  """A Python number (not bool): its value is known at trace time."""
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer_multiplier(m1) -> int | None:
  """m1 as an int when it is a static whole number >= 1 (the polynomial path), else None."""
  if _static_number(m1) and m1 >= 1 and float(m1).is_integer():
    return int(m1)
  return None


def _margin_target(cos_y: jax.Array, *, m1, m2, m3, theta_overflow: str) -> jax.Array:
  """The target cosine cos(m1 theta + m2) - m3 of the combined margin, shape [B],
  from cos(theta) clipped to [-1, 1], with the ``theta_overflow`` rule
  (see `combined_margin_loss`; ``"clip"``: AdaFace's, the angle m1 theta + m2 kept in [0, pi])."""
  if theta_overflow == "clip":
    eps = jnp.finfo(cos_y.dtype).eps
    theta = jnp.arccos(jnp.clip(cos_y, -1.0 + eps, 1.0 - eps))
    return jnp.cos(jnp.clip(m1 * theta + m2, 0.0, math.pi)) - m3
  k = _integer_multiplier(m1)
  if k is not None:  # cos(k theta + m2) = cos(k theta) cos m2 - sin(k theta) sin m2
    cos_k, sin_k = _common.cos_sin_multiple(cos_y, k)
    target = cos_k * jnp.cos(m2) - sin_k * jnp.sin(m2) - m3
  else:  # arccos of the clipped cosine: its gradient stays finite at cos = +-1.
    eps = jnp.finfo(cos_y.dtype).eps
    theta = jnp.arccos(jnp.clip(cos_y, -1.0 + eps, 1.0 - eps))
    target = jnp.cos(m1 * theta + m2) - m3
  if theta_overflow == "plain":
    return target
  if theta_overflow == "easy":
    return jnp.where(cos_y > 0.0, target, cos_y)
  # "insightface": past the angle theta_0 where m1 theta + m2 = pi, the
  # target cos(theta) - shift. The constants of static hyperparameters are
  # Python floats, so the threshold is the same double the tests compare with.
  static = _static_number(m1) and _static_number(m2)
  cos, sin = (math.cos, math.sin) if static else (jnp.cos, jnp.sin)
  if k == 1:  # insightface's own rule, cos(theta) <= cos(pi - m2) -> cos(theta) - m2 sin(m2);
    # a negative m2 (AdaFace's angular margin of a high norm) never reaches pi.
    threshold, shift, reached = cos(math.pi - m2), m2 * sin(m2), m2 > 0
  else:
    theta_0 = (math.pi - m2) / m1
    threshold = cos(theta_0)
    # Shifted so that the target falls at theta_0 from -1 - m3 to -cos m2 - m2 sin m2 - m3,
    # as insightface's does at m1 = 1 (the two shifts agree there).
    shift = threshold + cos(m2) + m2 * sin(m2)
    reached = theta_0 <= math.pi  # m1 pi + m2 >= pi: the angle reaches pi at all
  return jnp.where((cos_y <= threshold) & reached, cos_y - shift - m3, target)


def angular_margin_target(cos_y, *, scale, m1, m2, m3, theta_overflow):
  """The target logit s (cos(m1 theta_y + m2) - m3) [B] from cos(theta_y) [B]."""
  cos_y = jnp.clip(cos_y, -1.0, 1.0)
  return scale * _margin_target(cos_y, m1=m1, m2=m2, m3=m3, theta_overflow=theta_overflow)


def _angular_margin_loss(cosine, labels, *, scale, m1, m2, m3, theta_overflow, shard):
  """Cross-entropy of s cos(theta_j) with the target s (cos(m1 theta_y + m2) - m3)."""
  target = angular_margin_target(
    _common.take_target(cosine, labels, shard=shard),
    scale=scale,
    m1=m1,
    m2=m2,
    m3=m3,
    theta_overflow=theta_overflow,
  )
  return _common.cross_entropy_with_target(scale * cosine, labels, target, shard=shard)


@sharding.accepts_explicit_axes
def arcface_loss(
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
  r"""ArcFace: an additive angular margin, in radians.

  .. math::
    \ell = -\log \frac{e^{s \cos(\theta_y + m)}}
      {e^{s \cos(\theta_y + m)} + \sum_{j \ne y} e^{s \cos\theta_j}},
    \quad \cos(\theta + m) = \cos\theta \cos m - \sin\theta \sin m

  computed from cos(theta) without arccos. Past theta + m = pi, cos(theta + m)
  rises again (the target logit is no longer decreasing in theta);
  ``theta_overflow`` chooses what the target is there:

  ===============  ==========================================================
  ``plain``        the paper's eq. 3 as is: :math:`\cos(\theta + m)` everywhere
  ``insightface``  insightface's fallback: where :math:`\cos\theta \le \cos(\pi - m)`
                   (:math:`\theta + m \ge \pi`), :math:`\cos\theta - m \sin m`;
                   the target is then non-increasing in theta for every
                   :math:`m \le 2.33` (where :math:`\cos m + m \sin m \ge 1`)
  ``easy``         the "easy margin": :math:`\cos(\theta + m)` where
                   :math:`\cos\theta > 0`, else the plain :math:`\cos\theta`
                   (no margin past 90 degrees)
  ===============  ==========================================================

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    scale: s > 0 (may be traced); the paper uses 64.
    margin: m in radians, in ``[0, pi)`` (may be traced); the paper uses 0.5
      (28.6 degrees). pytorch-metric-learning takes degrees: a Python number
      of pi or more is refused with a hint.
    theta_overflow: ``"plain"`` (default), ``"insightface"`` or ``"easy"`` (static).
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
    >>> arcface_loss(x, W, y, scale=16.0, margin=0.5).round(4)
    Array([0.1451, 0.    ], dtype=float32)

  References:
    Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face
    Recognition, CVPR 2019, eq. 3; the fallbacks are insightface's
    (``easy_margin`` and the ``th``/``mm`` rule of its ArcFace heads).
  """
  valid = arcface_checks(scale=scale, margin=margin)
  _common.check_choice("theta_overflow", theta_overflow, THETA_OVERFLOW)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where, shard=shard
  )
  loss = _angular_margin_loss(
    _common.cosine_logits(features, weights),
    labels,
    scale=scale,
    m1=1,
    m2=margin,
    m3=0.0,
    theta_overflow=theta_overflow,
    shard=shard,
  )
  return _common.apply_where(loss, where, out_dtype, valid)


@sharding.accepts_explicit_axes
def combined_margin_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  m1: ArrayLike = 1.0,
  m2: ArrayLike = 0.0,
  m3: ArrayLike = 0.0,
  theta_overflow: str = "plain",
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""The combined margin of insightface: SphereFace's, ArcFace's and CosFace's at once.

  .. math::
    \ell = -\log \frac{e^{s (\cos(m_1 \theta_y + m_2) - m_3)}}
      {e^{s (\cos(m_1 \theta_y + m_2) - m_3)} + \sum_{j \ne y} e^{s \cos\theta_j}}

  with the cosines of `normface_loss` (unit features and class columns).
  ``m1=1, m2=m, m3=0`` is `arcface_loss`, ``m1=1, m2=0, m3=m`` is
  `cosface_loss`, ``m1=m, m2=m3=0`` is SphereFace's multiplicative margin
  without its monotone psi.

  When ``m1`` is a Python number with a whole value (1, 2, 3.0) the target is
  computed without arccos: :math:`\cos(m_1\theta)` and :math:`\sin(m_1\theta)`
  are the Chebyshev (binomial) polynomials of :math:`\cos\theta` and
  :math:`\sin\theta = \sqrt{\max(1 - \cos^2\theta, \epsilon)}`, expanded with
  :math:`\cos(a + m_2) = \cos a \cos m_2 - \sin a \sin m_2`. Any other ``m1``
  (1.5, or a traced value) goes through
  :math:`\theta = \arccos(\mathrm{clip}(\cos\theta, -1 + \epsilon, 1 - \epsilon))`,
  whose gradient is finite (zero beyond the clip).

  ``theta_overflow`` (as in `arcface_loss`) sets the target past the angle
  :math:`\theta_0 = (\pi - m_2)/m_1` where :math:`m_1\theta + m_2` reaches pi:

  ===============  ==========================================================
  ``plain``        :math:`\cos(m_1\theta + m_2) - m_3` everywhere (it rises again
                   past :math:`\theta_0`)
  ``insightface``  where :math:`\theta \ge \theta_0` (:math:`\cos\theta \le \cos\theta_0`),
                   :math:`\cos\theta - \cos\theta_0 - \cos m_2 - m_2 \sin m_2 - m_3`.
                   For ``m1 = 1`` this is insightface's rule,
                   :math:`\cos\theta - m_2 \sin m_2 - m_3` where
                   :math:`\cos\theta \le \cos(\pi - m_2)`. For ``m1 != 1``
                   (insightface defines none) the fallback is shifted so the
                   target still drops at :math:`\theta_0` from :math:`-1 - m_3`
                   to :math:`-\cos m_2 - m_2\sin m_2 - m_3` and keeps falling:
                   non-increasing in theta for :math:`m_2 \le 2.33`. When
                   :math:`m_1\pi + m_2 < \pi` the angle never reaches pi and
                   this is ``plain``.
  ``easy``         the margins where :math:`\cos\theta > 0`, else the plain
                   :math:`\cos\theta` (no m3 either)
  ===============  ==========================================================

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    scale: s > 0 (may be traced); insightface uses 64.
    m1: multiplicative angular margin > 0; 1 is none. A Python whole number
      takes the arccos-free path; insightface's combined settings use 1.0
      (and 0.9 with m2 = 0.4, m3 = 0.15).
    m2: additive angular margin in radians, in ``[0, pi)`` (may be traced);
      insightface's common combined setting is 0.3.
    m3: additive cosine margin in ``[0, 2)`` (may be traced); commonly 0.2.
    theta_overflow: ``"plain"`` (default), ``"insightface"`` or ``"easy"`` (static).
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
    >>> combined_margin_loss(x, W, y, scale=16.0, m1=1.0, m2=0.3, m3=0.2).round(4)
    Array([0.2909, 0.    ], dtype=float32)

  References:
    Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face
    Recognition, CVPR 2019 (the combined margin; its equation number is not
    checked here, the paper's text is not in this repository; eq. 3 for
    m1 = 1, m3 = 0); the ``insightface`` and ``easy`` fallbacks follow
    insightface's ArcFace heads.
  """
  valid = _combined_checks(scale=scale, m1=m1, m2=m2, m3=m3)
  _common.check_choice("theta_overflow", theta_overflow, THETA_OVERFLOW)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where, shard=shard
  )
  loss = _angular_margin_loss(
    _common.cosine_logits(features, weights),
    labels,
    scale=scale,
    m1=m1,
    m2=m2,
    m3=m3,
    theta_overflow=theta_overflow,
    shard=shard,
  )
  return _common.apply_where(loss, where, out_dtype, valid)


def cosine_margin_streamed(target: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
  """The streamed form of a softmax over s cos(theta_j) whose target logit
  is ``target(cos_y, **hyperparameters)`` (``scale`` among them)."""

  def streamed(head, **hyperparameters):
    stats = head.stats(cosine=True, scale=hyperparameters["scale"])
    return _streamed.cross_entropy(stats.lse, target(_streamed.cosine_y(stats), **hyperparameters))

  return streamed


def declare_cosine_margin(
  name: str,
  target: Callable[..., jax.Array],
  *,
  typical: Mapping[str, Any] | None = None,
  paper: str = "",
) -> LossSpec:
  r"""A margin loss on the cosines, declared by its target logit: every engine at once.

  .. math::
    \ell = -\log \frac{e^{t(\cos\theta_y)}}{e^{t(\cos\theta_y)} + \sum_{j \ne y} e^{s \cos\theta_j}}

  with :math:`t` = ``target(cos_y, *, scale, ...)`` (per example, [B] ->
  [B]; its keyword-only parameters are the loss's hyperparameters and must
  include ``scale``, the s of the non-target logits). The returned
  declaration's ``fn`` is the materialised loss
  ``fn(features, weights, labels, *, <target's keywords>, where=None) -> [B]``
  (unit features and class columns, as `normface_loss`); its ``streamed``
  form runs it in `chunked`, and `margin_jax.parallel.shard_classes` shards
  either. `margin_jax.losses.register` adds it to `by_name` and the trainer.

  Args:
    name: the name `margin_jax.losses.by_name` will take.
    target: ``(cos_y [B], *, scale, ...) -> [B]``, the target logit (e.g.
      CosFace's ``scale * (cos_y - margin)``); cos_y is in [-1, 1] up to rounding.
    typical: default hyperparameters for `by_name` (e.g. ``{"scale": 30.0}``).
    paper: where its equations are.

  Returns:
    The `margin_jax.losses.LossSpec` (inputs ``"features"``, classified by cosine).

  Example:
    >>> import jax.numpy as jnp
    >>> def target(cos_y, *, scale, margin):
    ...   return scale * (cos_y - margin)
    >>> spec = declare_cosine_margin("cosface_again", target)
    >>> x, W, y = jnp.array([[1.0, 2.0]]), jnp.eye(2), jnp.array([1])
    >>> bool(jnp.allclose(spec.fn(x, W, y, scale=16.0, margin=0.35),
    ...                   cosface_loss(x, W, y, scale=16.0, margin=0.35)))
    True
  """
  keywords = [p for p in inspect.signature(target).parameters.values() if p.kind is p.KEYWORD_ONLY]
  if "scale" not in {p.name for p in keywords}:
    raise ValueError(
      f"target {getattr(target, '__name__', target)!r} of {name!r} must take a keyword-only "
      "scale (the s of the non-target logits s cos(theta_j))."
    )
  positional = [
    inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    for n in ("features", "weights", "labels")
  ]
  where, shard = (
    inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in ("where", "shard")
  )
  signature = inspect.Signature([*positional, *keywords, where, shard])

  def loss(features, weights, labels, *, where=None, shard=None, **hyperparameters):
    signature.bind(features, weights, labels, where=where, **hyperparameters)  # names the keyword
    scale = hyperparameters["scale"]
    valid = check_scale(scale)
    features, weights, labels, where, out_dtype = _common.prepare_features(
      features, weights, labels, where=where, shard=shard
    )
    cosine = _common.cosine_logits(features, weights)
    target_logit = target(_common.take_target(cosine, labels, shard=shard), **hyperparameters)
    loss = _common.cross_entropy_with_target(scale * cosine, labels, target_logit, shard=shard)
    return _common.apply_where(loss, where, out_dtype, valid)

  loss.__signature__ = signature
  loss.__name__ = loss.__qualname__ = f"{name}_loss"
  loss.__doc__ = f"The cosine margin {name!r} (`declare_cosine_margin`): target {target.__name__}."
  return LossSpec(
    name,
    sharding.accepts_explicit_axes(loss),
    "features",
    "cosine",
    typical=dict(typical or {}),
    paper=paper,
    streamed=cosine_margin_streamed(target),
    checks=lambda *, scale, **_: check_scale(scale),
  )


def _normface_target(cos_y, *, scale):
  return scale * cos_y


def _combined_target(cos_y, *, scale, m1=1.0, m2=0.0, m3=0.0, theta_overflow="plain"):
  return angular_margin_target(
    cos_y, scale=scale, m1=m1, m2=m2, m3=m3, theta_overflow=theta_overflow
  )


def arcface_target(cos_y, *, scale, margin, theta_overflow="plain"):
  """ArcFace's target logit s cos(theta_y + m) [B] (eq. 3, with ``theta_overflow``)."""
  return _combined_target(cos_y, scale=scale, m2=margin, theta_overflow=theta_overflow)


SPECS = (
  LossSpec(
    "normface",
    normface_loss,
    "features",
    "cosine",
    typical={"scale": 16.0},
    paper="NormFace (Wang et al., ACM MM 2017) eq 6",
    streamed=cosine_margin_streamed(_normface_target),
    checks=_normface_checks,
  ),
  LossSpec(
    "cosface",
    cosface_loss,
    "features",
    "cosine",
    typical={"scale": 64.0, "margin": 0.35},
    paper="CosFace (Wang et al., CVPR 2018) eq 4",
    streamed=cosine_margin_streamed(cosface_target),
    checks=_cosface_checks,
  ),
  LossSpec(
    "arcface",
    arcface_loss,
    "features",
    "cosine",
    typical={"scale": 64.0, "margin": 0.5},
    paper="ArcFace (Deng et al., CVPR 2019) eq 3",
    streamed=cosine_margin_streamed(arcface_target),
    checks=arcface_checks,
  ),
  # insightface's combined (m1, m2, m3) = (1, 0.3, 0.2).
  LossSpec(
    "combined_margin",
    combined_margin_loss,
    "features",
    "cosine",
    typical={"scale": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2},
    paper="insightface's combined margin (ArcFace, Deng et al., CVPR 2019; eq not checked)",
    streamed=cosine_margin_streamed(_combined_target),
    checks=_combined_checks,
  ),
)
