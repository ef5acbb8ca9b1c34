"""Shapes and parameter counts of the papers' CNNs (margin_jax.models)."""

import jax
import jax.numpy as jnp
import pytest

from margin_jax import models


def conv(k, cin, cout):
  """3x3/5x5 conv without bias + batch norm (scale, offset) + PReLU slopes."""
  return k * k * cin * cout + 2 * cout + cout


def stage(n, k, cin, cout):
  return conv(k, cin, cout) + (n - 1) * conv(k, cout, cout)


def fc(flat, d, classes):
  """Feature layer (no bias) + batch norm + PReLU, then the classifier W."""
  return flat * d + 3 * d + d * classes


def count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


# Expected counts written out from the tables (not from models.ARCHITECTURES).
# Spatial sizes follow Caffe's ceil-mode pooling: 2x2/2 takes 28->14->7->4 and
# 32->16->8->4; 3x3/2 takes 28->14->7->3 and 32->16->8->4.
CASES = [
  # L-Softmax Table 1, MNIST: Conv0 [3x3,64]x1 + Conv1..3 [3x3,64]x3, FC 256.
  (
    "lsoftmax_mnist",
    28,
    1,
    10,
    stage(4, 3, 1, 64) + stage(3, 3, 64, 64) + stage(3, 3, 64, 64) + fc(4 * 4 * 64, 256, 10),
  ),
  # L-Softmax Table 1, Fig. 2 net: [5x5,32/64/128]x2, FC 2.
  (
    "lsoftmax_mnist_2d",
    28,
    1,
    10,
    stage(2, 5, 1, 32) + stage(2, 5, 32, 64) + stage(2, 5, 64, 128) + fc(4 * 4 * 128, 2, 10),
  ),
  # L-Softmax Table 1, CIFAR10: Conv0 64x1, 64x4, 96x4, 128x4, FC 256.
  (
    "lsoftmax_cifar10",
    32,
    3,
    10,
    stage(5, 3, 3, 64) + stage(4, 3, 64, 96) + stage(4, 3, 96, 128) + fc(4 * 4 * 128, 256, 10),
  ),
  # L-Softmax Table 1, CIFAR100: Conv0 96x1, 96x4, 192x4, 384x4, FC 512.
  (
    "lsoftmax_cifar100",
    32,
    3,
    100,
    stage(5, 3, 3, 96) + stage(4, 3, 96, 192) + stage(4, 3, 192, 384) + fc(4 * 4 * 384, 512, 100),
  ),
  # Noisy Softmax Table 2, MNIST Sec 5.4: 40x2, 60x1, 60x1, FC 100.
  (
    "noisy_mnist_subset",
    28,
    1,
    10,
    stage(2, 3, 1, 40) + stage(1, 3, 40, 60) + stage(1, 3, 60, 60) + fc(4 * 4 * 60, 100, 10),
  ),
  # Noisy Softmax Table 2, CIFAR100 on 30x30 crops: 30->15->8->4.
  (
    "noisy_cifar100",
    30,
    3,
    100,
    stage(4, 3, 3, 96) + stage(4, 3, 96, 192) + stage(4, 3, 192, 384) + fc(4 * 4 * 384, 512, 100),
  ),
  # Virtual Softmax Table 1, MNIST t=1: [3x3,32]x4 x3 stages, FC 64.
  (
    "virtual_mnist",
    28,
    1,
    10,
    stage(4, 3, 1, 32) + stage(4, 3, 32, 32) + stage(4, 3, 32, 32) + fc(3 * 3 * 32, 64, 10),
  ),
  # Virtual Softmax Table 1, 3-D Fig. 2 net.
  (
    "virtual_mnist_3d",
    28,
    1,
    10,
    stage(2, 5, 1, 32) + stage(2, 5, 32, 64) + stage(2, 5, 64, 128) + fc(3 * 3 * 128, 3, 10),
  ),
]


@pytest.mark.parametrize("name,size,channels,classes,expected", CASES)
def test_parameter_count_matches_table(name, size, channels, classes, expected):
  model = models.margin_net(name, num_classes=classes)
  x = jnp.zeros((2, size, size, channels))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  assert count(variables["params"]) == expected


def test_virtual_width_factor_t():
  """Virtual Softmax Table 1, CIFAR10 with t = 2 (Table 2's ablation)."""
  t = 2
  expected = (
    stage(5, 3, 3, 32 * t)
    + stage(4, 3, 32 * t, 64 * t)
    + stage(4, 3, 64 * t, 128 * t)
    + fc(4 * 4 * 128 * t, 64, 10)
  )
  model = models.margin_net("virtual_cifar10", num_classes=10, width=t)
  variables = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  )
  assert count(variables["params"]) == expected


def test_outputs_and_em_head():
  model = models.margin_net(
    "noisy_mnist_subset", num_classes=10, width=0.125, num_classifiers=3, use_bias=True
  )
  x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)
  out, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
    variables, x
  )
  assert out["features"].shape == (4, 100)
  assert out["weights"].shape == (3, 100, 10)
  assert out["bias"].shape == (10,)
  stage_filters = variables["params"]["backbone"]["Conv_0"]["kernel"].shape
  assert stage_filters == (3, 3, 1, 5)  # 40 filters x 1/8


def test_center_update_is_wen_eq4():
  """c_j <- c_j - alpha sum_i [y_i=j](c_j - x_i) / (1 + n_j), centers state."""
  head = models.ClassifierHead(num_classes=3, center_alpha=0.5)
  x = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
  y = jnp.array([0, 0, 2])
  variables = head.init(jax.random.key(0), x, y, train=True)
  assert "centers" not in variables["params"]
  out, new = head.apply(variables, x, y, train=True, mutable=["batch_stats"])
  assert jnp.all(out["centers"] == 0)
  expected = jnp.array([[0.5 * 4 / 3, 0.5 * 6 / 3], [0, 0], [0.5 * 5 / 2, 0.5 * 6 / 2]])
  assert jnp.allclose(new["batch_stats"]["centers"], expected)


def test_caffe_pool_sizes():
  x = jnp.arange(49.0).reshape(1, 7, 7, 1)
  assert models.caffe_pool(x, kind="max", window=2, stride=2).shape[1] == 4
  assert models.caffe_pool(x, kind="max", window=3, stride=2).shape[1] == 3
  avg = models.caffe_pool(x, kind="avg", window=2, stride=2)
  assert avg[0, 3, 3, 0] == 48.0  # the lone in-image pixel, not 48/4


def test_mlp_backbone_of_the_many_class_task():
  model = models.margin_net("mlp", num_classes=50, width=0.5, feature_dim=16)
  x = jnp.ones((2, 8, 8, 1))
  variables = model.init(jax.random.key(0), x, train=False)
  out = model.apply(variables, x, train=False)
  assert out["features"].shape == (2, 16) and out["weights"].shape == (16, 50)
  assert variables["params"]["backbone"]["Dense_0"]["kernel"].shape == (64, 128)  # 256 x 1/2
  with pytest.raises(ValueError, match="'mlp'"):
    models.conv_net("mpl")
