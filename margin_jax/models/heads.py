"""The loss-side parameters: class weights W, optional bias, center-loss centers.

The losses of :mod:`margin_jax.losses` take the features ``x`` and the class
weights ``W`` rather than logits, so the model does not multiply them: the
head owns ``W`` (``[d, C]``, the Flax ``Dense`` kernel layout, or ``[V, d, C]``
for EM-Softmax's V weak classifiers, EM paper eq 7) and hands it to the loss
together with ``x``. Two shells share the math of this module: the Linen
:class:`ClassifierHead` and the NNX :class:`margin_jax.models.nnx_heads.ClassifierHead`.

PyTorch code (and pytorch-metric-learning) stores W as ``[C, d]``: pass
``W_torch.T``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import flax.linen as nn

from margin_jax import losses
from margin_jax import numerics
from margin_jax.models.cnn import conv_net

# Caffe's Gaussian filler with std 0.01, the classic classifier-layer setting
# (e.g. Caffe's reference AlexNet/CaffeNet fc8). Small on purpose: with He or
# Glorot scale (||W_j|| ~ 1.4) and the feature layer's ||x|| ~ 11, Virtual
# Softmax's virtual logit ||W_y|| ||x|| (Virtual eq 3) starts ~14 nats above
# every class logit, the loss is then only its angle term
# ||W_y|| ||x|| (1 - cos theta_y), which no other class enters, and SGD at
# lr 0.1 collapses the class columns onto the features' common direction
# (see docs/guides/training_notes.md). At std 0.01 every logit starts near 0, as
# in plain softmax; the other losses train as before.
default_kernel_init = nn.initializers.normal(stddev=0.01)


def weights_shape(dim: int, num_classes: int, num_classifiers: int) -> tuple[int, ...]:
  """``[d, C]``, or ``[V, d, C]`` for V > 0 weak classifiers."""
  return (num_classifiers, dim, num_classes) if num_classifiers else (dim, num_classes)


def updated_centers(centers, features, labels, *, alpha: float, axis_name=None, shard=None):
  """Wen et al. (ECCV 2016) eq 4 and Algorithm 1 step 5: each centre moves
  towards the mean of its class in the (all-device) batch,
  ``c_j <- c_j - alpha * sum_i [y_i = j](c_j - x_i) / (1 + n_j)``. In a class
  shard (``shard``, a `margin_jax.sharding.ClassShard`) ``centers`` are the
  shard's classes."""
  if shard is not None:  # labels in the shard's numbering; others one-hot to zero rows
    labels = labels - jax.lax.axis_index(shard.axis_name) * centers.shape[0]
  onehot = jax.nn.one_hot(labels, centers.shape[0], dtype=features.dtype)
  counts = onehot.sum(0)
  diff = counts[:, None] * centers - onehot.T @ features
  if axis_name is not None:
    counts, diff = jax.lax.psum((counts, diff), axis_name)
  diff = jax.lax.stop_gradient(diff)
  return centers - alpha * diff / (1.0 + counts[:, None])


def test_logits(outputs: dict, loss: str) -> jax.Array:
  """The logits ``[B, C]`` a model trained with ``loss`` classifies with.

  ``outputs`` is a head's output with ``"features"`` (as `MarginNet` returns
  it): ``x @ W`` (+ bias), the averaged W for EM-Softmax, the cosines for the
  normalised-weight losses, the closest sub-centre's cosine for Sub-center
  ArcFace (`margin_jax.losses.BoundLoss.test_logits`).
  """
  logits = losses.by_name(loss).test_logits(outputs["features"], outputs["weights"])
  return logits + outputs["bias"] if "bias" in outputs else logits


def embeddings(features: jax.Array) -> jax.Array:
  """Unit-length embeddings ``[B, d]``: what retrieval and verification compare
  by cosine similarity (`margin_jax.metrics`)."""
  return numerics.normalize(features, axis=-1)


class ClassifierHead(nn.Module):
  """Class weights W, optional bias and optional center-loss centers (Linen).

  Use it after any feature extractor::

    head = ClassifierHead(num_classes=10)
    outputs = head.apply(variables, features)  # {"weights": [d, C]}
    loss = losses.arcface_loss(features, outputs["weights"], labels, scale=16.0, margin=0.5)

  Attributes:
    num_classes: C.
    num_classifiers: V > 0 gives EM-Softmax's stacked ``[V, d, C]`` weights; 0
      gives one ``[d, C]`` classifier (parameter ``kernel``).
    use_bias: add a bias ``b`` ``[C]`` (the papers' losses use ``W^T x``).
    center_alpha: > 0 keeps center-loss centers ``[C, d]`` in the
      ``"batch_stats"`` collection, updated by `updated_centers` (Wen et al.
      eq 4) when called with ``train=True`` and labels. Like batch-norm
      statistics they are state, not trained by the optimiser.
    axis_name: ``pmap`` axis to sum the center update over.
    class_axis: mesh axis to split the classes over: the kernel and bias are
      annotated with ``nn.with_partitioning`` (read by ``nn.get_partition_spec``).
    kernel_init: initialiser of W (default: Gaussian, std 0.01).
    dtype: dtype of the returned weights (the losses compute bf16/f16 in
      float32); default: the parameters' dtype.
    param_dtype: dtype of the parameters.
  """

  num_classes: int
  num_classifiers: int = 0
  use_bias: bool = False
  center_alpha: float = 0.0
  axis_name: str | None = None
  class_axis: str | None = None
  kernel_init: Callable = default_kernel_init
  dtype: jnp.dtype | None = None
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, features, labels=None, *, train: bool = False, shard=None) -> dict:
    """Returns ``{"weights": [d, C] or [V, d, C]}`` plus ``"bias"`` ``[C]`` and
    ``"centers"`` ``[C, d]`` when enabled.

    Args:
      features: ``[batch_size, d]`` (only its width is read, and the features
        themselves for the center update).
      labels: ``[batch_size]``; needed only to update center-loss centers.
      train: update the centers (with labels and ``center_alpha`` > 0).
      shard: the class shard of a class-sharded step inside ``shard_map``
        (`margin_jax.sharding.ClassShard`, as
        `margin_jax.training.devices.MeshParallel` passes it): the head then
        holds its shard of the classes.
    """
    d = features.shape[-1]
    c = self.num_classes
    if shard is not None:
      c //= jax.lax.axis_size(shard.axis_name)
    shape = weights_shape(d, c, self.num_classifiers)
    dtype = self.dtype or self.param_dtype
    kernel = self.param("kernel", self._init(self.kernel_init, len(shape)), shape, self.param_dtype)
    out = {"weights": kernel.astype(dtype)}
    if self.use_bias:
      bias = self.param("bias", self._init(nn.initializers.zeros, 1), (c,), self.param_dtype)
      out["bias"] = bias.astype(dtype)
    if self.center_alpha > 0:
      init = self._init(jnp.zeros, 2, class_dim=0)
      centers = self.variable("batch_stats", "centers", init, (c, d), self.param_dtype)
      out["centers"] = centers.value.astype(dtype)
      if train and labels is not None and not self.is_initializing():
        centers.value = updated_centers(
          centers.value,
          features,
          labels,
          alpha=self.center_alpha,
          axis_name=self.axis_name,
          shard=shard,
        )
    return out

  def _init(self, init, ndim: int, class_dim: int = -1):
    """``init``, annotated as split on its class axis ``class_dim`` over ``class_axis``."""
    if self.class_axis is None:
      return init
    names = [None] * ndim
    names[class_dim] = self.class_axis
    return nn.with_partitioning(init, tuple(names))


class MarginNet(nn.Module):
  """A backbone (a paper CNN, :class:`~margin_jax.models.cnn.ConvNet`, or a face
  network, :func:`~margin_jax.models.face_net`) plus its head.

  ``__call__(images, labels=None, *, train, shard=None)`` returns a dict with
  ``"features"`` ``[B, d]``, ``"weights"`` ``[d, C]`` or ``[V, d, C]`` and,
  when enabled, ``"bias"`` ``[C]`` and ``"centers"`` ``[C, d]``. Labels are
  only needed to update center-loss centers during training.
  """

  backbone: nn.Module
  head: ClassifierHead

  def __call__(self, images, labels=None, *, train: bool = False, shard=None):
    features = self.backbone(images, train=train)
    return {"features": features, **self.head(features, labels, train=train, shard=shard)}


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
  class_axis: str | None = None,
) -> MarginNet:
  """Builds ``MarginNet`` from an :data:`~margin_jax.models.cnn.ARCHITECTURES` or
  :data:`~margin_jax.models.FACE_NETS` name (``"iresnet50"``).

  ``axis_name`` synchronises batch norm and center updates across devices;
  ``class_axis`` names the mesh axis the head's classes are split over.
  """
  return MarginNet(
    backbone=conv_net(architecture, width=width, feature_dim=feature_dim, bn_axis_name=axis_name),
    head=ClassifierHead(
      num_classes=num_classes,
      num_classifiers=num_classifiers,
      use_bias=use_bias,
      center_alpha=center_alpha,
      axis_name=axis_name,
      class_axis=class_axis,
    ),
  )
