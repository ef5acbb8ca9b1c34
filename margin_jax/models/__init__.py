"""Flax models of the papers' tables: a CNN backbone and a loss-side head;
face networks (insightface's IResNet, SphereFace-20) selectable by the same names.

The heads work in any model: `ClassifierHead` (Linen) and
`margin_jax.models.nnx_heads.ClassifierHead` (NNX), with `test_logits` and
`embeddings` for test time.
"""

from margin_jax.models.cnn import ARCHITECTURES
from margin_jax.models.cnn import ConvNet
from margin_jax.models.cnn import MLP
from margin_jax.models.cnn import PReLU
from margin_jax.models.cnn import caffe_pool
from margin_jax.models.cnn import conv_net
from margin_jax.models.face_nets import FACE_NETS
from margin_jax.models.face_nets import IResNet
from margin_jax.models.face_nets import SphereFaceNet
from margin_jax.models.face_nets import face_net
from margin_jax.models.heads import ClassifierHead
from margin_jax.models.heads import MarginNet
from margin_jax.models.heads import embeddings
from margin_jax.models.heads import margin_net
from margin_jax.models.heads import test_logits

__all__ = [
  "ARCHITECTURES",
  "ClassifierHead",
  "ConvNet",
  "FACE_NETS",
  "IResNet",
  "MLP",
  "MarginNet",
  "PReLU",
  "SphereFaceNet",
  "caffe_pool",
  "conv_net",
  "embeddings",
  "face_net",
  "margin_net",
  "test_logits",
]
