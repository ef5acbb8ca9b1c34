"""A trained run of `train_and_evaluate`, restored from its work directory.

``restore(workdir)`` rebuilds the model from the configuration stored with the
checkpoints and loads the latest one; the result classifies, embeds and
scores images in evaluation mode (batch norm's running statistics, the test
view of the preprocessing).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from margin_jax import models
from margin_jax.data import transforms
from margin_jax.training import checkpoint
from margin_jax.training import objectives
from margin_jax.training import train
from margin_jax.training import verification


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A restored run: its config, model, variables and training-set pixel mean.

  Attributes:
    config: the run's ``ConfigDict`` (run-control fields at their defaults).
    model: the :class:`margin_jax.models.MarginNet`.
    variables: ``{"params", "batch_stats"}`` of the latest checkpoint.
    dataset: the run's data as it trained on it (`margin_jax.data.load_dataset`;
      ``{"num_classes"}`` for face data, read from ``config.train_data``).
    mean: the per-pixel training mean the preprocessing subtracts (or None).
    step: the checkpoint's step.
  """

  config: Any
  model: models.MarginNet
  variables: dict
  dataset: dict
  mean: np.ndarray
  step: int

  @functools.cached_property
  def _apply(self):
    preprocess = functools.partial(
      transforms.preprocess, recipe=self.config.preprocess, mean=self.mean, train=False
    )
    return jax.jit(lambda v, x: self.model.apply(v, preprocess(None, x), train=False))

  def outputs(self, images, *, batch_size: int = 1000) -> dict:
    """The model's outputs for uint8 images ``[N, H, W, C]``: ``features``
    ``[N, d]`` and the head's ``weights`` (and ``bias``)."""
    parts = [
      self._apply(self.variables, jnp.asarray(images[i : i + batch_size]))
      for i in range(0, len(images), batch_size)
    ]
    return {**parts[0], "features": jnp.concatenate([p["features"] for p in parts])}

  def embed(self, images, *, batch_size: int = 1000, flip: bool = False) -> jax.Array:
    """Unit-length embeddings ``[N, d]`` (compare them by cosine similarity).

    ``flip``: the embedding of an image is the sum of the features of the
    image and of its horizontal mirror, then L2-normalised (insightface's
    face-verification evaluation, `margin_jax.training.verification`)."""
    if flip:
      return self._flip_embed(self.variables, images)
    return models.embeddings(self.outputs(images, batch_size=batch_size)["features"])

  @functools.cached_property
  def _flip_embed(self):
    preprocess = functools.partial(
      transforms.preprocess, recipe=self.config.preprocess, mean=self.mean
    )
    return verification.embedder(self.model, preprocess, crop_to=train.input_crop(self.config))

  def logits(self, images, *, batch_size: int = 1000) -> jax.Array:
    """The logits ``[N, C]`` the run's loss classifies with."""
    return models.test_logits(self.outputs(images, batch_size=batch_size), self.config.loss)


def restore(workdir: str, *, data_dir: str | None = None) -> TrainedRun:
  """Restores the latest checkpoint of ``train_and_evaluate(config, workdir)``.

  The training set is read once, as the run read it (class-balanced subset
  and label pollution included), for the pixel mean that preprocessing
  subtracts; ``data_dir`` overrides the tfds data directory.

  Raises:
    FileNotFoundError: ``workdir`` holds no checkpoint.
  """
  step, saved = checkpoint.saved_config(f"{workdir}/checkpoints")
  config = ml_collections.ConfigDict(saved)
  # Run control is not part of a checkpoint's identity; the run's length is
  # its last checkpoint's step (a schedule of the loss, e.g. L-Softmax's
  # lambda, is built from it).
  config.num_train_steps = step
  config.data_dir = data_dir or ""
  config.keep_checkpoints = 1
  config.mesh_shape = ()  # inference runs unsharded, whatever mesh trained the run
  data = train.training_data(config)
  objective = objectives.get_objective(config)
  model = train.create_model(config, data.num_classes, objective=objective)
  image_shape = jax.eval_shape(
    lambda: transforms.preprocess(
      None, data.sample, recipe=config.preprocess, mean=data.mean, train=False
    )
  ).shape[1:]
  state, _ = train.create_train_state(
    config, model, image_shape, jax.random.key(0), objective=objective
  )
  checkpointer = checkpoint.Checkpointer(f"{workdir}/checkpoints", config)
  try:
    state = checkpointer.restore(state)
  finally:
    checkpointer.close()
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  dataset = data.arrays or {"num_classes": data.num_classes}
  return TrainedRun(config, model, variables, dataset, data.mean, int(state.step))
