"""The classifier head for Flax NNX, the same math as the Linen head.

:class:`ClassifierHead` owns the class weights W (``[d, C]``, or ``[V, d, C]``
for EM-Softmax), an optional bias and optional center-loss centers, and
returns them for the losses of :mod:`margin_jax.losses`, exactly as
:class:`margin_jax.models.ClassifierHead` does in Linen (same shapes, same
initialiser, same center update: `margin_jax.models.heads.updated_centers`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from margin_jax.models import heads


class ClassifierHead(nnx.Module):
  """Class weights W, optional bias and optional center-loss centers (NNX).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> head = ClassifierHead(4, 10, rngs=nnx.Rngs(0))
    >>> head(jnp.ones((2, 4)))["weights"].shape
    (4, 10)

  Args:
    in_features: the feature width d.
    num_classes: C.
    num_classifiers: V > 0 gives EM-Softmax's stacked ``[V, d, C]`` weights.
    use_bias: add a bias ``b`` ``[C]``.
    center_alpha: > 0 keeps center-loss centers ``[C, d]`` (an
      ``nnx.BatchStat``), updated when called with ``train=True`` and labels.
    kernel_init: initialiser of W (default: Gaussian, std 0.01).
    dtype: dtype of the returned weights; default: the parameters' dtype.
    param_dtype: dtype of the parameters.
    rngs: the ``nnx.Rngs`` that initialise W.
  """

  def __init__(
    self,
    in_features: int,
    num_classes: int,
    *,
    num_classifiers: int = 0,
    use_bias: bool = False,
    center_alpha: float = 0.0,
    kernel_init: Callable = heads.default_kernel_init,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    shape = heads.weights_shape(in_features, num_classes, num_classifiers)
    self.kernel = nnx.Param(kernel_init(rngs.params(), shape, param_dtype))
    self.bias = nnx.Param(jnp.zeros((num_classes,), param_dtype)) if use_bias else None
    self.centers = (
      nnx.BatchStat(jnp.zeros((num_classes, in_features), param_dtype))
      if center_alpha > 0
      else None
    )
    self.center_alpha = center_alpha
    self.dtype = dtype or param_dtype

  def __call__(self, features: jax.Array, labels: jax.Array | None = None, *, train: bool = False):
    """Returns ``{"weights"}`` plus ``"bias"`` and ``"centers"`` when enabled;
    with ``train=True`` and labels, then updates the centers."""
    out = {"weights": self.kernel[...].astype(self.dtype)}
    if self.bias is not None:
      out["bias"] = self.bias[...].astype(self.dtype)
    if self.centers is not None:
      out["centers"] = self.centers[...].astype(self.dtype)
      if train and labels is not None:
        self.centers[...] = heads.updated_centers(
          self.centers[...], features, labels, alpha=self.center_alpha
        )
    return out
