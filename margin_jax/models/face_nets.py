"""Face-recognition backbones: insightface's IResNet and SphereFace's 20-layer CNN.

Both map an aligned face crop to a 512-d feature ``x`` (the embedding) and,
like :class:`~margin_jax.models.cnn.ConvNet`, leave the last fully connected
layer W to the loss (:mod:`.heads`), so ``margin_net("iresnet50", ...)`` pairs
either with any loss of :mod:`margin_jax.losses`.

* :class:`IResNet` is the "improved" pre-activation ResNet of ArcFace as
  insightface's PyTorch code (``recognition/arcface_torch``) builds it:
  112x112x3 in, 512-d out, about 43.6 M parameters for ``iresnet50``.
* :class:`SphereFaceNet` is the 20-layer residual CNN of SphereFace, laid out
  and initialised as the authors' released Caffe prototxt
  (``sphereface_model.prototxt``): 112x96x3 in, 512-d out. Virtual Softmax
  (Chen et al., NeurIPS 2018) evaluates its face verification with it.

``width`` multiplies every convolution's filter count (as ``ConvNet.width``:
``max(1, round(filters * width))``) so that the same networks run scaled down
on a CPU; the embedding keeps ``feature_dim`` (512) features. The fully
connected layer reads whatever spatial size the last stage leaves, so smaller
images also work (32x32 leaves 2x2 in IResNet).

Parameters are named after the references' layers (insightface's ``conv1``,
``layer2_0/bn1``, ``fc``, ``features``; the prototxt's ``conv3_5``,
``relu3_5``, ``fc5``), so released weights map one to one. Features are
flattened in JAX's ``[H, W, C]`` order: a fully connected kernel ported from
PyTorch or Caffe (``[C, H, W]`` order) must be permuted.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from margin_jax.models.cnn import PReLU

# insightface's batch norm: PyTorch's BatchNorm with eps 1e-5 and PyTorch's
# default momentum 0.1, i.e. running = 0.9 * running + 0.1 * batch, which is
# Flax's momentum 1 - 0.1 = 0.9 (insightface's earlier MXNet code: eps 2e-5,
# MXNet momentum 0.9, the same decay). PyTorch's running variance takes the
# unbiased batch variance, Flax's the biased one: a factor n / (n - 1), with n
# the batch's elements per channel (B * H * W).
IRESNET_BN_EPSILON = 1e-5
IRESNET_BN_MOMENTUM = 0.9


def _iresnet_norm(train: bool, axis_name: str | None):
  """IResNet's batch norm layer (insightface's epsilon and momentum)."""
  return functools.partial(
    nn.BatchNorm,
    use_running_average=not train,
    momentum=IRESNET_BN_MOMENTUM,
    epsilon=IRESNET_BN_EPSILON,
    axis_name=axis_name,
  )


# insightface initialises every convolution N(0, 0.1^2) (each is followed by
# batch norm, so the scale only sets the weights' norm relative to their
# gradients); its fully connected layer keeps PyTorch's Linear default,
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for kernel and bias.
iresnet_conv_init = nn.initializers.normal(stddev=0.1)
torch_linear_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

# Caffe's fillers in the SphereFace prototxt: "xavier" is Caffe's
# U(-sqrt(3 / fan_in), sqrt(3 / fan_in)) (variance 1 / fan_in), "gaussian"
# std 0.01; biases constant 0.
caffe_xavier = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
caffe_gaussian = nn.initializers.normal(stddev=0.01)

IRESNET_FILTERS = (64, 128, 256, 512)
SPHEREFACE_FILTERS = (64, 128, 256, 512)


def scaled(filters: int, width: float) -> int:
  """``filters`` times the width multiplier, at least 1 (as ``ConvNet``)."""
  return max(1, round(filters * width))


def torch_linear_bias_init(fan_in: int):
  """PyTorch's Linear bias initialiser, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class IResNetBlock(nn.Module):
  """insightface's ``IBasicBlock``: BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN,
  added to the input (through conv1x1(stride) - BN where the shape changes).

  Attributes:
    filters: output channels of both convolutions.
    strides: stride of the second convolution (2 in a stage's first block).
    bn_axis_name: ``pmap`` axis for synchronised batch norm.
  """

  filters: int
  strides: int = 1
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm = _iresnet_norm(train, self.bn_axis_name)
    conv = functools.partial(
      nn.Conv, self.filters, (3, 3), padding=((1, 1), (1, 1)), use_bias=False
    )
    y = norm(name="bn1")(x)
    y = conv(kernel_init=iresnet_conv_init, name="conv1")(y)
    y = norm(name="bn2")(y)
    y = PReLU(name="prelu")(y)
    # PyTorch's padding 1 on both sides: at stride 2 the windows start one
    # pixel before the image, unlike Flax's "SAME" (which pads the end only).
    y = conv(strides=self.strides, kernel_init=iresnet_conv_init, name="conv2")(y)
    y = norm(name="bn3")(y)
    if self.strides != 1 or x.shape[-1] != self.filters:
      x = nn.Conv(
        self.filters,
        (1, 1),
        strides=self.strides,
        padding="VALID",
        use_bias=False,
        kernel_init=iresnet_conv_init,
        name="downsample_conv",
      )(x)
      x = norm(name="downsample_bn")(x)
    return x + y


class IResNet(nn.Module):
  """insightface's IResNet (ArcFace's "improved" ResNet; Deng et al., 2019).

  Stem conv3x3(64) - BN - PReLU; four stages of ``layers[i]``
  :class:`IResNetBlock` with 64, 128, 256, 512 filters, each stage starting
  with stride 2 (112 -> 56 -> 28 -> 14 -> 7); then BN - flatten - dropout -
  fully connected (with bias) - BN. The last BN is insightface's ``features``
  layer: its scale is fixed to 1 (not trained), only its offset is learned,
  so here it has no scale parameter (``use_scale=False``; insightface's
  parameter count includes the 512 frozen ones). Batch norm: epsilon 1e-5,
  Flax momentum 0.9 (PyTorch momentum 0.1), see ``IRESNET_BN_*``.

  ``layers``: (2, 2, 2, 2) ``iresnet18``, (3, 4, 6, 3) ``iresnet34``,
  (3, 4, 14, 3) ``iresnet50``, (3, 13, 30, 3) ``iresnet100``
  (:data:`FACE_NETS`).

  Attributes:
    layers: blocks per stage.
    feature_dim: embedding width (insightface's ``num_features``, 512).
    dropout: dropout rate before the fully connected layer (insightface's
      default 0; a rate > 0 in training needs a ``"dropout"`` RNG).
    width: multiplier of every convolution's filter count.
    bn_axis_name: the ``pmap`` axis over which batch norm statistics are
      averaged (``None`` on a single device).

  References:
    Deng, Guo, Xue, Zafeiriou, ArcFace: Additive Angular Margin Loss for Deep
    Face Recognition, CVPR 2019, Sec. 4.1 (ResNet50/100 with the BN-Dropout-
    FC-BN 512-d embedding); insightface,
    ``recognition/arcface_torch/backbones/iresnet.py``.
  """

  layers: Sequence[int]
  feature_dim: int = 512
  dropout: float = 0.0
  width: float = 1.0
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    """Features ``[B, feature_dim]`` of images ``[B, H, W, 3]`` (112x112)."""
    norm = _iresnet_norm(train, self.bn_axis_name)
    x = nn.Conv(
      scaled(64, self.width),
      (3, 3),
      padding=((1, 1), (1, 1)),
      use_bias=False,
      kernel_init=iresnet_conv_init,
      name="conv1",
    )(x)
    x = norm(name="bn1")(x)
    x = PReLU(name="prelu")(x)
    for stage, (blocks, filters) in enumerate(zip(self.layers, IRESNET_FILTERS, strict=True)):
      for i in range(blocks):
        x = IResNetBlock(
          scaled(filters, self.width),
          strides=2 if i == 0 else 1,
          bn_axis_name=self.bn_axis_name,
          name=f"layer{stage + 1}_{i}",
        )(x, train=train)
    x = norm(name="bn2")(x)
    x = x.reshape((x.shape[0], math.prod(x.shape[1:])))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(
      self.feature_dim,
      kernel_init=torch_linear_kernel_init,
      bias_init=torch_linear_bias_init(x.shape[-1]),
      name="fc",
    )(x)
    return norm(use_scale=False, name="features")(x)


class SphereFaceNet(nn.Module):
  """SphereFace's residual CNN (Liu et al., 2017, Table 2), 20 layers by default.

  Four stages of 64, 128, 256, 512 filters; each starts with a 3x3 stride-2
  convolution (with bias) and PReLU (112x96 -> 56x48 -> 28x24 -> 14x12 ->
  7x6), followed by ``units[i]`` residual units ``x + PReLU(conv(PReLU(conv(x))))``
  of 3x3 stride-1 convolutions; then a fully connected layer (with bias) of
  ``feature_dim`` outputs, the feature (``fc5``). No batch norm. As the
  authors' prototxt: the stride-2 convolutions and ``fc5`` use Caffe's
  "xavier" filler, the residual convolutions a Gaussian of std 0.01 and no
  bias (the prototxt gives them a bias fixed at 0 by ``lr_mult: 0``), PReLU
  slopes one per channel, initialised to 0.25 (Caffe's default).

  Attributes:
    units: residual units per stage; SphereFace-20 is (1, 2, 4, 1).
    feature_dim: width of the feature layer (512).
    width: multiplier of every convolution's filter count.

  References:
    Liu, Wen, Yu, Li, Raj, Song, SphereFace: Deep Hypersphere Embedding for
    Face Recognition, CVPR 2017, Table 2 (the 20-layer CNN) and the authors'
    ``train/code/sphereface_model.prototxt`` (github.com/wy1iu/sphereface).
  """

  units: Sequence[int] = (1, 2, 4, 1)
  feature_dim: int = 512
  width: float = 1.0

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    """Features ``[B, feature_dim]`` of images ``[B, H, W, 3]`` (112x96);
    ``train`` is accepted for the backbone interface (no layer depends on it)."""
    del train
    pad = ((1, 1), (1, 1))  # Caffe's pad 1, on both sides
    for stage, (units, filters) in enumerate(zip(self.units, SPHEREFACE_FILTERS, strict=True)):
      filters = scaled(filters, self.width)
      name = f"conv{stage + 1}_"
      x = nn.Conv(
        filters, (3, 3), strides=2, padding=pad, kernel_init=caffe_xavier, name=f"{name}1"
      )(x)
      x = PReLU(name=f"relu{stage + 1}_1")(x)
      for unit in range(units):
        y = x
        for j in (2 * unit + 2, 2 * unit + 3):
          y = nn.Conv(
            filters,
            (3, 3),
            padding=pad,
            use_bias=False,
            kernel_init=caffe_gaussian,
            name=f"{name}{j}",
          )(y)
          y = PReLU(name=f"relu{stage + 1}_{j}")(y)
        x = x + y
    x = x.reshape((x.shape[0], math.prod(x.shape[1:])))
    return nn.Dense(self.feature_dim, kernel_init=caffe_xavier, name="fc5")(x)


# name -> (family, blocks or residual units per stage).
FACE_NETS = {
  # insightface's arcface_torch backbones (ArcFace, Deng et al., CVPR 2019).
  "iresnet18": ("iresnet", (2, 2, 2, 2)),
  "iresnet34": ("iresnet", (3, 4, 6, 3)),
  "iresnet50": ("iresnet", (3, 4, 14, 3)),
  "iresnet100": ("iresnet", (3, 13, 30, 3)),
  # SphereFace Table 2, 20 layers (Liu et al., CVPR 2017).
  "sphereface20": ("sphereface", (1, 2, 4, 1)),
}


def face_net(
  name: str, *, width: float = 1.0, feature_dim: int | None = None, bn_axis_name: str | None = None
) -> IResNet | SphereFaceNet:
  """Builds the face network ``name`` of :data:`FACE_NETS`.

  ``margin_jax.models.conv_net`` (and so ``margin_net`` and the trainer's
  ``config.model``) resolves these names through this function.

  Args:
    name: ``"iresnet18"``, ``"iresnet34"``, ``"iresnet50"``, ``"iresnet100"``
      or ``"sphereface20"``.
    width: filter multiplier (< 1 for CPU-scaled runs).
    feature_dim: embedding width; 512 when not given.
    bn_axis_name: pmap axis for synchronised batch norm (IResNet; SphereFace
      has no batch norm).
  """
  if name not in FACE_NETS:
    raise ValueError(f"unknown architecture {name!r}; expected one of {sorted(FACE_NETS)}")
  family, depths = FACE_NETS[name]
  feature_dim = feature_dim or 512
  if family == "iresnet":
    return IResNet(depths, feature_dim=feature_dim, width=width, bn_axis_name=bn_axis_name)
  return SphereFaceNet(depths, feature_dim=feature_dim, width=width)
