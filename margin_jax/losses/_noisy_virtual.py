"""Noise and a virtual class on the target logit: Noisy Softmax and Virtual Softmax.

Conventions as in `margin_jax.losses._angular`: x ``[batch_size, dim]``, W
``[dim, num_classes]``, logits ``x @ W``.
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

NOISE_TYPES = ("annealed", "amplitude", "free", "normal", "negative")


@sharding.accepts_explicit_axes
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
  shard: sharding.ClassShard | None = None,
) -> jax.Array:
  r"""Noisy Softmax: subtract non-negative annealed noise from the target logit.

  .. math::
    f_y^{noise} = f_y - \alpha \|W_y\| \|x\| (1 - \cos\theta_y) |\xi|,
    \qquad \xi \sim \mathcal N(0, 1)

  one xi per example per call, drawn from ``key``. ``noise`` selects the
  ablations of Sec. 5.2-5.3, all subtracted from ``f_y``, with
  :math:`\sigma = \alpha \|W_y\| \|x\| (1 - \cos\theta_y)`:

  =============  ==========================================
  ``annealed``   :math:`\sigma |\xi|` (eq. 5, the method)
  ``amplitude``  :math:`\alpha \|W_y\| \|x\| |\xi|`
  ``free``       :math:`\alpha |\xi|`
  ``normal``     :math:`\sigma \xi`
  ``negative``   :math:`-\sigma |\xi|`
  =============  ==========================================

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
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

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
  valid = _noisy_checks(alpha=alpha)
  features, weights, labels, where, out_dtype = _common.prepare_features(
    features, weights, labels, where=where, shard=shard
  )
  logits = features @ weights
  target_logit = _common.take_target(logits, labels, shard=shard)
  norm_product = _common.target_norm_product(features, weights, labels, shard=shard)
  subtracted = noise_subtracted(
    target_logit, norm_product, key, alpha=alpha, noise=noise, shard=shard
  )
  if bias is not None:
    bias = _common.check_bias(bias, logits.shape[1], logits.dtype)
    logits = logits + bias
    target_logit = target_logit + _common.take_classes(bias, labels, axis=0, shard=shard)
  return _common.apply_where(
    _common.cross_entropy_with_target(logits, labels, target_logit - subtracted, shard=shard),
    where,
    out_dtype,
    valid,
  )


def _noisy_checks(*, alpha, **_):
  return _common.check_range("alpha", alpha, low=0.0)


def noise_subtracted(target_logit, norm_product, key, *, alpha, noise: str, shard):
  """What Noisy Softmax subtracts from the target logit [B] (eq. 5 and the
  ablations of `noisy_softmax_loss`), from W_y^T x and ||W_y|| ||x|| [B]."""
  xi = _common.example_normal(key, target_logit.shape, target_logit.dtype, shard=shard)
  sigma = alpha * (norm_product - target_logit)  # alpha ||W_y|| ||x|| (1 - cos theta_y)
  return {
    "annealed": lambda: sigma * jnp.abs(xi),
    "amplitude": lambda: alpha * norm_product * jnp.abs(xi),
    "free": lambda: alpha * jnp.abs(xi),
    "normal": lambda: sigma * xi,
    "negative": lambda: -sigma * jnp.abs(xi),
  }[noise]()


@sharding.accepts_explicit_axes
def virtual_softmax_loss(
  features: ArrayLike,
  weights: ArrayLike,
  labels: ArrayLike,
  *,
  where: ArrayLike | None = None,
  shard: sharding.ClassShard | None = None,
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
    shard: the class shard the call runs on (`margin_jax.sharding.ClassShard`),
      passed by `margin_jax.parallel.shard_classes`; ``None``: every class here.

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
    features, weights, labels, where=where, shard=shard
  )
  logits = features @ weights
  target_logit = _common.take_target(logits, labels, shard=shard)
  virtual_logit = _common.target_norm_product(features, weights, labels, shard=shard)
  lse = jnp.logaddexp(_common.logsumexp_classes(logits, shard=shard), virtual_logit)
  return _common.apply_where(lse - target_logit, where, out_dtype)


def _noisy_streamed(head, key, *, alpha, noise="annealed"):
  stats = head.stats()
  target_logit = stats.dot_y[:, 0]
  subtracted = noise_subtracted(
    target_logit, head.norm_product(stats), key, alpha=alpha, noise=noise, shard=head.shard
  )
  return _streamed.cross_entropy(stats.lse, target_logit + head.target_bias() - subtracted)


def _virtual_streamed(head):
  stats = head.stats()
  return _streamed.cross_entropy(stats.lse, stats.dot_y[:, 0], head.norm_product(stats))


SPECS = (
  LossSpec(
    "noisy_softmax",
    noisy_softmax_loss,
    "features",
    typical={"alpha": math.sqrt(0.1)},
    needs_key=True,
    paper="Noisy Softmax (Chen et al., CVPR 2017) eqs 5-8",
    streamed=_noisy_streamed,
    checks=_noisy_checks,
  ),
  LossSpec(
    "virtual_softmax",
    virtual_softmax_loss,
    "features",
    paper="Virtual Softmax (Chen et al., NeurIPS 2018) eqs 3-5",
    streamed=_virtual_streamed,
  ),
)
