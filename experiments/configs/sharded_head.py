"""Many classes: an MLP with a class-sharded CosFace head over 100,000 synthetic classes, 8 devices.

Command:
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m experiments.train \
      --config experiments/configs/sharded_head.py --workdir /tmp/many_classes \
      [--config.loss=arcface] [--config.class_chunk_size=8192] [--config.mesh_shape="(1, 8)"]

The trainer's mesh path: the classifier W [d, C] and its momentum split over
the mesh's "model" axis, the batch over "data" (the XLA flag makes 8 CPU
devices; on 8 GPUs leave it out). The data are `margin_jax.data.many_classes`:
class c's mean is a Gaussian vector drawn from (seed, c), an example its
class mean plus noise, so 10^7 classes cost no table.

Expected time: ~2 min on a 2-core CPU (8 simulated devices, mostly the 10^5-class head).
Target: the loss falls and the training accuracy (logged before each update,
on its batch) rises far above chance (1e-5) once examples recur (32 steps a
pass); measured (docs/guides/millions_of_classes.md): loss 31.3 at step 30 ->
0.55 at 300, accuracy 0.99, test error 1.6%.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "many_classes"
  config.num_classes = 100_000
  config.num_examples = 8_192  # 32 steps of 256 per pass: examples recur from step 33 on
  config.num_test_examples = 1_024  # of the classes the training set has, fresh noise
  config.noise_std = 0.5
  config.preprocess = "mean"
  # The MLP: 8x8 input -> 256 (ReLU) -> the feature_dim-d embedding x; the head's
  # W [feature_dim, num_classes] is split over the mesh's "model" axis.
  config.model = "mlp"
  config.feature_dim = 128
  config.mesh_shape = (2, 4)  # (data, model): batch split in 2, classes in 4
  config.loss = "cosface"
  config.loss_kwargs.cosface.scale = 30.0
  config.loss_kwargs.cosface.margin = 0.35
  config.batch_size = 256
  config.eval_batch_size = 256
  config.learning_rate = 0.02
  config.lr_boundaries = ()  # a constant learning rate
  config.momentum = 0.9
  config.weight_decay = 0.0
  config.num_train_steps = 300
  config.log_every_steps = 30
  config.eval_every_steps = 300
  config.checkpoint_every_steps = 300
  return config
