"""The loss-side parameters: class weights W, optional bias, center-loss centers.

The losses of :mod:`margin_jax.losses` take the features ``x`` and the class
weights ``W`` rather than logits, so the model does not multiply them: the
:class:`ClassifierHead` owns ``W`` (``[d, C]``, the Flax ``Dense`` kernel
layout, or ``[V, d, C]`` for EM-Softmax's V weak classifiers, EM paper eq 7)
and hands it to the objective together with ``x``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from margin_jax.models.cnn import conv_net

# Caffe's Gaussian filler with std 0.01, the classic classifier-layer setting
# (e.g. Caffe's reference AlexNet/CaffeNet fc8). Small on purpose: with He or
# Glorot scale (||W_j|| ~ 1.4) and the feature layer's ||x|| ~ 11, Virtual
# Softmax's virtual logit ||W_y|| ||x|| (Virtual eq 3) starts ~14 nats above
# every class logit, the loss is then only its angle term
# ||W_y|| ||x|| (1 - cos theta_y), which no other class enters, and SGD at
# lr 0.1 collapses the class columns onto the features' common direction
# (see experiments/RESULTS.md). At std 0.01 every logit starts near 0, as
# in plain softmax; the other losses train as before.
_weight_init = nn.initializers.normal(stddev=0.01)


class ClassifierHead(nn.Module):
  """Class weights W, optional bias and optional center-loss centers.

  Attributes:
    num_classes: C.
    num_classifiers: V > 0 gives EM-Softmax's stacked ``[V, d, C]`` weights; 0 gives
      one ``[d, C]`` classifier.
    use_bias: add a bias ``b`` ``[C]`` (the papers' losses use ``W^T x``).
    center_alpha: > 0 keeps center-loss centers ``[C, d]`` in the
      ``"batch_stats"`` collection, updated by Wen et al. (ECCV 2016) eq 4,
      ``c_j <- c_j - alpha * sum_i [y_i = j](c_j - x_i) / (1 + n_j)``, with
      sums taken over the whole (all-device) batch. Like batch-norm statistics
      they are state, not trained by the optimiser.
    axis_name: ``pmap`` axis to sum the center update over.
  """

  num_classes: int
  num_classifiers: int = 0
  use_bias: bool = False
  center_alpha: float = 0.0
  axis_name: str | None = None

  @nn.compact
  def __call__(self, features, labels=None, *, train: bool):
    d, c = features.shape[-1], self.num_classes
    shape = (self.num_classifiers, d, c) if self.num_classifiers else (d, c)
    out = {"weights": self.param("kernel", _weight_init, shape)}
    if self.use_bias:
      out["bias"] = self.param("bias", nn.initializers.zeros, (c,))
    if self.center_alpha > 0:
      centers = self.variable("batch_stats", "centers", jnp.zeros, (c, d))
      out["centers"] = centers.value
      if train and labels is not None and not self.is_initializing():
        centers.value = self._updated_centers(centers.value, features, labels)
    return out

  def _updated_centers(self, centers, features, labels):
    """Wen et al. 2016, eq 4 and Algorithm 1 step 5."""
    onehot = jax.nn.one_hot(labels, self.num_classes, dtype=features.dtype)
    counts = onehot.sum(0)
    diff = counts[:, None] * centers - onehot.T @ features
    if self.axis_name is not None:
      counts, diff = jax.lax.psum((counts, diff), self.axis_name)
    diff = jax.lax.stop_gradient(diff)
    return centers - self.center_alpha * diff / (1.0 + counts[:, None])


class MarginNet(nn.Module):
  """A paper CNN (:class:`~margin_jax.models.cnn.ConvNet`) plus its head.

  ``__call__(images, labels=None, *, train)`` returns a dict with
  ``"features"`` ``[B, d]``, ``"weights"`` ``[d, C]`` or ``[V, d, C]`` and,
  when enabled, ``"bias"`` ``[C]`` and ``"centers"`` ``[C, d]``. Labels are
  only needed to update center-loss centers during training.
  """

  backbone: nn.Module
  head: ClassifierHead

  def __call__(self, images, labels=None, *, train: bool):
    features = self.backbone(images, train=train)
    return {"features": features, **self.head(features, labels, train=train)}


def margin_net(
  architecture: str,
  *,
  num_classes: int,
  width: float = 1.0,
  feature_dim: int | None = None,
  num_classifiers: int = 0,
  use_bias: bool = False,
  center_alpha: float = 0.0,
  axis_name: str | None = None,
) -> MarginNet:
  """Builds ``MarginNet`` from an :data:`~margin_jax.models.cnn.ARCHITECTURES` name.

  ``axis_name`` synchronises batch norm and center updates across devices.
  """
  return MarginNet(
    backbone=conv_net(architecture, width=width, feature_dim=feature_dim, bn_axis_name=axis_name),
    head=ClassifierHead(
      num_classes=num_classes,
      num_classifiers=num_classifiers,
      use_bias=use_bias,
      center_alpha=center_alpha,
      axis_name=axis_name,
    ),
  )
