"""Datasets through tensorflow-datasets, epoch iterators and the papers' preprocessing.

Offline preparation is `margin_jax.data.offline.prepare`, or the command
``python -m margin_jax.data.prepare``. The submodule ``preprocess`` keeps its
name here (the recipes are `preprocess.preprocess`); its other public
functions are re-exported.
"""

from margin_jax.data.degrade import class_balanced_subset
from margin_jax.data.degrade import pollute_labels
from margin_jax.data.load import load_arrays
from margin_jax.data.pipeline import endless_train_batches
from margin_jax.data.pipeline import eval_batches
from margin_jax.data.pipeline import train_batches
from margin_jax.data.preprocess import center_crop
from margin_jax.data.preprocess import cifar_augment
from margin_jax.data.preprocess import pixel_mean
from margin_jax.data.preprocess import random_crop
from margin_jax.data.preprocess import RECIPES
from margin_jax.data.preprocess import subtract_mean
from margin_jax.data.preprocess import to_float
from margin_jax.data.registry import DATASETS
from margin_jax.data.registry import DatasetSpec
from margin_jax.data.registry import get_spec

__all__ = (
  "DATASETS",
  "DatasetSpec",
  "RECIPES",
  "center_crop",
  "cifar_augment",
  "class_balanced_subset",
  "endless_train_batches",
  "eval_batches",
  "get_spec",
  "load_arrays",
  "pixel_mean",
  "pollute_labels",
  "random_crop",
  "subtract_mean",
  "to_float",
  "train_batches",
)
