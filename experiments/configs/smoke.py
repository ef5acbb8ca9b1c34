"""Tiny smoke run for tests: a 1/8-width Noisy Softmax Sec 5.4 MNIST net.

Command:
  python -m experiments.train --config experiments/configs/smoke.py \
      --workdir /tmp/smoke

Expected time: ~20 s on a 2-core CPU (mostly compilation).
Target: none (it checks that training runs end to end).
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.model = "noisy_mnist_subset"
  config.width = 1 / 8
  config.feature_dim = 16
  config.batch_size = 32
  config.eval_batch_size = 64
  config.lr_boundaries = (4,)
  config.num_train_steps = 6
  config.log_every_steps = 1
  config.eval_every_steps = 3
  config.checkpoint_every_steps = 3
  config.keep_checkpoints = 2
  return config
