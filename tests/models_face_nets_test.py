"""The face networks (margin_jax.models.face_nets): insightface's IResNet and
SphereFace-20, their shapes, parameter counts and use as a MarginNet backbone.

The full-size networks are only traced (`jax.eval_shape`); real forward passes
run at width 1/8 on a batch of 2.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import default
from margin_jax import models
from margin_jax import sharding
from margin_jax.models import face_nets
from margin_jax.training import objectives
from margin_jax.training import train


# Initialisation keys for the real forward passes: threefry's random bits make
# XLA compile a network's init for ~10 s on a busy CPU, rbg's in ~2 s.
KEY = jax.random.key(0, impl="unsafe_rbg")


def count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def image_size(name):
  return (112, 96) if name.startswith("sphereface") else (112, 112)


# IResNet, written out from insightface's description (arcface_torch
# backbones/iresnet.py): batch norm = scale + offset, PReLU = one slope per
# channel, no conv biases; the embedding's fully connected layer has a bias and
# its batch norm ("features") only an offset (insightface fixes the scale to 1).
def bn(c):
  return 2 * c


def block(cin, c):
  """BN - conv3x3 - BN - PReLU - conv3x3 - BN, plus conv1x1 + BN if cin != c or stride 2."""
  return bn(cin) + 9 * cin * c + bn(c) + c + 9 * c * c + bn(c)


def iresnet_count(layers):
  total = 9 * 3 * 64 + bn(64) + 64  # stem
  cin = 64
  for n, c in zip(layers, (64, 128, 256, 512)):
    total += block(cin, c) + cin * c + bn(c)  # first block: stride 2, downsample
    total += (n - 1) * block(c, c)
    cin = c
  return total + bn(512) + 512 * 7 * 7 * 512 + 512 + 512  # BN, FC + bias, features offset


# Reference counts: insightface's own PyTorch iresnet.py (arcface_torch,
# commit 7fadd420 of github.com/deepinsight/insightface), built with torch
# 2.13 and counted as sum(p.numel() for p in model.parameters()), 112x112x3 in,
# num_features=512: iresnet18 24,025,600; iresnet34 34,139,328; iresnet50
# 43,590,848 (the "43.6 M" insightface publishes); iresnet100 65,156,160
# ("65.2 M"). Those totals include the 512 frozen scales of the ``features``
# batch norm (requires_grad=False), which this module does not hold as
# parameters, hence the 512 subtracted. Running statistics (batch_stats) also
# match PyTorch's running_mean + running_var buffers: 14,720 / 25,856 / 38,144
# / 69,632.
IRESNET_REFERENCE = {
  "iresnet18": (24_025_600 - 512, 14_720),
  "iresnet34": (34_139_328 - 512, 25_856),
  "iresnet50": (43_590_848 - 512, 38_144),
  "iresnet100": (65_156_160 - 512, 69_632),
}

# SphereFace-20 by hand from the authors' train/code/sphereface_model.prototxt
# (github.com/wy1iu/sphereface), 112x96 -> 56x48 -> 28x24 -> 14x12 -> 7x6:
#   stride-2 convs with bias: 3*9*64+64 = 1,792; 64*9*128+128 = 73,856;
#     128*9*256+256 = 295,168; 256*9*512+512 = 1,180,160      -> 1,550,976
#   residual convs (2 per unit; 1, 2, 4, 1 units), no bias:
#     2*64*9*64 = 73,728; 4*128*9*128 = 589,824; 8*256*9*256 = 4,718,592;
#     2*512*9*512 = 4,718,592                                  -> 10,100,736
#   PReLU after every conv: 64*3 + 128*5 + 256*9 + 512*3        -> 4,672
#   fc5: 7*6*512*512 + 512                                     -> 11,010,560
#   total                                                       22,666,944
# (Caffe also stores the residual convs' biases, fixed at 0 by lr_mult 0:
# 64*2 + 128*4 + 256*8 + 512*2 = 3,712 more, 22,670,656 blobs in all.)
SPHEREFACE20_COUNT = 1_550_976 + 10_100_736 + 4_672 + 11_010_560


def test_hand_count_matches_insightface():
  """The written-out IResNet formula agrees with the PyTorch reference counts."""
  for name, (params, _) in IRESNET_REFERENCE.items():
    assert iresnet_count(face_nets.FACE_NETS[name][1]) == params, name
  assert SPHEREFACE20_COUNT == 22_666_944


@pytest.mark.parametrize("name", sorted(face_nets.FACE_NETS))
def test_shapes_and_parameter_counts(name):
  net = models.face_net(name)
  x = jnp.zeros((3, *image_size(name), 3))
  variables = jax.eval_shape(lambda: net.init(jax.random.key(0), x, train=False))
  out = jax.eval_shape(lambda v: net.apply(v, x, train=False), variables)
  assert out.shape == (3, 512)
  if name == "sphereface20":
    assert set(variables) == {"params"}  # no batch norm
    assert count(variables["params"]) == SPHEREFACE20_COUNT
  else:
    params, stats = IRESNET_REFERENCE[name]
    assert count(variables["params"]) == params
    assert count(variables["batch_stats"]) == stats
    assert "scale" not in variables["params"]["features"]  # fixed to 1, as insightface


def test_width_and_feature_dim():
  net = models.face_net("iresnet50", width=0.125, feature_dim=128)
  x = jnp.zeros((2, 112, 112, 3))
  variables = jax.eval_shape(lambda: net.init(jax.random.key(0), x, train=False))
  params = variables["params"]
  assert params["conv1"]["kernel"].shape == (3, 3, 3, 8)  # 64 / 8
  assert params["layer4_0"]["conv2"]["kernel"].shape == (3, 3, 64, 64)  # 512 / 8
  assert params["fc"]["kernel"].shape == (7 * 7 * 64, 128)
  assert jax.eval_shape(lambda v: net.apply(v, x, train=False), variables).shape == (2, 128)

  net = models.face_net("sphereface20", width=0.125)
  x = jnp.zeros((2, 112, 96, 3))
  params = jax.eval_shape(lambda: net.init(jax.random.key(0), x))["params"]
  assert params["conv1_1"]["kernel"].shape == (3, 3, 3, 8)
  assert params["conv3_9"]["kernel"].shape == (3, 3, 32, 32)  # last of 4 units
  assert params["fc5"]["kernel"].shape == (7 * 6 * 64, 512)  # embedding stays 512


def test_iresnet_train_mode_updates_batch_stats():
  net = models.face_net("iresnet18", width=0.125)
  x = jax.random.normal(jax.random.key(1), (2, 112, 112, 3))
  variables = jax.jit(lambda x: net.init(KEY, x, train=False))(x)
  features, updates = jax.jit(lambda v, x: net.apply(v, x, train=True, mutable=["batch_stats"]))(
    variables, x
  )
  assert features.shape == (2, 512)
  assert bool(jnp.all(jnp.isfinite(features)))
  old, new = variables["batch_stats"], updates["batch_stats"]
  assert jax.tree.structure(old) == jax.tree.structure(new)
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), old, new)))
  # Flax momentum 0.9 (PyTorch's 0.1): running = 0.9 * running + 0.1 * batch;
  # the stem's batch norm sees conv1(x) (padding 1 on each side, as PyTorch).
  stem = jax.lax.conv_general_dilated(
    x,
    variables["params"]["conv1"]["kernel"],
    window_strides=(1, 1),
    padding=((1, 1), (1, 1)),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )
  np.testing.assert_allclose(new["bn1"]["mean"], 0.1 * stem.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(
    new["bn1"]["var"], 0.9 + 0.1 * stem.var((0, 1, 2)), rtol=1e-4, atol=1e-6
  )
  # The embedding's batch norm has scale 1 and offset 0 at init: in training
  # its outputs have zero mean over the batch.
  np.testing.assert_allclose(features.mean(0), 0.0, atol=1e-4)


def test_sphereface20_forward_is_finite():
  net = models.face_net("sphereface20", width=0.125)
  x = jax.random.normal(jax.random.key(1), (2, 112, 96, 3))
  variables = jax.jit(lambda x: net.init(KEY, x))(x)
  features = jax.jit(lambda v, x: net.apply(v, x, train=True))(variables, x)
  assert features.shape == (2, 512)
  assert bool(jnp.all(jnp.isfinite(features)))


def test_batch_norm_synchronised_under_pmap():
  """With ``bn_axis_name`` every batch norm (blocks, downsample, embedding)
  averages its statistics over the devices: two devices holding two images
  each give the running statistics of the four images on one device."""
  if jax.local_device_count() < 2:
    pytest.skip("needs 2 devices (tests/conftest.py forces 4 CPU devices)")
  kwargs = {"layers": (1, 1, 1, 1), "width": 0.125, "feature_dim": 16}
  net = face_nets.IResNet(**kwargs)
  synced = face_nets.IResNet(**kwargs, bn_axis_name="batch")
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  variables = jax.jit(lambda x: net.init(KEY, x, train=False))(x)
  _, single = jax.jit(lambda v, x: net.apply(v, x, train=True, mutable=["batch_stats"]))(
    variables, x
  )
  replicated = jax.tree.map(lambda a: jnp.stack([a, a]), variables)
  _, split = jax.pmap(
    lambda v, x: synced.apply(v, x, train=True, mutable=["batch_stats"]),
    axis_name="batch",
    devices=jax.local_devices()[:2],
  )(replicated, x.reshape(2, 2, 32, 32, 3))
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b[0], rtol=1e-4, atol=1e-5),
    single["batch_stats"],
    split["batch_stats"],
  )


def test_trainer_builds_face_nets_by_name():
  """``--config.model=iresnet50``: `train.create_model` passes the width and
  the pmap axis to the backbone."""
  config = default.get_config()
  config.model, config.width = "iresnet50", 0.25
  model = train.create_model(config, num_classes=10, objective=objectives.get_objective(config))
  assert isinstance(model.backbone, face_nets.IResNet)
  assert tuple(model.backbone.layers) == (3, 4, 14, 3)
  assert (model.backbone.width, model.backbone.feature_dim) == (0.25, 512)
  assert model.backbone.bn_axis_name == sharding.DATA_AXIS
  config.model = "sphereface20"
  assert isinstance(
    train.create_model(config, num_classes=10, objective=objectives.get_objective(config)).backbone,
    face_nets.SphereFaceNet,
  )


@pytest.mark.parametrize("build", [models.conv_net, models.face_net])
def test_unknown_name_lists_the_names(build):
  with pytest.raises(ValueError, match="unknown architecture 'iresnet9'") as error:
    build("iresnet9")
  for name in face_nets.FACE_NETS:
    assert repr(name) in str(error.value)
  if build is models.conv_net:
    assert repr("lsoftmax_cifar10") in str(error.value)
