"""Losses that are functions of the logits alone.

Softmax cross-entropy, the soft-margin softmax of EM-Softmax (M-Softmax), and
the losses of Kobayashi (BMVC 2019): the uniformity regulariser, the
multiclass hinge loss, label smoothing and the bias rho-hat.

``where`` masks whole rows of the logits: a masked row gets loss 0 and a zero
gradient, whatever it holds (NaN, Inf). A caller who forms ``x @ W`` outside
the loss owns that matmul: a NaN feature row still reaches W's gradient
through it; `margin_jax.losses.by_name` masks the features before they form
the logits.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from margin_jax import sharding
from margin_jax.losses import _common
from margin_jax.losses import _streamed
from margin_jax.losses._spec import LossSpec

DIVERGENCES = ("symmetric", "q_u", "u_q")


@sharding.accepts_explicit_axes
def softmax_loss(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""Softmax cross-entropy with integer labels.

  .. math::
    \ell_i = -\log \frac{e^{f_{y_i}}}{\sum_j e^{f_j}}
           = \operatorname{LSE}(f) - f_{y_i}

  Args:
    logits: class scores ``f``, shape ``[batch_size, num_classes]``.
    labels: integer targets, shape ``[batch_size]``.
    where: optional boolean mask ``[batch_size]``; examples where it is False
      get loss 0 and no gradient (optax's ``where``).
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

  Returns:
    Per-example loss, shape ``[batch_size]``.

  Example:
    >>> import jax.numpy as jnp
    >>> softmax_loss(jnp.array([[2.0, 0.0]]), jnp.array([0])).round(4)
    Array([0.1269], dtype=float32)

  References:
    Liu et al., Large-Margin Softmax Loss for CNNs, ICML 2016, eq. 1-2.
  """
  logits, labels, where, out_dtype = _common.prepare_logits(
    logits, labels, where=where, shard=shard
  )
  return _common.apply_where(_common.cross_entropy(logits, labels, shard=shard), where, out_dtype)


@sharding.accepts_explicit_axes
def soft_margin_softmax_loss(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  margin: ArrayLike,
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""Soft-margin softmax (M-Softmax): an additive margin on the target logit.

  .. math::
    \ell_i = -\log \frac{e^{f_{y_i} - m}}{e^{f_{y_i} - m} + \sum_{k \ne y_i} e^{f_k}}

  ``margin=0`` is the softmax loss; ``margin=1`` is Kobayashi's modified loss
  (eq. 15).

  Args:
    logits: ``[batch_size, num_classes]``.
    labels: ``[batch_size]`` integers.
    margin: the non-negative distance margin m (may be a traced scalar); the
      EM paper picks it from {0.1, 0.5, 1, 5, 10} per dataset.
    where: optional boolean mask ``[batch_size]``; examples where it is False
      get loss 0 and no gradient (optax's ``where``).
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

  Returns:
    Per-example loss, shape ``[batch_size]``.

  Example:
    >>> import jax.numpy as jnp
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]])
    >>> labels = jnp.array([0, 2])
    >>> soft_margin_softmax_loss(logits, labels, margin=0.5).round(4)
    Array([0.3715, 1.7123], dtype=float32)

  References:
    Wang et al., Ensemble Soft-Margin Softmax Loss for Image Classification,
    IJCAI 2018, eq. 4; Kobayashi, Large Margin In Softmax Cross-Entropy Loss,
    BMVC 2019, eq. 15.
  """
  valid = _margin_checks(margin=margin)
  logits, labels, where, out_dtype = _common.prepare_logits(
    logits, labels, where=where, shard=shard
  )
  target = _common.take_target(logits, labels, shard=shard) - margin
  return _common.apply_where(
    _common.cross_entropy_with_target(logits, labels, target, shard=shard), where, out_dtype, valid
  )


def _margin_checks(*, margin, **_):
  return _common.check_range("margin", margin, low=0.0)


def _uniformity_forward(divergence, shard, logits, labels):
  # Per example, from one max and three sums over the classes (softmax
  # needs a max and a sum). With s_c = f_c - max_{d != y} f_d and
  # S = sum_{c != y} e^{s_c}: log q_c = s_c - log S, so
  # sum q log q = sum e^s s / S - log S and sum log q = sum s - (C-1) log S,
  # and -log p_y = log(1 + sum_{c != y} e^{f_c - f_y}) = softplus(LSE_{c != y} f - f_y).
  # The terms do not depend on the shift, so it carries no derivative.
  is_target = _common.target_mask(labels, logits.shape[1], shard=shard)
  target = _common.take_target(logits, labels, shard=shard)
  peak = _common.max_classes(
    jnp.where(is_target, -jnp.inf, jax.lax.stop_gradient(logits)), shard=shard
  )
  peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
  shifted = jnp.where(is_target, 0.0, logits - peak[:, None])
  exp_shifted = jnp.where(is_target, 0.0, jnp.exp(shifted))
  # Three separate sums: XLA:CPU runs each as its vectorised reduction. One
  # variadic reduce would keep one [B, C] buffer fewer but is not vectorised
  # (1.23x softmax against 1.08x, C = 10^4).
  total, moment, shifted_sum = (
    _common.sum_classes(v, shard=shard) for v in (exp_shifted, exp_shifted * shifted, shifted)
  )
  log_total = jnp.log(total)
  lse = peak + log_total  # LSE_{c != y} f
  q_log_q = moment / total - log_total
  num_others = sharding.class_count(logits.shape[1], shard) - 1
  u_log_q = shifted_sum / num_others - log_total
  penalty = uniformity_penalty(divergence, q_log_q, u_log_q, num_others)
  cross_entropy = jax.nn.softplus(lse - target)
  return (cross_entropy, penalty), (is_target, lse, q_log_q, num_others)


def uniformity_penalty(divergence, q_log_q, u_log_q, num_others):
  """Kobayashi's D(q) [B] (eqs. 8, 10) from sum_c q_c log q_c and
  sum_c u_c log q_c over the C-1 = ``num_others`` non-target classes."""
  log_others = jnp.log(num_others)
  if divergence == "q_u":
    return q_log_q + log_others
  if divergence == "symmetric":
    return 0.5 * (q_log_q - u_log_q)
  return -u_log_q - log_others


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _uniformity_terms(divergence, shard, logits, labels):
  """Per-example softmax cross-entropy and Kobayashi's D(q), one custom JVP."""
  return _uniformity_forward(divergence, shard, logits, labels)[0]


@_uniformity_terms.defjvp
def _uniformity_jvp(divergence, primals, tangents):
  # For c != y, with p_c = q_c (1 - p_y) and m = sum_{d != y} q_d f_d (eq. 12
  # for the symmetric case): dCE/df_c = p_c, dCE/df_y = p_y - 1;
  # dD(q||u)/df_c = q_c (f_c - m), dD(u||q)/df_c = q_c - u_c, symmetric = their
  # mean, 0 for the target. The tangents are class sums of these times df,
  # with q recomputed from the logits: their transpose is one elementwise pass
  # over the logits, and no [B, C] array of the forward pass is kept for it.
  (shard, logits, labels), (_, d_logits, _) = primals, tangents
  terms, (is_target, lse, q_log_q, num_others) = _uniformity_forward(
    divergence, shard, logits, labels
  )
  # q and the coefficients are 0 for the target (where e^{f_y - LSE} may overflow).
  log_q = jnp.where(is_target, 0.0, logits - lse[:, None])
  q = jnp.where(is_target, 0.0, jnp.exp(log_q))
  q_u = q * (log_q - q_log_q[:, None])  # f_c - m = log q_c - sum_d q_d log q_d
  u_q = jnp.where(is_target, 0.0, q - 1.0 / num_others)
  d_penalty = {"symmetric": 0.5 * (q_u + u_q), "q_u": q_u, "u_q": u_q}[divergence]
  not_target_mass = -jnp.expm1(-terms[0])  # 1 - p_y
  d_target = jnp.where(is_target, d_logits, 0.0)
  d_cross_entropy = not_target_mass * _common.sum_classes(q * d_logits - d_target, shard=shard)
  return terms, (d_cross_entropy, _common.sum_classes(d_penalty * d_logits, shard=shard))


@sharding.accepts_explicit_axes
def rho_hat(
  logits: ArrayLike, labels: ArrayLike, *, shard: sharding.ClassShard | None = None
) -> jax.Array:
  r"""Kobayashi's bias rho-hat, the margin softmax implicitly adds.

  .. math::
    \hat\rho = \log \sum_{c \ne y} e^{f_c - f_{c^*}}, \qquad
    f_{c^*} = \max_{c \ne y} f_c

  It lies in ``[0, log(C-1)]``: 0 when one non-target logit dominates,
  ``log(C-1)`` when the non-target logits are uniform.

  Args:
    logits: ``[batch_size, num_classes]`` with ``num_classes >= 2``.
    labels: ``[batch_size]`` integers.
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

  Returns:
    Per-example bias, shape ``[batch_size]``.

  References:
    Kobayashi, Large Margin In Softmax Cross-Entropy Loss, BMVC 2019, eq. 7.
  """
  logits, labels, _, out_dtype = _common.prepare_logits(logits, labels, min_classes=2, shard=shard)
  masked = jnp.where(_common.target_mask(labels, logits.shape[1], shard=shard), -jnp.inf, logits)
  lse = _common.logsumexp_classes(masked, shard=shard)
  return (lse - _common.max_classes(masked, shard=shard)).astype(out_dtype)


@sharding.accepts_explicit_axes
def uniformity_regularized_softmax_loss(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  lam: ArrayLike = 0.3,
  divergence: str = "symmetric",
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""Softmax loss plus Kobayashi's uniformity regulariser on non-target logits.

  With the non-target posterior :math:`q_c = e^{f_c} / \sum_{c' \ne y} e^{f_{c'}}`
  and the uniform :math:`u_c = 1/(C-1)` over the ``C-1`` non-target classes:

  .. math::
    \ell = -\log p_y + \lambda\, D(q), \quad
    D(q) = \begin{cases}
      \tfrac12 \sum_{c \ne y} (q_c - u_c) \log q_c & \text{symmetric (eq. 8)} \\
      \sum_{c \ne y} q_c \log[(C-1) q_c] & \texttt{q\_u}: D(q\|u) \text{ (eq. 10)} \\
      \sum_{c \ne y} u_c \log[1 / ((C-1) q_c)] & \texttt{u\_q}: D(u\|q) \text{ (eq. 10)}
    \end{cases}

  The symmetric case is eq. 11 of the paper. Its gradient (eq. 12) is
  :math:`p_c + \tfrac{\lambda}{2}[q_c(f_c - \sum_{d \ne y} f_d q_d) + q_c - u_c]`
  for ``c != y`` and ``p_y - 1`` for the target; the paper prints ``x_c`` where
  the logit ``f_c`` is meant (a notation slip: ``x`` is the feature elsewhere).

  Args:
    logits: ``[batch_size, num_classes]`` with ``num_classes >= 3``.
    labels: ``[batch_size]`` integers.
    lam: regularisation weight lambda (paper: 0.3); may be traced.
    divergence: ``"symmetric"``, ``"q_u"`` or ``"u_q"`` (Table 1), static.
    where: optional boolean mask ``[batch_size]``; examples where it is False
      get loss 0 and no gradient (optax's ``where``).
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

  Returns:
    Per-example loss, shape ``[batch_size]``.

  Example:
    >>> import jax.numpy as jnp
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]])
    >>> labels = jnp.array([0, 2])
    >>> uniformity_regularized_softmax_loss(logits, labels, lam=0.3).round(4)
    Array([0.3128, 1.3576], dtype=float32)

  References:
    Kobayashi, Large Margin In Softmax Cross-Entropy Loss, BMVC 2019,
    eqs. 8, 10, 11, 12 and Table 1.
  """
  valid = _uniformity_checks(lam=lam)
  _common.check_choice("divergence", divergence, DIVERGENCES)
  logits, labels, where, out_dtype = _common.prepare_logits(
    logits, labels, min_classes=3, where=where, shard=shard
  )
  cross_entropy, penalty = _uniformity_terms(divergence, shard, logits, labels)
  return _common.apply_where(cross_entropy + lam * penalty, where, out_dtype, valid)


def _uniformity_checks(*, lam=0.3, **_):
  return _common.check_range("lam", lam, low=0.0)


@sharding.accepts_explicit_axes
def multiclass_hinge_loss(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  margin: ArrayLike = 1.0,
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""Multiclass hinge loss averaged over the non-target classes.

  .. math::
    \ell = \frac{1}{C-1} \sum_{c \ne y} \max(0, f_c - f_y + \rho)

  Args:
    logits: ``[batch_size, num_classes]`` with ``num_classes >= 2``.
    labels: ``[batch_size]`` integers.
    margin: the constant bias rho (paper: 1); may be traced.
    where: optional boolean mask ``[batch_size]``; examples where it is False
      get loss 0 and no gradient (optax's ``where``).
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

  Returns:
    Per-example loss, shape ``[batch_size]``.

  Example:
    >>> import jax.numpy as jnp
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]])
    >>> labels = jnp.array([0, 2])
    >>> multiclass_hinge_loss(logits, labels).round(4)
    Array([0.       , 1.1999999], dtype=float32)

  References:
    Kobayashi, Large Margin In Softmax Cross-Entropy Loss, BMVC 2019, eq. 14.
  """
  valid = _margin_checks(margin=margin)
  logits, labels, where, out_dtype = _common.prepare_logits(
    logits, labels, min_classes=2, where=where, shard=shard
  )
  target = _common.take_target(logits, labels, shard=shard)
  hinge = jnp.maximum(0.0, logits - target[:, None] + margin)
  hinge = jnp.where(_common.target_mask(labels, logits.shape[1], shard=shard), 0.0, hinge)
  num_others = sharding.class_count(logits.shape[1], shard) - 1
  return _common.apply_where(
    _common.sum_classes(hinge, shard=shard) / num_others, where, out_dtype, valid
  )


@sharding.accepts_explicit_axes
def label_smoothing_loss(
  logits: ArrayLike,
  labels: ArrayLike,
  *,
  smoothing: ArrayLike,
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""Cross-entropy against labels smoothed toward the uniform distribution (LSR).

  .. math::
    \ell = -(1 - \lambda) \log p_y - \frac{\lambda}{C} \sum_{c=1}^C \log p_c

  Args:
    logits: ``[batch_size, num_classes]``.
    labels: ``[batch_size]`` integers.
    smoothing: lambda in ``[0, 1)`` (usually 0.1); may be traced.
    where: optional boolean mask ``[batch_size]``; examples where it is False
      get loss 0 and no gradient (optax's ``where``).
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

  Returns:
    Per-example loss, shape ``[batch_size]``.

  Example:
    >>> import jax.numpy as jnp
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]])
    >>> labels = jnp.array([0, 2])
    >>> label_smoothing_loss(logits, labels, smoothing=0.1).round(4)
    Array([0.3913, 1.3096], dtype=float32)

  References:
    Kobayashi, Large Margin In Softmax Cross-Entropy Loss, BMVC 2019, eq. 13;
    Szegedy et al., Rethinking the Inception Architecture, CVPR 2016.
  """
  valid = _smoothing_checks(smoothing=smoothing)
  logits, labels, where, out_dtype = _common.prepare_logits(
    logits, labels, where=where, shard=shard
  )
  lse = _common.logsumexp_classes(logits, shard=shard)
  mean_logit = _common.sum_classes(logits, shard=shard) / sharding.class_count(
    logits.shape[1], shard
  )
  loss = smoothed_cross_entropy(
    lse, _common.take_target(logits, labels, shard=shard), mean_logit, smoothing
  )
  return _common.apply_where(loss, where, out_dtype, valid)


def _smoothing_checks(*, smoothing, **_):
  return _common.check_range("smoothing", smoothing, low=0.0, high=1.0)


def smoothed_cross_entropy(lse, target_logit, mean_logit, smoothing):
  """LSR's (1 - lambda)(-log p_y) + lambda mean_c(-log p_c) [B] (eq. 13) from
  LSE_c f_c, f_y and mean_c f_c."""
  return (1.0 - smoothing) * (lse - target_logit) + smoothing * (lse - mean_logit)


# Their streamed forms (fused linear + loss, x @ W + b never formed; see
# margin_jax.losses._streamed) and their declarations.
def _softmax_streamed(head):
  stats = head.stats()
  return _streamed.cross_entropy(stats.lse, stats.dot_y[:, 0] + head.target_bias())


def _soft_margin_streamed(head, *, margin):
  stats = head.stats()
  return _streamed.cross_entropy(stats.lse, stats.dot_y[:, 0] + head.target_bias() - margin)


def _hinge_streamed(head, *, margin=1.0):
  # The hinge's pivot f_y - rho enters as a constant; its derivative
  # (-count, through f_y and rho) is added by a term of value 0.
  pivot = head.target_logit() - margin
  stats = head.stats(moments=("excess",), pivot=pivot)
  live_pivot = stats.dot_y[:, 0] + head.target_bias() - margin
  hinge = stats.excess - jax.lax.stop_gradient(stats.count) * (
    live_pivot - jax.lax.stop_gradient(live_pivot)
  )
  return hinge / (head.num_classes - 1)


def _label_smoothing_streamed(head, *, smoothing):
  stats = head.stats(moments=("total",))
  target = stats.dot_y[:, 0] + head.target_bias()
  lse = jnp.logaddexp(stats.lse, target)
  return smoothed_cross_entropy(lse, target, (stats.total + target) / head.num_classes, smoothing)


def _uniformity_streamed(head, *, lam=0.3, divergence="symmetric"):
  stats = head.stats(moments=("mean", "total"))
  target = stats.dot_y[:, 0] + head.target_bias()
  num_others = head.num_classes - 1
  q_log_q = stats.mean - stats.lse
  u_log_q = stats.total / num_others - stats.lse
  penalty = uniformity_penalty(divergence, q_log_q, u_log_q, num_others)
  return jax.nn.softplus(stats.lse - target) + lam * penalty


SPECS = (
  LossSpec(
    "softmax",
    softmax_loss,
    "logits",
    paper="L-Softmax (Liu et al., ICML 2016) eqs 1-2",
    streamed=_softmax_streamed,
  ),
  LossSpec(
    "m_softmax",
    soft_margin_softmax_loss,
    "logits",
    typical={"margin": 0.5},
    paper="EM-Softmax (Wang et al., IJCAI 2018) eq 4",
    streamed=_soft_margin_streamed,
    checks=_margin_checks,
  ),
  LossSpec(
    "uniformity",
    uniformity_regularized_softmax_loss,
    "logits",
    typical={"lam": 0.3},
    paper="Kobayashi, BMVC 2019, eqs 8-12",
    streamed=_uniformity_streamed,
    checks=_uniformity_checks,
  ),
  LossSpec(
    "hinge",
    multiclass_hinge_loss,
    "logits",
    typical={"margin": 1.0},
    paper="Kobayashi, BMVC 2019, eq 14",
    streamed=_hinge_streamed,
    checks=_margin_checks,
  ),
  LossSpec(
    "lsr",
    label_smoothing_loss,
    "logits",
    typical={"smoothing": 0.1},
    paper="Kobayashi, BMVC 2019, eq 13",
    streamed=_label_smoothing_streamed,
    checks=_smoothing_checks,
  ),
)
