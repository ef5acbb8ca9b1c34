"""The class-sharded head example (`experiments/sharded_head.py`) on 8 devices;
run by tests/parallel_test.py in a subprocess with
``--xla_force_host_platform_device_count=8``.

Its training step at 1,000 classes lowers the loss and raises the training
accuracy in 30 steps, with W and its momentum split over "model".
"""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from experiments import sharded_head
from experiments.configs import sharded_head as configs

assert jax.device_count() == 8, "run through tests/parallel_test.py (8 CPU devices)"


def small_config(**overrides):
  config = configs.get_config()
  config.num_classes = 1000
  config.num_examples = 512  # 2 steps per pass: examples recur from step 3 on
  config.num_train_steps = 30
  config.log_every_steps = 1  # the first row: the untrained net on batch 0
  config.update(overrides)
  return config


@pytest.mark.parametrize("sample_rate", [None, 0.5])
def test_training_lowers_loss_and_raises_accuracy(sample_rate):
  history = sharded_head.train(small_config(sample_rate=sample_rate), print_fn=lambda _: None)
  first, last = history[0], history[-1]
  assert last["loss"] < 0.5 * first["loss"], history
  assert first["accuracy"] < 0.05 and last["accuracy"] > 0.9, history


def test_w_and_its_momentum_are_split_over_model():
  config = small_config(mesh_shape=(2, 4))
  trainer = sharded_head.make_train_step(config, sharded_head.make_mesh(config))
  params, opt_state = trainer.init(0)
  inputs, labels = trainer.batch(0)
  params, opt_state, _ = jax.block_until_ready(trainer.step(params, opt_state, inputs, labels, 0))
  momentum = opt_state[0].trace
  for w in (params["head"]["kernel"], momentum["head"]["kernel"]):
    assert w.sharding.spec == P(None, "model")
    assert w.addressable_shards[0].data.shape == (config.feature_dim, 1000 // 4)
  for name in ("Dense_0", "Dense_1"):
    assert params[name]["kernel"].sharding.is_fully_replicated
    assert momentum[name]["kernel"].sharding.is_fully_replicated
  assert inputs.sharding.spec == P("data")


def test_bad_config_values_are_refused():
  with pytest.raises(ValueError, match="mesh_shape"):
    sharded_head.make_mesh(small_config(mesh_shape=(4, 4)))
  mesh = sharded_head.make_mesh(small_config())
  with pytest.raises(ValueError, match="num_classes"):
    sharded_head.make_train_step(small_config(num_classes=1001), mesh)
  with pytest.raises(ValueError, match="sample_rate"):
    sharded_head.make_train_step(small_config(sample_rate=1.5), mesh)
  with pytest.raises(ValueError, match="unknown config.loss"):
    sharded_head.make_train_step(small_config(loss="cosfase"), mesh)
  with pytest.raises(ValueError, match="num_classifiers"):
    sharded_head.make_train_step(small_config(loss="em_softmax"), mesh)


def test_em_softmax_stacked_head_trains():
  config = small_config(loss="em_softmax", num_classifiers=2, num_train_steps=20)
  history = sharded_head.train(config, print_fn=lambda _: None)
  assert np.isfinite(history[-1]["loss"]) and history[-1]["loss"] < history[0]["loss"]


@pytest.mark.parametrize("loss", ["m_softmax", "hinge"])
def test_logit_losses_take_their_hyperparameters(loss):
  history = sharded_head.train(small_config(loss=loss, num_train_steps=5), print_fn=lambda _: None)
  assert np.isfinite(history[-1]["loss"]) and history[-1]["loss"] < history[0]["loss"]


def test_streamed_head_trains_as_the_materialised_one():
  # 1,000 classes, 250 per shard in blocks of 96 (the last one smaller).
  histories = [
    sharded_head.train(
      small_config(num_train_steps=6, class_chunk_size=chunk), print_fn=lambda _: None
    )
    for chunk in (0, 96)
  ]
  for key in ("loss", "accuracy"):
    np.testing.assert_allclose(
      [row[key] for row in histories[1]], [row[key] for row in histories[0]], rtol=1e-4
    )
