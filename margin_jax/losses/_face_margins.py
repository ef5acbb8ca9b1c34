"""Adaptive face-recognition margins: AdaFace, MagFace, CurricularFace, ElasticFace.

ArcFace or CosFace whose margin changes per example (with the feature norm,
the training stage, or at random), built on the target of
`margin_jax.losses._cosine_margins` (cos(theta_y + m2) - m3 with per-example
m2, m3). AdaFace's norm statistics and CurricularFace's t are training state:
`adaface_norm_stats` and `curricularface_t` update them before each step's
loss, as the authors do, and the caller carries them between steps (the
trainer keeps them in its train state). Conventions as in
`margin_jax.losses._angular`: x ``[batch_size, dim]``, W ``[dim, num_classes]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from margin_jax import sharding
from margin_jax.losses import _common
from margin_jax.losses import _streamed
from margin_jax.losses._cosine_margins import THETA_OVERFLOW as _ARC_OVERFLOW
from margin_jax.losses._cosine_margins import _angular_margin_loss
from margin_jax.losses._cosine_margins import _check_arc_margin
from margin_jax.losses._cosine_margins import arcface_checks
from margin_jax.losses._cosine_margins import check_scale
from margin_jax.losses._cosine_margins import _margin_target
from margin_jax.losses._cosine_margins import angular_margin_target
from margin_jax.losses._spec import LossSpec
from margin_jax.numerics import compute_dtype
from margin_jax.numerics import safe_norm

# arcface_loss's rules for theta + m > pi, and "clip" (AdaFace's code): the
# angle theta + m kept in [0, pi].
THETA_OVERFLOW = (*_ARC_OVERFLOW, "clip")
ELASTIC_KINDS = ("arc", "cos")
# The denominator's epsilon in AdaFace's norm indicator (the authors' 1e-3).
ADAFACE_EPS = 1e-3


def _check_overflow(theta_overflow) -> None:
  _common.check_choice("theta_overflow", theta_overflow, THETA_OVERFLOW)


# The hyperparameters' ranges (`margin_jax.losses._common.check_range`), each
# loss's in one function that its materialised and streamed forms both run.
def _adaface_checks(*, scale, margin, h=0.333, norm_std, **_):
  return (
    check_scale(scale)
    & _check_arc_margin(margin)
    & _common.check_range("h", h, low=0.0)
    & _common.check_range("norm_std", norm_std, low=0.0)
  )


def _magface_checks(
  *, scale, lower_margin, upper_margin, lower_norm=10.0, upper_norm=110.0, lambda_g, **_
):
  return (
    check_scale(scale)
    & _check_arc_margin(lower_margin, "lower_margin")
    & _check_arc_margin(upper_margin, "upper_margin")
    & _common.check_range("lower_norm", lower_norm, low=0.0, low_open=True)
    & _common.check_range("upper_norm", upper_norm, low=lower_norm, low_open=True)
    & _common.check_range("lambda_g", lambda_g, low=0.0)
  )


def _elasticface_checks(*, scale, margin, sigma, kind="arc", **_):
  if kind == "arc":
    margin_valid = _check_arc_margin(margin)
  else:
    margin_valid = _common.check_range("margin", margin, low=0.0, high=2.0)
  return check_scale(scale) & margin_valid & _common.check_range("sigma", sigma, low=0.0)


def _batch_mean(values, where, axis_name):
  """The mean of ``values`` [B] over the kept examples (across ``axis_name``'s
  devices too) and how many were kept."""
  keep = jnp.ones(values.shape, bool) if where is None else where
  total = jnp.sum(jnp.where(keep, values, 0.0))
  count = jnp.sum(keep.astype(values.dtype))
  if axis_name is not None:
    total, count = lax.psum((total, count), axis_name)
  return total / jnp.maximum(count, 1.0), count


@sharding.accepts_explicit_axes
def adaface_norm_stats(
  features: ArrayLike,
  norm_mean: ArrayLike,
  norm_std: ArrayLike,
  *,
  momentum: float = 0.01,
  where: ArrayLike | None = None,
  axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array]:
  r"""AdaFace's running statistics of the feature norms, updated with this batch.

  .. math::
    \mu_z \leftarrow (1 - \alpha)\, \mu_z + \alpha\, \mathrm{mean}_i \|x_i\|, \qquad
    \sigma_z \leftarrow (1 - \alpha)\, \sigma_z + \alpha\, \mathrm{std}_i \|x_i\|

  with :math:`\alpha` = ``momentum`` and the unbiased (n - 1) standard
  deviation, both as the authors' code (``t_alpha = 0.01``, ``torch.std``),
  starting from :math:`\mu_z = 20`, :math:`\sigma_z = 100`. Call it before the
  step's loss and feed the result to `adaface_loss`; no gradient flows
  through it. With ``axis_name`` (a ``pmap``/``shard_map`` batch axis) the
  batch is the global one across the devices.

  Args:
    features: ``[batch_size, dim]``.
    norm_mean: the running mean :math:`\mu_z`.
    norm_std: the running standard deviation :math:`\sigma_z`.
    momentum: the weight of this batch's statistics.
    where: optional boolean mask ``[batch_size]``: only these examples count.
    axis_name: the mapped axis the batch is split over, or ``None``.

  Returns:
    ``(norm_mean, norm_std)``, scalars in the compute dtype; unchanged when
    no example is kept (the std when fewer than two are).

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[3.0, 4.0], [6.0, 8.0]])  # norms 5 and 10
    >>> adaface_norm_stats(x, 20.0, 100.0, momentum=0.5)
    (Array(13.75, dtype=float32), Array(51.76777, dtype=float32))

  References:
    Kim, Jain & Liu, AdaFace: Quality Adaptive Margin for Face Recognition,
    CVPR 2022, Sec. 3 (the exponential moving average of the batch
    statistics of ||z_i||; equation numbers not checked against the paper's
    text, which was not reachable here). A transcription of the paper gives
    alpha = 0.99 as the batch statistic's weight; the authors' code weighs
    the batch by 0.01, as here.
  """
  features = jnp.asarray(features)
  where = _common.check_where(where, features.shape[0])
  features = _common.mask_rows(features.astype(compute_dtype(features.dtype)), where)
  norms = lax.stop_gradient(safe_norm(features, axis=1))
  mean, count = _batch_mean(norms, where, axis_name)
  squares, _ = _batch_mean(jnp.square(norms - mean), where, axis_name)
  std = jnp.sqrt(squares * count / jnp.maximum(count - 1.0, 1.0))
  new_mean = (1.0 - momentum) * norm_mean + momentum * mean
  new_std = (1.0 - momentum) * norm_std + momentum * std
  return jnp.where(count > 0, new_mean, norm_mean), jnp.where(count > 1, new_std, norm_std)


@sharding.accepts_explicit_axes
def adaface_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  margin: ArrayLike,
  h: ArrayLike = 0.333,
  norm_mean: ArrayLike,
  norm_std: ArrayLike,
  theta_overflow: str = "plain",
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""AdaFace: an angular and an additive margin set by the feature norm.

  .. math::
    \hat z = \mathrm{clip}\Big(h \frac{\|x\| - \mu_z}{\sigma_z + \epsilon}, -1, 1\Big), \quad
    g_{angle} = -m \hat z, \quad g_{add} = m \hat z + m, \quad
    f_y = s \big(\cos(\theta_y + g_{angle}) - g_{add}\big)

  the target logit, the others :math:`s \cos\theta_j`; :math:`\hat z` (the
  image quality indicator, :math:`\epsilon = 10^{-3}`) has no gradient.
  :math:`\hat z = -1` (low norm) is ArcFace with margin m, :math:`\hat z = 0`
  (or h = 0) CosFace with margin m, :math:`\hat z = 1` a negative angular
  margin with an additive 2m. The scale multiplies the whole target, as in
  the authors' head and as these reductions need (a transcription of the
  paper's equation reads :math:`s \cos(\theta_y + g_{angle}) - g_{add}`). :math:`\mu_z,
  \sigma_z` come from `adaface_norm_stats` (initially 20 and 100). The
  authors also clip the norms to [0.001, 100] and the angle to
  [0.001, pi - 0.001] (``theta_overflow="clip"``, with [0, pi]); here the
  norms are used as they are.

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    scale: s > 0 (may be traced); the paper uses 64.
    margin: m in radians, in ``[0, pi)`` (may be traced); the paper uses 0.4.
    h: the concentration of :math:`\hat z` (may be traced); the paper uses 0.333.
    norm_mean: :math:`\mu_z`, the running mean of the feature norms.
    norm_std: :math:`\sigma_z`, their running standard deviation.
    theta_overflow: past theta + m = pi (static): ``"plain"`` (default, the
      equation as printed), ``"insightface"`` or ``"easy"`` as in `arcface_loss`,
      or ``"clip"``: the angle theta + m clipped to [0, pi].
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
    >>> adaface_loss(x, W, y, scale=16.0, margin=0.4, norm_mean=20.0, norm_std=100.0).round(4)
    Array([0.3574, 0.    ], dtype=float32)

  References:
    Kim, Jain & Liu, AdaFace: Quality Adaptive Margin for Face Recognition,
    CVPR 2022, Sec. 3 (the image quality indicator and the adaptive margin
    function; equation numbers not checked against the paper's text, which
    was not reachable here: the signs of g_angle and g_add follow a
    transcription of it and the authors' ``head.py``).
  """
  _check_overflow(theta_overflow)
  valid = _adaface_checks(scale=scale, margin=margin, h=h, norm_std=norm_std)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where, shard=shard
  )
  m2, m3 = _adaface_margins(features, margin=margin, h=h, norm_mean=norm_mean, norm_std=norm_std)
  loss = _angular_margin_loss(
    _common.cosine_logits(features, weights),
    labels,
    scale=scale,
    m1=1,
    m2=m2,
    m3=m3,
    theta_overflow=theta_overflow,
    shard=shard,
  )
  return _common.apply_where(loss, where, out_dtype, valid)


def _adaface_margins(features, *, margin, h, norm_mean, norm_std):
  """AdaFace's angular and additive margins (g_angle, g_add) [B] from the
  norm indicator z-hat (no gradient)."""
  norms = safe_norm(features, axis=1)
  z = lax.stop_gradient(jnp.clip(h * (norms - norm_mean) / (norm_std + ADAFACE_EPS), -1.0, 1.0))
  return -margin * z, margin * (1.0 + z)


@sharding.accepts_explicit_axes
def magface_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  lower_margin: ArrayLike,
  upper_margin: ArrayLike,
  lower_norm: ArrayLike = 10.0,
  upper_norm: ArrayLike = 110.0,
  lambda_g: ArrayLike,
  theta_overflow: str = "plain",
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""MagFace: ArcFace whose margin grows with the feature norm, plus a norm regulariser.

  .. math::
    a = \mathrm{clip}(\|x\|, l_a, u_a), \quad
    m(a) = \frac{u_m - l_m}{u_a - l_a} (a - l_a) + l_m, \quad
    \ell = -\log \frac{e^{s \cos(\theta_y + m(a))}}
      {e^{s \cos(\theta_y + m(a))} + \sum_{j \ne y} e^{s \cos\theta_j}}
      + \lambda_g g(a), \quad g(a) = \frac1a + \frac{a}{u_a^2}

  per example (the authors add the batch mean of :math:`\lambda_g g(a)` to the
  mean cross-entropy: the same batch loss). The gradient flows through a
  into the margin and g (zero where the norm is clipped). ``lower_margin =
  upper_margin`` and ``lambda_g = 0`` is `arcface_loss`. At test time the
  feature norm ||x|| is the face's quality score (larger: more recognisable)
  and the classes are compared by cosine. The authors' head uses the
  ``"easy"`` margin.

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    scale: s > 0 (may be traced); the authors' training script uses 64 (as
      the values below).
    lower_margin: :math:`l_m` in radians, in ``[0, pi)``; 0.45.
    upper_margin: :math:`u_m` in radians, in ``[0, pi)``; 0.8.
    lower_norm: :math:`l_a` > 0; 10.
    upper_norm: :math:`u_a` > :math:`l_a`; 110.
    lambda_g: the regulariser's weight :math:`\lambda_g` >= 0; 35.
    theta_overflow: past theta + m = pi (static): ``"plain"`` (default, the
      equation as printed), ``"insightface"`` or ``"easy"`` as in `arcface_loss`,
      or ``"clip"``: the angle theta + m clipped to [0, pi].
    where: optional boolean mask ``[batch_size]``; examples where it is False
      get loss 0 and no gradient (optax's ``where``).
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

  Returns:
    Per-example loss, shape ``[batch_size]``.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[10.0, 20.0], [20.0, -10.0]])  # features [B=2, d=2]
    >>> W = jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]])  # weights [d=2, C=3]
    >>> y = jnp.array([1, 0])
    >>> kwargs = dict(lower_margin=0.45, upper_margin=0.8, lambda_g=35.0)  # norms 10..110
    >>> magface_loss(x, W, y, scale=16.0, **kwargs).round(4)
    Array([1.7635, 1.6299], dtype=float32)

  References:
    Meng et al., MagFace: A Universal Representation for Face Recognition
    and Quality Assessment, CVPR 2021, Sec. 3 (the loss) and Sec. 4's
    linear m(a) and hyperbolic g(a); equation numbers not checked against
    the paper's text, which was not reachable here. The margin and g follow
    the authors' ``MagLinear`` and ``MagLoss``.
  """
  _check_overflow(theta_overflow)
  valid = _magface_checks(
    scale=scale,
    lower_margin=lower_margin,
    upper_margin=upper_margin,
    lower_norm=lower_norm,
    upper_norm=upper_norm,
    lambda_g=lambda_g,
  )
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where, shard=shard
  )
  margins, regulariser = _magface_terms(
    features,
    lower_margin=lower_margin,
    upper_margin=upper_margin,
    lower_norm=lower_norm,
    upper_norm=upper_norm,
    lambda_g=lambda_g,
  )
  loss = _angular_margin_loss(
    _common.cosine_logits(features, weights),
    labels,
    scale=scale,
    m1=1,
    m2=margins,
    m3=0.0,
    theta_overflow=theta_overflow,
    shard=shard,
  )
  return _common.apply_where(loss + regulariser, where, out_dtype, valid)


def _magface_terms(features, *, lower_margin, upper_margin, lower_norm, upper_norm, lambda_g):
  """MagFace's margin m(a) [B] and regulariser lambda_g g(a) [B]."""
  a = jnp.clip(safe_norm(features, axis=1), lower_norm, upper_norm)
  m = (upper_margin - lower_margin) / (upper_norm - lower_norm) * (a - lower_norm) + lower_margin
  return m, lambda_g * (1.0 / a + a / upper_norm**2)


@sharding.accepts_explicit_axes
def curricularface_t(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  t: ArrayLike,
  *,
  momentum: float = 0.01,
  where: ArrayLike | None = None,
  axis_name: str | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""CurricularFace's t, updated with this batch's mean target cosine.

  .. math::
    t \leftarrow (1 - \alpha)\, t + \alpha\, \mathrm{mean}_i \cos\theta_{y_i}

  with :math:`\alpha` = ``momentum`` (0.01, the authors' code), starting
  from t = 0. Call it before the step's loss and feed the result to
  `curricularface_loss`; no gradient flows through it. With ``axis_name``
  (a ``pmap``/``shard_map`` batch axis) the mean is over the global batch;
  with the classes split too (``shard``, as the mesh trainer runs it) the
  target cosine comes from the shard that owns the label.

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    t: the previous t.
    momentum: the weight of this batch's mean.
    where: optional boolean mask ``[batch_size]``: only these examples count;
      a row whose label is out of range is skipped too (t stays finite).
    axis_name: the mapped axis the batch is split over, or ``None``.
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

  Returns:
    The new t, a scalar in the compute dtype; unchanged when no example is
    kept; NaN if a kept label is outside the classes.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1.0, 2.0], [2.0, -1.0]])  # features [B=2, d=2]
    >>> W = jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]])  # weights [d=2, C=3]
    >>> curricularface_t(x, W, jnp.array([1, 0]), 0.0).round(5)  # 0.01 * mean(0.894, 0.894)
    Array(0.00894, dtype=float32)

  References:
    Huang et al., CurricularFace: Adaptive Curriculum Learning Loss for Deep
    Face Recognition, CVPR 2020, Sec. 3 (t as the exponential moving
    average of the mean target cosine; equation numbers not checked against
    the paper's text, which was not reachable here).
  """
  features, weights, labels, where, _ = _common.prepare_features(
    features, weights, labels, where=where, shard=shard
  )
  cos_y = lax.stop_gradient(_common.target_cosines(features, weights, labels, shard=shard))
  # A label outside [0, C) gives a NaN target: that row is skipped, as if masked.
  known = jnp.isfinite(cos_y) if where is None else where & jnp.isfinite(cos_y)
  mean, count = _batch_mean(cos_y, known, axis_name)
  return jnp.where(count > 0, (1.0 - momentum) * t + momentum * mean, t)


@sharding.accepts_explicit_axes
def curricularface_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  margin: ArrayLike,
  t: ArrayLike,
  theta_overflow: str = "plain",
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""CurricularFace: ArcFace whose hard negatives weigh more as training advances.

  .. math::
    f_y = s \cos(\theta_y + m), \qquad
    f_j = \begin{cases} s \cos\theta_j (t + \cos\theta_j) &
      \cos\theta_j > \cos(\theta_y + m) \text{ (hard)} \\
      s \cos\theta_j & \text{otherwise} \end{cases}

  with t from `curricularface_t` (no gradient; 0 at the start, when hard
  negatives are scaled down, rising towards the mean target cosine). The
  hard-negative test uses :math:`\cos(\theta_y + m)` itself, as the authors'
  code, whatever ``theta_overflow`` makes of the target (whose fallback past
  pi, ``"insightface"``, the authors' code uses). Class-sharded, only the
  target cosine is shared (from the shard that owns the label).

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    scale: s > 0 (may be traced); the paper uses 64.
    margin: m in radians, in ``[0, pi)`` (may be traced); the paper uses 0.5.
    t: the adaptive parameter (may be traced).
    theta_overflow: past theta + m = pi (static): ``"plain"`` (default, the
      equation as printed), ``"insightface"`` or ``"easy"`` as in `arcface_loss`,
      or ``"clip"``: the angle theta + m clipped to [0, pi].
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
    >>> def loss(t):  # example 0's loss: its hard negatives (classes 0, 2) weigh more as t grows
    ...   return round(float(curricularface_loss(x, W, y, scale=16.0, margin=1.0, t=t)[0]), 3)
    >>> [loss(0.0), loss(0.3)]
    [1.845, 3.761]

  References:
    Huang et al., CurricularFace: Adaptive Curriculum Learning Loss for Deep
    Face Recognition, CVPR 2020, Sec. 3 (the target and the modulation
    N(t, cos theta_j) of the negatives; equation numbers not checked against
    the paper's text, which was not reachable here).
  """
  _check_overflow(theta_overflow)
  valid = arcface_checks(scale=scale, margin=margin)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where, shard=shard
  )
  cosine = _common.cosine_logits(features, weights)
  cos_y = jnp.clip(_common.take_target(cosine, labels, shard=shard), -1.0, 1.0)
  threshold = lax.stop_gradient(_hardness_threshold(cos_y, margin))
  negatives = scale * _curricular_negatives(cosine, threshold, lax.stop_gradient(t))
  target = scale * _margin_target(cos_y, m1=1, m2=margin, m3=0.0, theta_overflow=theta_overflow)
  loss = _common.cross_entropy_with_target(negatives, labels, target, shard=shard)
  return _common.apply_where(loss, where, out_dtype, valid)


def _hardness_threshold(cos_y, margin):
  """cos(theta_y + m) [B]: a negative class with a larger cosine is hard."""
  sin_y = jnp.sqrt(jnp.maximum(1.0 - cos_y * cos_y, jnp.finfo(cos_y.dtype).eps))
  return cos_y * jnp.cos(margin) - sin_y * jnp.sin(margin)


def _curricular_negatives(cosine, threshold, t):
  """N(t, cos theta_j): cos theta_j (t + cos theta_j) for a hard negative, else
  cos theta_j ([B, c] cosines, threshold [B])."""
  return jnp.where(cosine > threshold[:, None], cosine * (t + cosine), cosine)


@sharding.accepts_explicit_axes
def elasticface_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  key: jax.Array,
  *,
  scale: ArrayLike,
  margin: ArrayLike,
  sigma: ArrayLike,
  kind: str = "arc",
  theta_overflow: str = "plain",
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""ElasticFace: ArcFace's or CosFace's margin drawn anew for every example.

  .. math::
    m_i \sim \mathcal N(m, \sigma^2), \qquad
    f_y = s \cos(\theta_y + m_i) \ (\text{arc}) \quad \text{or} \quad
    f_y = s (\cos\theta_y - m_i) \ (\text{cos})

  one draw per example per call from ``key`` (the same key gives the same
  margins; class-sharded with the batch split, each shard takes its slice of
  the whole batch's draw). ``sigma = 0`` is `arcface_loss` / `cosface_loss`.

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    key: a PRNG key.
    scale: s > 0 (may be traced); the paper uses 64.
    margin: the mean margin m (radians for ``"arc"``), in ``[0, pi)`` (may
      be traced); the paper uses 0.5 (arc) and 0.35 (cos).
    sigma: the margins' standard deviation >= 0 (may be traced); the paper
      uses 0.05 for both.
    kind: ``"arc"`` (ElasticFace-Arc, the angular margin) or ``"cos"``
      (ElasticFace-Cos, the additive cosine margin) (static).
    theta_overflow: past theta + m = pi (static): ``"plain"`` (default, the
      equation as printed), ``"insightface"`` or ``"easy"`` as in `arcface_loss`,
      or ``"clip"``: the angle theta + m clipped to [0, pi]. The angular form only.
    where: optional boolean mask ``[batch_size]``; examples where it is False
      get loss 0 and no gradient (optax's ``where``).
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

  Returns:
    Per-example loss, shape ``[batch_size]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jnp.array([[1.0, 2.0], [2.0, -1.0]])  # features [B=2, d=2]
    >>> W = jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]])  # weights [d=2, C=3]
    >>> y = jnp.array([1, 0])
    >>> elasticface_loss(x, W, y, jax.random.key(0), scale=16.0, margin=0.5, sigma=0.0).round(4)
    Array([0.1451, 0.    ], dtype=float32)

  References:
    Boutros et al., ElasticFace: Elastic Margin Loss for Deep Face
    Recognition, CVPR Workshops 2022, eqs. 6 (ElasticFace-Arc) and 7
    (ElasticFace-Cos), as numbered in a transcription (the paper's text was
    not reachable here); the authors' code draws with ``torch.normal`` per
    example and uses the plain target past pi.
  """
  _check_overflow(theta_overflow)
  _common.check_choice("kind", kind, ELASTIC_KINDS)
  if kind == "cos" and theta_overflow != "plain":
    raise ValueError("theta_overflow applies to kind='arc' only.")
  valid = _elasticface_checks(scale=scale, margin=margin, sigma=sigma, kind=kind)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where, shard=shard
  )
  m2, m3 = _elastic_margins(
    key, labels, features.dtype, margin=margin, sigma=sigma, kind=kind, shard=shard
  )
  loss = _angular_margin_loss(
    _common.cosine_logits(features, weights),
    labels,
    scale=scale,
    m1=1,
    m2=m2,
    m3=m3,
    theta_overflow=theta_overflow,
    shard=shard,
  )
  return _common.apply_where(loss, where, out_dtype, valid)


def _elastic_margins(key, labels, dtype, *, margin, sigma, kind, shard):
  """ElasticFace's per-example (m2, m3): the draws as the angular (arc) or
  the cosine (cos) margin."""
  draws = margin + sigma * _common.example_normal(key, labels.shape, dtype, shard=shard)
  return (draws, 0.0) if kind == "arc" else (0.0, draws)


# Their streamed forms (margin_jax.losses._streamed): the margins above on the
# streamed target cosine, and CurricularFace's hard negatives as the map of
# the non-target cosines, against the target's no-gradient threshold.
def _arc_cross_entropy(stats, *, scale, m2, m3, theta_overflow):
  target = angular_margin_target(
    _streamed.cosine_y(stats), scale=scale, m1=1, m2=m2, m3=m3, theta_overflow=theta_overflow
  )
  return _streamed.cross_entropy(stats.lse, target)


def _adaface_streamed(head, *, scale, margin, h=0.333, norm_mean, norm_std, theta_overflow="plain"):
  m2, m3 = _adaface_margins(
    head.features, margin=margin, h=h, norm_mean=norm_mean, norm_std=norm_std
  )
  stats = head.stats(cosine=True, scale=scale)
  return _arc_cross_entropy(stats, scale=scale, m2=m2, m3=m3, theta_overflow=theta_overflow)


def _magface_streamed(head, *, scale, theta_overflow="plain", **norm_terms):
  margins, regulariser = _magface_terms(head.features, **norm_terms)
  stats = head.stats(cosine=True, scale=scale)
  loss = _arc_cross_entropy(stats, scale=scale, m2=margins, m3=0.0, theta_overflow=theta_overflow)
  return loss + regulariser


def _elasticface_streamed(head, key, *, scale, margin, sigma, kind="arc", theta_overflow="plain"):
  m2, m3 = _elastic_margins(
    key, head.labels, head.features.dtype, margin=margin, sigma=sigma, kind=kind, shard=head.shard
  )
  stats = head.stats(cosine=True, scale=scale)
  return _arc_cross_entropy(stats, scale=scale, m2=m2, m3=m3, theta_overflow=theta_overflow)


def _curricularface_streamed(head, *, scale, margin, t, theta_overflow="plain"):
  cos_y = _common.target_cosines(head.features, head.weights[0], head.labels, shard=head.shard)
  stats = head.stats(
    cosine=True,
    scale=scale,
    negatives=_curricular_negatives,
    context=(_hardness_threshold(cos_y, margin), jnp.asarray(t, cos_y.dtype)),
  )
  cos_y = jnp.clip(_streamed.cosine_y(stats), -1.0, 1.0)
  target = scale * _margin_target(cos_y, m1=1, m2=margin, m3=0.0, theta_overflow=theta_overflow)
  return _streamed.cross_entropy(stats.lse, target)


SPECS = (
  LossSpec(
    "adaface",
    adaface_loss,
    "features",
    "cosine",
    typical={"scale": 64.0, "margin": 0.4, "h": 0.333, "norm_mean": 20.0, "norm_std": 100.0},
    state=("norm_mean", "norm_std"),
    update_state=lambda x, w, y, state, *, shard, **kw: dict(
      zip(
        ("norm_mean", "norm_std"),
        adaface_norm_stats(x, state["norm_mean"], state["norm_std"], **kw),
      )
    ),
    paper="AdaFace (Kim et al., CVPR 2022) Sec 3; eq numbers not checked",
    streamed=_adaface_streamed,
    checks=_adaface_checks,
  ),
  LossSpec(
    "magface",
    magface_loss,
    "features",
    "cosine",
    typical={
      "scale": 64.0,
      "lower_margin": 0.45,
      "upper_margin": 0.8,
      "lower_norm": 10.0,
      "upper_norm": 110.0,
      "lambda_g": 35.0,
    },
    paper="MagFace (Meng et al., CVPR 2021) Sec 3-4; eq numbers not checked",
    streamed=_magface_streamed,
    checks=_magface_checks,
  ),
  LossSpec(
    "curricularface",
    curricularface_loss,
    "features",
    "cosine",
    typical={"scale": 64.0, "margin": 0.5, "t": 0.0},
    state=("t",),
    update_state=lambda x, w, y, state, **kw: {"t": curricularface_t(x, w, y, state["t"], **kw)},
    paper="CurricularFace (Huang et al., CVPR 2020) Sec 3; eq numbers not checked",
    streamed=_curricularface_streamed,
    checks=arcface_checks,
  ),
  # ElasticFace-Arc; ElasticFace-Cos is kind="cos" with margin 0.35.
  LossSpec(
    "elasticface",
    elasticface_loss,
    "features",
    "cosine",
    typical={"scale": 64.0, "margin": 0.5, "sigma": 0.05},
    needs_key=True,
    paper="ElasticFace (Boutros et al., CVPRW 2022) eqs 6-7",
    streamed=_elasticface_streamed,
    checks=_elasticface_checks,
  ),
)
