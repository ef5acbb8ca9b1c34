"""Datasets through tensorflow-datasets, epoch iterators and the papers' preprocessing.

Preparation from raw files is `margin_jax.data.prepare.build`, or the command
``python -m margin_jax.data.prepare``; missing files are downloaded by
`margin_jax.data.download`. The papers' preprocessing recipes are
`transforms.preprocess`; the other public functions of ``transforms`` are
re-exported.
"""

from margin_jax.data.degrade import class_balanced_subset
from margin_jax.data.degrade import pollute_labels
from margin_jax.data.load import load_arrays
from margin_jax.data.load import load_dataset
from margin_jax.data.pipeline import endless_train_batches
from margin_jax.data.pipeline import eval_batches
from margin_jax.data.pipeline import source_train_batches
from margin_jax.data.pipeline import train_batches
from margin_jax.data.synthetic import many_classes
from margin_jax.data.transforms import center_crop
from margin_jax.data.transforms import cifar_augment
from margin_jax.data.transforms import pixel_mean
from margin_jax.data.transforms import random_crop
from margin_jax.data.transforms import RECIPES
from margin_jax.data.transforms import subtract_mean
from margin_jax.data.transforms import to_float
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
  "load_dataset",
  "many_classes",
  "pixel_mean",
  "source_train_batches",
  "pollute_labels",
  "random_crop",
  "subtract_mean",
  "to_float",
  "train_batches",
)
