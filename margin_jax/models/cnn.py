"""The papers' VGG-style CNNs as one configurable Flax Linen module.

Every network of L-Softmax Table 1, Noisy Softmax Table 2 and Virtual Softmax
Table 1 is a stack of stages; a stage is ``n`` cascaded ``k x k`` convolutions
(stride 1, "same" padding), each followed by batch norm and PReLU, then a
pooling layer. After the last stage a fully connected layer of the table's
width gives the feature ``x`` that the loss receives (L-Softmax Fig. 1: the
loss owns the *last* fully connected layer W; see :mod:`.heads`).

Choices the tables leave open, fixed here and used by the parameter-count
tests:

* Convolutions have no bias (batch norm follows each one); batch norm has a
  scale and an offset; PReLU has one slope per channel, initialised to 0.25
  (He et al., 2015, "Delving deep into rectifiers", Sec 2.1).
* Weights use He initialisation (same paper, Sec 2.2), as all three papers say.
* Pooling follows Caffe, the papers' framework: the output size is
  ``ceil((H - k) / s) + 1``, so a 7x7 map pooled 2x2/2 becomes 4x4 (Caffe's
  ceil mode), and average pooling divides by the number of in-image pixels.
* The feature layer is treated like the convolutions: fully connected (no
  bias), batch norm, PReLU, as in the L-Softmax authors' released Caffe
  models (``ip1 -> BN -> ReLU`` before the margin layer); without the batch
  norm, plain SGD at the papers' learning rate 0.1 diverges in the first
  steps. PReLU keeps negative values, so the 2-/3-D features of L-Softmax
  Fig. 2 and Virtual Softmax Fig. 2 still spread over all quadrants.
* L-Softmax's ``Conv0.x`` (one conv of the same width as ``Conv1.x``, no pool
  in between) is folded into the first stage: ``[3x3,64]x1 + [3x3,64]x3`` is
  the stage ``(4, 64, 3)``. Parameter counts are identical.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import flax.linen as nn

he_normal = nn.initializers.he_normal()


class PReLU(nn.Module):
  """Channel-wise parametric ReLU (He et al., 2015, eq 1), slopes init 0.25."""

  @nn.compact
  def __call__(self, x):
    slope = self.param("slope", nn.initializers.constant(0.25), (x.shape[-1],))
    return jnp.where(x >= 0, x, slope * x)


def caffe_pool(x, *, kind: str, window: int, stride: int):
  """Max/average pooling with Caffe's output size ``ceil((H - k)/s) + 1``.

  Args:
    x: activations, shape ``[batch, height, width, channels]``.
    kind: ``"max"`` or ``"avg"`` (average over in-image pixels only).
    window: pooling window ``k``.
    stride: stride ``s``.
  """
  pads = []
  for size in x.shape[1:3]:
    out = -(-max(size - window, 0) // stride) + 1
    pads.append((0, max((out - 1) * stride + window - size, 0)))
  if kind == "max":
    return nn.max_pool(x, (window, window), (stride, stride), padding=pads)
  if kind == "avg":
    return nn.avg_pool(x, (window, window), (stride, stride), padding=pads, count_include_pad=False)
  raise ValueError(f"pool kind must be 'max' or 'avg', got {kind!r}")


class ConvNet(nn.Module):
  """VGG-style feature extractor of the papers' tables.

  Attributes:
    stages: per stage ``(num_convs, filters, kernel_size)``, each followed by
      a pooling layer.
    feature_dim: width of the fully connected feature layer (the table's
      "Fully Connected" row).
    pool_window: pooling window (2 in L-Softmax/Noisy Softmax, 3 in Virtual
      Softmax Table 1).
    pool_stride: pooling stride (2 everywhere).
    last_pool: ``"max"``, or ``"avg"`` for Virtual Softmax's CIFAR-100 net.
    width: multiplier of every stage's filter count (Virtual Softmax's widening
      factor t, or a fraction to scale a protocol down for CPU runs).
    bn_axis_name: the ``pmap`` axis over which batch norm statistics are
      averaged (``None`` on a single device).
  """

  stages: Sequence[tuple[int, int, int]]
  feature_dim: int
  pool_window: int = 2
  pool_stride: int = 2
  last_pool: str = "max"
  width: float = 1.0
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    for i, (num_convs, filters, kernel) in enumerate(self.stages):
      filters = max(1, round(filters * self.width))
      for _ in range(num_convs):
        x = nn.Conv(
          filters, (kernel, kernel), padding="SAME", use_bias=False, kernel_init=he_normal
        )(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.bn_axis_name)(
          x
        )
        x = PReLU()(x)
      kind = self.last_pool if i == len(self.stages) - 1 else "max"
      x = caffe_pool(x, kind=kind, window=self.pool_window, stride=self.pool_stride)
    x = x.reshape((x.shape[0], math.prod(x.shape[1:])))
    x = nn.Dense(self.feature_dim, use_bias=False, kernel_init=he_normal)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.bn_axis_name)(x)
    return PReLU()(x)


# name -> (stages, feature_dim, pool_window, last_pool). Widths are the
# tables' with t = 1 for Virtual Softmax (multiply with ``width``).
ARCHITECTURES = {
  # L-Softmax Table 1 (Liu et al., ICML 2016).
  "lsoftmax_mnist_2d": (((2, 32, 5), (2, 64, 5), (2, 128, 5)), 2, 2, "max"),
  "lsoftmax_mnist": (((4, 64, 3), (3, 64, 3), (3, 64, 3)), 256, 2, "max"),
  "lsoftmax_cifar10": (((5, 64, 3), (4, 96, 3), (4, 128, 3)), 256, 2, "max"),
  "lsoftmax_cifar100": (((5, 96, 3), (4, 192, 3), (4, 384, 3)), 512, 2, "max"),
  # Noisy Softmax Table 2 (Chen et al., CVPR 2017).
  "noisy_mnist_subset": (((2, 40, 3), (1, 60, 3), (1, 60, 3)), 100, 2, "max"),
  "noisy_mnist": (((3, 64, 3), (3, 64, 3), (3, 64, 3)), 256, 2, "max"),
  "noisy_cifar10": (((4, 64, 3), (4, 128, 3), (4, 256, 3)), 512, 2, "max"),
  "noisy_cifar100": (((4, 96, 3), (4, 192, 3), (4, 384, 3)), 512, 2, "max"),
  # Virtual Softmax Table 1 (Chen et al., NeurIPS 2018), 3x3/2 pooling.
  "virtual_mnist_2d": (((2, 32, 5), (2, 64, 5), (2, 128, 5)), 2, 3, "max"),
  "virtual_mnist_3d": (((2, 32, 5), (2, 64, 5), (2, 128, 5)), 3, 3, "max"),
  "virtual_mnist": (((4, 32, 3), (4, 32, 3), (4, 32, 3)), 64, 3, "max"),
  "virtual_svhn": (((5, 32, 3), (4, 64, 3), (4, 128, 3)), 64, 3, "max"),
  "virtual_cifar10": (((5, 32, 3), (4, 64, 3), (4, 128, 3)), 64, 3, "max"),
  "virtual_cifar100": (((5, 32, 3), (4, 64, 3), (4, 128, 3)), 512, 3, "avg"),
}


class MLP(nn.Module):
  """Flatten -> Dense(hidden_dim) -> ReLU -> Dense(feature_dim): the
  network of the many-class task (``experiments/configs/sharded_head.py``,
  `margin_jax.data.many_classes`), where the classifier head is the point."""

  hidden_dim: int = 256
  feature_dim: int = 128

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train  # no batch norm or dropout
    hidden = nn.relu(nn.Dense(self.hidden_dim)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.feature_dim)(hidden)


def conv_net(
  name: str, *, width: float = 1.0, feature_dim: int | None = None, bn_axis_name: str | None = None
) -> nn.Module:
  """Builds the network ``name`` of :data:`ARCHITECTURES` or of
  :data:`~margin_jax.models.FACE_NETS` (built by
  :func:`~margin_jax.models.face_net`): every backbone name resolves here.

  Args:
    name: e.g. ``"lsoftmax_cifar10"`` (L-Softmax Table 1, CIFAR10 column),
      ``"iresnet50"``, or ``"mlp"`` (`MLP`, hidden width 256).
    width: filter multiplier (Virtual Softmax's t; < 1 for CPU-scaled runs).
    feature_dim: overrides the table's feature width when given.
    bn_axis_name: pmap axis for synchronised batch norm.
  """
  # Imported here: face_nets imports PReLU from this module.
  from margin_jax.models import face_nets

  if name in face_nets.FACE_NETS:
    return face_nets.face_net(name, width=width, feature_dim=feature_dim, bn_axis_name=bn_axis_name)
  if name == "mlp":
    return MLP(hidden_dim=round(256 * width), feature_dim=feature_dim or 128)
  if name not in ARCHITECTURES:
    names = sorted([*ARCHITECTURES, *face_nets.FACE_NETS, "mlp"])
    raise ValueError(f"unknown architecture {name!r}; expected one of {names}")
  stages, dim, window, last_pool = ARCHITECTURES[name]
  return ConvNet(
    stages=stages,
    feature_dim=feature_dim or dim,
    pool_window=window,
    last_pool=last_pool,
    width=width,
    bn_axis_name=bn_axis_name,
  )
