"""Losses of features and class weights: the angular and norm-based margins.

Conventions: ``features`` x has shape ``[batch_size, dim]``, ``weights`` W has
shape ``[dim, num_classes]`` (column j is class j's classifier, the Flax Dense
kernel layout) and the logits are ``f = x @ W``. Each loss changes the target
logit ``f_y = ||W_y|| ||x|| cos(theta_y)`` only, so it costs the classifier
matmul plus O(B*d + B*C) elementwise work. Sub-center ArcFace takes K
sub-centres per class, ``[num_subcenters, dim, num_classes]``, and K matmuls.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from margin_jax.losses import _common
from margin_jax.losses._logit_losses import softmax_loss

NOISE_TYPES = ("annealed", "amplitude", "free", "normal", "negative")
# What the angular margins do where the target angle passes pi (`arcface_loss`).
THETA_OVERFLOW = ("plain", "insightface", "easy")


def _target_norm_product(features, weights, labels):
  """||W_y|| ||x|| per example, shape [B]."""
  return _common.safe_norm(features, axis=1) * _common.safe_norm(
    _common.target_columns(weights, labels), axis=1
  )


def _cosine(target_logit, norm_product):
  """cos(theta_y) = W_y^T x / (||W_y|| ||x||), clipped to [-1, 1] against rounding."""
  return jnp.clip(target_logit / norm_product, -1.0, 1.0)


def target_cosine(features: ArrayLike, weights: ArrayLike, labels: ArrayLike) -> jax.Array:
  r"""cos(theta_y) between each feature and its target classifier, shape ``[batch_size]``.

  A diagnostic: the mean target angle is ``arccos`` of it (never differentiate
  through ``arccos``).
  """
  features, weights, labels, _, out_dtype = _common.prepare_features(features, weights, labels)
  target_logit = jnp.sum(features * _common.target_columns(weights, labels), axis=1)
  norm_product = _target_norm_product(features, weights, labels)
  return _cosine(target_logit, norm_product).astype(out_dtype)


def _check_arc_margin(margin, name: str = "margin") -> None:
  hint = ""
  if isinstance(margin, (int, float)) and margin >= math.pi:
    hint = (
      f" The margin is in radians; {margin} looks like degrees:"
      f" math.radians({margin}) = {math.radians(margin):.4f}."
    )
  _common.check_static(name, margin, low=0.0, high=math.pi, hint=hint)


def _check_integer_margin(margin) -> int:
  if isinstance(margin, bool) or not isinstance(margin, int) or margin < 1:
    raise ValueError(
      f"margin must be a Python integer >= 1 (static), got {margin!r}; "
      "L-Softmax's psi(theta) is defined for integer m only."
    )
  return margin


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
  margin = _check_integer_margin(margin)
  sine_sq = 1.0 - cosine * cosine
  cos_m_theta = sum(
    (-1) ** n * math.comb(margin, 2 * n) * cosine ** (margin - 2 * n) * sine_sq**n
    for n in range(margin // 2 + 1)
  )
  k = sum((cosine <= math.cos(j * math.pi / margin)).astype(cosine.dtype) for j in range(1, margin))
  sign = 1.0 - 2.0 * jnp.mod(k, 2.0)  # (-1)^k
  return sign * cos_m_theta - 2.0 * k


def large_margin_softmax_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  margin: int,
  lam: ArrayLike,
  where: ArrayLike | None = None,
) -> jax.Array:
  r"""L-Softmax: an angular margin m on the target class.

  .. math::
    f_{y} = \frac{\lambda \|W_y\| \|x\| \cos\theta_y + \|W_y\| \|x\| \psi(\theta_y)}{1 + \lambda},
    \qquad f_j = W_j^\top x \ (j \ne y), \qquad \ell = -\log \frac{e^{f_y}}{\sum_j e^{f_j}}

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
  margin = _check_integer_margin(margin)
  _common.check_static("lam", lam, low=0.0)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where
  )
  return _common.apply_where(
    _large_margin(
      features @ weights,
      _target_norm_product(features, weights, labels),
      labels,
      margin=margin,
      lam=lam,
    ),
    where,
    out_dtype,
  )


def _large_margin(logits, norm_product, labels, *, margin, lam):
  """L-Softmax from the logits [B, C] and ||W_y|| ||x|| [B] (eqs. 4-8)."""
  if margin == 1:  # psi(theta) = cos(theta): the target logit is W_y^T x itself.
    return softmax_loss(logits, labels)
  target_logit = _common.take_target(logits, labels)
  margin_logit = norm_product * psi(_cosine(target_logit, norm_product), margin=margin)
  new_target = (lam * target_logit + margin_logit) / (1.0 + lam)
  return _common.cross_entropy_with_target(logits, labels, new_target)


def a_softmax_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  margin: int,
  lam: ArrayLike,
  where: ArrayLike | None = None,
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
  margin = _check_integer_margin(margin)
  _common.check_static("lam", lam, low=0.0)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where
  )
  # x @ normalize(W) computed as (x @ W) / ||W_j||: no normalised [d, C] copy of
  # W and no [d, C] passes for its gradient (the cost at many classes).
  logits = _common.matmul_unit_columns(features, weights)
  # ||W_y / ||W_y|| || is 1 (0 for a zero column): a constant, so no gradient
  # flows back through the gather (its scatter into a [d, C] zero array cost
  # ~7% of softmax at C = 10^3).
  unit_targets = _common.normalize(
    jax.lax.stop_gradient(_common.target_columns(weights, labels)), axis=1
  )
  norm_product = _common.safe_norm(features, axis=1) * _common.safe_norm(
    unit_targets, axis=1
  )  # ||x|| ||W_y / ||W_y|| ||
  return _common.apply_where(
    _large_margin(logits, norm_product, labels, margin=margin, lam=lam), where, out_dtype
  )


def noisy_softmax_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  key: jax.Array,
  *,
  alpha: ArrayLike,
  noise: str = "annealed",
  bias: ArrayLike | None = None,
  where: ArrayLike | None = None,
) -> jax.Array:
  r"""Noisy Softmax: subtract non-negative annealed noise from the target logit.

  .. math::
    f_y^{noise} = f_y - \alpha \|W_y\| \|x\| (1 - \cos\theta_y) |\xi|,
    \qquad \xi \sim \mathcal N(0, 1)

  one xi per example per call, drawn from ``key``. ``noise`` selects the
  ablations of Sec. 5.2-5.3, all subtracted from ``f_y``, with
  :math:`\sigma = \alpha \|W_y\| \|x\| (1 - \cos\theta_y)`:

  ============  =====================================
  ``annealed``  :math:`\sigma |\xi|` (eq. 5, the method)
  ``amplitude`` :math:`\alpha \|W_y\| \|x\| |\xi|`
  ``free``      :math:`\alpha |\xi|`
  ``normal``    :math:`\sigma \xi`
  ``negative``  :math:`-\sigma |\xi|`
  ============  =====================================

  The noise scales with :math:`W_y^\top x` and never with ``bias``. The paper's
  tables report alpha squared: pass ``alpha = sqrt(alpha_sq)``, e.g. the
  recommended alpha^2 = 0.1 is ``alpha = 0.3162``. The gradient is eqs. 7-8
  (for a fixed xi): the noise scale is differentiated, not stopped.

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    key: a PRNG key; the same key gives the same loss.
    alpha: noise scale alpha >= 0 (may be traced); 0 is softmax. The paper
      recommends alpha^2 = 0.1 (``alpha=0.316``).
    noise: one of ``annealed``, ``amplitude``, ``free``, ``normal``, ``negative`` (static).
    bias: optional class bias ``[num_classes]`` added to the logits.
    where: optional boolean mask ``[batch_size]``; examples where it is False
      get loss 0 and no gradient (optax's ``where``).

  Returns:
    Per-example loss, shape ``[batch_size]``.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1.0, 2.0], [2.0, -1.0]])  # features [B=2, d=2]
    >>> W = jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]])  # weights [d=2, C=3]
    >>> y = jnp.array([1, 0])
    >>> import jax
    >>> noisy_softmax_loss(x, W, y, jax.random.key(0), alpha=0.1 ** 0.5).round(4)
    Array([0.6046, 0.0637], dtype=float32)

  References:
    Chen, Deng & Du, Noisy Softmax: Improving the Generalization Ability of
    DCNN via Postponing the Early Softmax Saturation, CVPR 2017, eqs. 5-8,
    Sec. 5.2-5.3.
  """
  _common.check_choice("noise", noise, NOISE_TYPES)
  _common.check_static("alpha", alpha, low=0.0)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where
  )
  logits = features @ weights
  target_logit = _common.take_target(logits, labels)
  norm_product = _target_norm_product(features, weights, labels)
  xi = _common.example_normal(key, target_logit.shape, target_logit.dtype)
  sigma = alpha * (norm_product - target_logit)  # alpha ||W_y|| ||x|| (1 - cos theta_y)
  subtracted = {
    "annealed": lambda: sigma * jnp.abs(xi),
    "amplitude": lambda: alpha * norm_product * jnp.abs(xi),
    "free": lambda: alpha * jnp.abs(xi),
    "normal": lambda: sigma * xi,
    "negative": lambda: -sigma * jnp.abs(xi),
  }[noise]()
  if bias is not None:
    bias = jnp.asarray(bias, logits.dtype)
    if bias.shape != (logits.shape[1],):
      raise ValueError(f"bias must have shape [num_classes]={[logits.shape[1]]}, got {bias.shape}.")
    logits = logits + bias
    target_logit = target_logit + _common.take_classes(bias, labels, axis=0)
  return _common.apply_where(
    _common.cross_entropy_with_target(logits, labels, target_logit - subtracted), where, out_dtype
  )


def virtual_softmax_loss(
  features: ArrayLike, weights: ArrayLike, labels: ArrayLike, *, where: ArrayLike | None = None
) -> jax.Array:
  r"""Virtual Softmax: one extra negative class placed on the feature itself.

  .. math::
    \ell = -\log \frac{e^{W_y^\top x}}{\sum_{j=1}^C e^{W_j^\top x} + e^{W_{virt}^\top x}},
    \qquad W_{virt} = \|W_y\| \frac{x}{\|x\|}, \quad W_{virt}^\top x = \|W_y\| \|x\|

  The virtual logit is appended through ``logaddexp``, so no [B, C+1] array
  is built. Gradients: eqs. 4-5.

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    where: optional boolean mask ``[batch_size]``; examples where it is False
      get loss 0 and no gradient (optax's ``where``).

  Returns:
    Per-example loss, shape ``[batch_size]``.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1.0, 2.0], [2.0, -1.0]])  # features [B=2, d=2]
    >>> W = jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]])  # weights [d=2, C=3]
    >>> y = jnp.array([1, 0])
    >>> virtual_softmax_loss(x, W, y).round(4)
    Array([1.0993    , 0.84279996], dtype=float32)

  References:
    Chen, Deng & Shen, Virtual Class Enhanced Discriminative Embedding
    Learning, NeurIPS 2018, eqs. 3-5.
  """
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where
  )
  logits = features @ weights
  target_logit = _common.take_target(logits, labels)
  virtual_logit = _target_norm_product(features, weights, labels)
  lse = jnp.logaddexp(_common.logsumexp_classes(logits), virtual_logit)
  return _common.apply_where(lse - target_logit, where, out_dtype)


def _cosine_logits(features, weights):
  """cos(theta_j) for every class, [B, C]: unit features times unit class columns.

  Computed as (x/||x|| @ W) / ||W_j|| (`_common.matmul_unit_columns`), which
  equals x/||x|| @ W/||W_j|| but never builds the normalised [d, C] copy of
  W: its forward and backward passes over [d, C] cost more than the matmul's
  own memory traffic at many classes.
  """
  return _common.matmul_unit_columns(_common.normalize(features, axis=1), weights)


def normface_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  where: ArrayLike | None = None,
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
  _common.check_static("scale", scale, low=0.0, low_open=True)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where
  )
  return _common.apply_where(
    softmax_loss(scale * _cosine_logits(features, weights), labels), where, out_dtype
  )


def cosface_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  margin: ArrayLike,
  where: ArrayLike | None = None,
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
    margin: m >= 0 (may be traced); the paper uses 0.35 (0.25-0.45).
    where: optional boolean mask ``[batch_size]``; examples where it is False
      get loss 0 and no gradient (optax's ``where``).

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
  _common.check_static("scale", scale, low=0.0, low_open=True)
  _common.check_static("margin", margin, low=0.0)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where
  )
  logits = scale * _cosine_logits(features, weights)
  target = _common.take_target(logits, labels) - scale * margin
  return _common.apply_where(
    _common.cross_entropy_with_target(logits, labels, target), where, out_dtype
  )


def _static_number(value) -> bool:
  """A Python number (not bool): its value is known at trace time."""
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer_multiplier(m1) -> int | None:
  """m1 as an int when it is a static whole number >= 1 (the polynomial path), else None."""
  if _static_number(m1) and m1 >= 1 and float(m1).is_integer():
    return int(m1)
  return None


def _cos_sin_multiple(cosine: jax.Array, m: int) -> tuple[jax.Array, jax.Array]:
  r"""cos(m theta) and sin(m theta) as polynomials of c = cos(theta), theta in [0, pi].

  .. math::
    \cos m\theta = \sum_{n} (-1)^n \binom{m}{2n} c^{m-2n} (1 - c^2)^n, \qquad
    \sin m\theta = \sin\theta \sum_{n} (-1)^n \binom{m}{2n+1} c^{m-2n-1} (1 - c^2)^n

  with sin(theta) = sqrt(max(1 - c^2, eps)) >= 0: the floor keeps the sqrt's
  gradient finite at c = +-1, and no arccos is differentiated.
  """
  sine = jnp.sqrt(jnp.maximum(1.0 - cosine * cosine, jnp.finfo(cosine.dtype).eps))
  if m == 1:
    return cosine, sine
  sine_sq = 1.0 - cosine * cosine
  cos_m = sum(
    (-1) ** n * math.comb(m, 2 * n) * cosine ** (m - 2 * n) * sine_sq**n for n in range(m // 2 + 1)
  )
  sin_m = sine * sum(
    (-1) ** n * math.comb(m, 2 * n + 1) * cosine ** (m - 2 * n - 1) * sine_sq**n
    for n in range((m - 1) // 2 + 1)
  )
  return cos_m, sin_m


def _margin_target(cos_y: jax.Array, *, m1, m2, m3, theta_overflow: str) -> jax.Array:
  """The target cosine cos(m1 theta + m2) - m3 of the combined margin, shape [B],
  from cos(theta) clipped to [-1, 1], with the ``theta_overflow`` rule
  (see `combined_margin_loss`)."""
  k = _integer_multiplier(m1)
  if k is not None:  # cos(k theta + m2) = cos(k theta) cos m2 - sin(k theta) sin m2
    cos_k, sin_k = _cos_sin_multiple(cos_y, k)
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
  if k == 1:  # insightface's own rule, cos(theta) <= cos(pi - m2) -> cos(theta) - m2 sin(m2)
    threshold, shift, reached = cos(math.pi - m2), m2 * sin(m2), True
  else:
    theta_0 = (math.pi - m2) / m1
    threshold = cos(theta_0)
    # Shifted so that the target falls at theta_0 from -1 - m3 to -cos m2 - m2 sin m2 - m3,
    # as insightface's does at m1 = 1 (the two shifts agree there).
    shift = threshold + cos(m2) + m2 * sin(m2)
    reached = theta_0 <= math.pi  # m1 pi + m2 >= pi: the angle reaches pi at all
  return jnp.where((cos_y <= threshold) & reached, cos_y - shift - m3, target)


def _angular_margin_loss(cosine, labels, *, scale, m1, m2, m3, theta_overflow):
  """Cross-entropy of s cos(theta_j) with the target s (cos(m1 theta_y + m2) - m3)."""
  cos_y = jnp.clip(_common.take_target(cosine, labels), -1.0, 1.0)
  target = scale * _margin_target(cos_y, m1=m1, m2=m2, m3=m3, theta_overflow=theta_overflow)
  return _common.cross_entropy_with_target(scale * cosine, labels, target)


def arcface_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  margin: ArrayLike,
  theta_overflow: str = "plain",
  where: ArrayLike | None = None,
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
  _common.check_static("scale", scale, low=0.0, low_open=True)
  _check_arc_margin(margin)
  _common.check_choice("theta_overflow", theta_overflow, THETA_OVERFLOW)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where
  )
  loss = _angular_margin_loss(
    _cosine_logits(features, weights),
    labels,
    scale=scale,
    m1=1,
    m2=margin,
    m3=0.0,
    theta_overflow=theta_overflow,
  )
  return _common.apply_where(loss, where, out_dtype)


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
    m3: additive cosine margin >= 0 (may be traced); commonly 0.2.
    theta_overflow: ``"plain"`` (default), ``"insightface"`` or ``"easy"`` (static).
    where: optional boolean mask ``[batch_size]``; examples where it is False
      get loss 0 and no gradient (optax's ``where``).

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
  _common.check_static("scale", scale, low=0.0, low_open=True)
  _common.check_static("m1", m1, low=0.0, low_open=True)
  _check_arc_margin(m2, "m2")
  _common.check_static("m3", m3, low=0.0)
  _common.check_choice("theta_overflow", theta_overflow, THETA_OVERFLOW)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where
  )
  loss = _angular_margin_loss(
    _cosine_logits(features, weights),
    labels,
    scale=scale,
    m1=m1,
    m2=m2,
    m3=m3,
    theta_overflow=theta_overflow,
  )
  return _common.apply_where(loss, where, out_dtype)


def _check_stacked(features, weights) -> tuple[jax.Array, jax.Array, jnp.dtype]:
  """Checks ``features`` [B, d] and sub-centre weights [K, d, C]; returns them in
  the compute dtype and the result dtype."""
  features, weights = jnp.asarray(features), _common.check_weights(weights, "stacked")
  if features.ndim != 2:
    raise ValueError(f"features must have shape [batch_size, dim], got {features.shape}.")
  if weights.shape[1] != features.shape[1]:
    raise ValueError(
      f"weights {weights.shape} (layout [num_subcenters, dim, num_classes]) do not match "
      f"features {features.shape}: expected dim {features.shape[1]} on axis 1."
    )
  out_dtype = _common.result_dtype(features, weights)
  dtype = _common.compute_dtype(out_dtype)
  return features.astype(dtype), weights.astype(dtype), out_dtype


def _subcenter_cosines(features, weights):
  """max_k cos(theta_{j,k}) over the K sub-centres, [B, C], from weights [K, d, C]."""
  return jnp.max(jax.vmap(_cosine_logits, in_axes=(None, 0))(features, weights), axis=0)


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
  features, weights, out_dtype = _check_stacked(features, weights)
  return _subcenter_cosines(features, weights).astype(out_dtype)


def subcenter_arcface_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  margin: ArrayLike,
  theta_overflow: str = "plain",
  where: ArrayLike | None = None,
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
  _common.check_static("scale", scale, low=0.0, low_open=True)
  _check_arc_margin(margin)
  _common.check_choice("theta_overflow", theta_overflow, THETA_OVERFLOW)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, kind="stacked", where=where
  )
  loss = _angular_margin_loss(
    _subcenter_cosines(features, weights),
    labels,
    scale=scale,
    m1=1,
    m2=margin,
    m3=0.0,
    theta_overflow=theta_overflow,
  )
  return _common.apply_where(loss, where, out_dtype)


def _target_subcenter_cosines(features, weights, labels):
  """cos(x_i, W_{k, y_i}) for each sub-centre of each example's class, [B, K]
  (NaN for a label outside the classes)."""
  targets = _common.normalize(jnp.take(weights, labels, axis=2, mode="fill"), axis=1)  # [K, d, B]
  cosine = jnp.einsum("bd,kdb->bk", _common.normalize(features, axis=1), targets)
  return jnp.clip(cosine, -1.0, 1.0)


def dominant_subcenters(
  features: ArrayLike, weights: ArrayLike, labels: ArrayLike, *, where: ArrayLike | None = None
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
    features, weights, labels, kind="stacked", where=where
  )
  num_subcenters, num_classes = weights.shape[0], weights.shape[2]
  nearest = jnp.argmax(_target_subcenter_cosines(features, weights, labels), axis=1)
  votes = labels < num_classes  # safe_labels sent an out-of-range label to num_classes
  if where is not None:
    votes = votes & where
  counts = jnp.zeros((num_classes, num_subcenters), jnp.int32)
  counts = counts.at[labels, nearest].add(votes.astype(jnp.int32), mode="drop")
  return jnp.argmax(counts, axis=1).astype(jnp.int32), counts


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
  _common.check_static("threshold_degrees", threshold_degrees, low=0.0, high=180.0)
  features, weights, labels, _, out_dtype = _common.prepare_features(
    features, weights, labels, kind="stacked"
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


def center_loss(
  features: ArrayLike, centers: ArrayLike, labels: ArrayLike, *, where: ArrayLike | None = None
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
    features, centers, labels, kind="centers", where=where
  )
  diff = features - _common.take_classes(centers, labels, axis=0)
  return _common.apply_where(0.5 * jnp.sum(diff * diff, axis=1), where, out_dtype)
