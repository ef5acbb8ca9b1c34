"""An MLP with a class-sharded CosFace head, 100,000 synthetic classes, 8 CPU devices.

Command:
  .venv/bin/python -m experiments.sharded_head --config experiments/configs/sharded_head.py \
      [--config.loss=arcface] [--config.sample_rate=0.1] [--config.mesh_shape="(1, 8)"]

Expected time: ~2 min on a 2-core CPU (8 simulated devices, mostly the 10^5-class head).
Target: the loss falls and the training accuracy rises far above chance (1e-5); measured
(docs/guides/millions_of_classes.md): loss 25.7 over steps 1-30 -> 0.15 over 271-300, training
accuracy 0.000 at step 30 (first pass) -> 1.000 from step 150.

Builds on default.py for the loss fields (``loss``, ``loss_kwargs``, ``num_classifiers``),
``mesh_shape``, ``learning_rate``, ``momentum``, ``batch_size``, ``num_train_steps``,
``log_every_steps`` and ``seed``; its dataset, model, schedule and weight-decay fields are
not read by `experiments/sharded_head.py`. L-/A-Softmax anneal lambda over the run, as in training.
"""

from ml_collections.config_dict import placeholder

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.loss = "cosface"
  config.loss_kwargs.cosface.scale = 30.0
  config.loss_kwargs.cosface.margin = 0.35
  config.mesh_shape = (2, 4)  # (data, model): batch split in 2, classes in 4
  # Synthetic class-conditional data: class c's mean is a fixed Gaussian vector
  # drawn from fold_in(key, c); an example is its class mean + noise. The
  # training set is num_examples fixed examples, cycled in order.
  config.num_classes = 100_000
  config.input_dim = 64
  config.noise_std = 0.5
  config.num_examples = 8_192  # 32 steps of 256 per pass
  # The MLP: input -> hidden (ReLU) -> the feature_dim-d embedding x; the head's
  # W [feature_dim, num_classes] is split over the mesh's "model" axis.
  config.hidden_dim = 256
  config.feature_dim = 128
  # PartialFC negative-class sampling (parallel.shard_classes); None = full softmax.
  config.sample_rate = placeholder(float)
  # Stream the head over blocks of this many local classes (losses.chunked): no
  # [B, C/n] logits. 0 = the materialised loss.
  config.class_chunk_size = 0
  config.batch_size = 256
  # At 0.1 (16,384 examples) training accuracy jumped 0.23 -> 0.00 -> 0.52 at steps 180-240.
  config.learning_rate = 0.02
  config.momentum = 0.9
  config.num_train_steps = 300
  config.log_every_steps = 30
  return config
