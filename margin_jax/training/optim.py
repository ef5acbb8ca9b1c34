"""Optimiser and learning-rate schedules by iteration, as the papers give them."""

from __future__ import annotations

import jax
import optax


def learning_rate_schedule(config) -> optax.Schedule:
  """The learning rate by iteration.

  ``"piecewise"``: ``learning_rate`` multiplied by ``lr_decay`` at each step of
  ``lr_boundaries`` (L-Softmax Sec 5.1: 0.1, /10 at 12k and 15k, stop at 18k;
  Noisy Softmax Sec 6.1: 0.1, /10 at 12k, stop at 16k; Virtual Softmax Sec 6:
  /10 at 12k, 18k (20k, 27k for CIFAR-100); EM-Softmax Sec 4.3: 8k, 14k).
  ``"log"``: decreasing log-linearly from ``learning_rate`` to
  ``final_learning_rate`` over ``num_train_steps`` (Kobayashi Sec 4: 0.1 to
  0.0001 over 50 epochs).
  """
  if config.lr_schedule == "piecewise":
    return optax.piecewise_constant_schedule(
      config.learning_rate, {int(b): config.lr_decay for b in config.lr_boundaries}
    )
  if config.lr_schedule == "log":
    return optax.exponential_decay(
      config.learning_rate,
      transition_steps=config.num_train_steps,
      decay_rate=config.final_learning_rate / config.learning_rate,
    )
  raise ValueError(f"config.lr_schedule must be 'piecewise' or 'log', got {config.lr_schedule!r}")


def create_optimizer(config, learning_rate: optax.Schedule) -> optax.GradientTransformation:
  """SGD with momentum at ``learning_rate`` (`learning_rate_schedule`) and L2
  weight decay on kernels and class weights.

  The decay ``weight_decay * w`` is added to the gradient (Caffe's
  convention, which all five papers use) for every parameter with two or more
  dimensions: convolution and dense kernels and the classifier W. Biases,
  batch-norm scales/offsets and PReLU slopes are not decayed (He et al. 2015
  leave PReLU slopes undecayed).
  """
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  return optax.chain(
    optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
    optax.sgd(learning_rate, momentum=config.momentum),
  )
