"""Losses of features and class weights: the angular and norm-based margins.

Conventions: ``features`` x has shape ``[batch_size, dim]``, ``weights`` W has
shape ``[dim, num_classes]`` (column j is class j's classifier, the Flax Dense
kernel layout) and the logits are ``f = x @ W``. Each loss changes the target
logit ``f_y = ||W_y|| ||x|| cos(theta_y)`` only, so it costs the classifier
matmul plus O(B*d + B*C) elementwise work.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from margin_jax.losses import _common
from margin_jax.losses._logit_losses import softmax_loss

NOISE_TYPES = ("annealed", "amplitude", "free", "normal", "negative")


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


def _check_arc_margin(margin) -> None:
  hint = ""
  if isinstance(margin, (int, float)) and margin >= math.pi:
    hint = (
      f" The margin is in radians; {margin} looks like degrees:"
      f" math.radians({margin}) = {math.radians(margin):.4f}."
    )
  _common.check_static("margin", margin, low=0.0, high=math.pi, hint=hint)


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
  logits = _common.divide_columns(features @ weights, _common.safe_norm(weights, axis=0))
  unit_targets = _common.normalize(_common.target_columns(weights, labels), axis=1)
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
  xi = jax.random.normal(key, target_logit.shape, dtype=target_logit.dtype)
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
    target_logit = target_logit + jnp.take(bias, labels, mode="fill")
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
  lse = jnp.logaddexp(jax.nn.logsumexp(logits, axis=-1), virtual_logit)
  return _common.apply_where(lse - target_logit, where, out_dtype)


def _cosine_logits(features, weights):
  """cos(theta_j) for every class, [B, C]: unit features times unit class columns.

  Computed as (x/||x|| @ W) / ||W_j||, which equals x/||x|| @ W/||W_j|| but
  never builds the normalised [d, C] copy of W: its forward and backward
  passes over [d, C] cost more than the matmul's own memory traffic at many
  classes.
  """
  return _common.divide_columns(
    _common.normalize(features, axis=1) @ weights, _common.safe_norm(weights, axis=0)
  )


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


def arcface_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  scale: ArrayLike,
  margin: ArrayLike,
  where: ArrayLike | None = None,
) -> jax.Array:
  r"""ArcFace: an additive angular margin, in radians.

  .. math::
    \ell = -\log \frac{e^{s \cos(\theta_y + m)}}
      {e^{s \cos(\theta_y + m)} + \sum_{j \ne y} e^{s \cos\theta_j}},
    \quad \cos(\theta + m) = \cos\theta \cos m - \sin\theta \sin m

  computed from cos(theta) without arccos. As in the paper's eq. 3, no
  correction is applied when theta + m > pi (there cos(theta + m) rises again).

  Args:
    features: ``[batch_size, dim]``.
    weights: ``[dim, num_classes]``.
    labels: ``[batch_size]`` integers.
    scale: s > 0 (may be traced); the paper uses 64.
    margin: m in radians, in ``[0, pi)`` (may be traced); the paper uses 0.5
      (28.6 degrees). pytorch-metric-learning takes degrees: a Python number
      of pi or more is refused with a hint.
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
    Recognition, CVPR 2019, eq. 3.
  """
  _common.check_static("scale", scale, low=0.0, low_open=True)
  _check_arc_margin(margin)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where
  )
  cosine = _cosine_logits(features, weights)
  cos_y = jnp.clip(_common.take_target(cosine, labels), -1.0, 1.0)
  # sin(theta) >= 0 on [0, pi]; the floor keeps the sqrt's gradient finite at cos = +-1.
  sin_y = jnp.sqrt(jnp.maximum(1.0 - cos_y * cos_y, jnp.finfo(cos_y.dtype).eps))
  target = scale * (cos_y * jnp.cos(margin) - sin_y * jnp.sin(margin))
  return _common.apply_where(
    _common.cross_entropy_with_target(scale * cosine, labels, target), where, out_dtype
  )


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
  diff = features - jnp.take(centers, labels, axis=0, mode="fill")
  return _common.apply_where(0.5 * jnp.sum(diff * diff, axis=1), where, out_dtype)
