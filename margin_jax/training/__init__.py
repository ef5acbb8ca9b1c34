"""Training: objectives by name, optax SGD, pmap steps, checkpoints, metrics."""

from margin_jax.training.checkpoint import ConfigMismatchError
from margin_jax.training.trained_run import TrainedRun
from margin_jax.training.trained_run import restore
from margin_jax.training.objectives import LOSSES
from margin_jax.training.objectives import Objective
from margin_jax.training.objectives import get_objective
from margin_jax.training.train import NonFiniteLossError
from margin_jax.training.train import TrainingInterrupted
from margin_jax.training.train import TrainState
from margin_jax.training.train import train_and_evaluate

__all__ = [
  "ConfigMismatchError",
  "LOSSES",
  "NonFiniteLossError",
  "TrainingInterrupted",
  "Objective",
  "TrainState",
  "TrainedRun",
  "get_objective",
  "restore",
  "train_and_evaluate",
]
