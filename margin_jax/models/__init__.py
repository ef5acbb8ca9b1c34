"""Flax Linen models of the papers' tables: a CNN backbone and a loss-side head."""

from margin_jax.models.cnn import ARCHITECTURES
from margin_jax.models.cnn import ConvNet
from margin_jax.models.cnn import PReLU
from margin_jax.models.cnn import caffe_pool
from margin_jax.models.cnn import conv_net
from margin_jax.models.heads import ClassifierHead
from margin_jax.models.heads import MarginNet
from margin_jax.models.heads import margin_net

__all__ = [
  "ARCHITECTURES",
  "ClassifierHead",
  "ConvNet",
  "MarginNet",
  "PReLU",
  "caffe_pool",
  "conv_net",
  "margin_net",
]
