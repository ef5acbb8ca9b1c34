"""Kobayashi protocol, CIFAR-100 (Kobayashi 2019, Sec 4.1).

SGD batch 128, weight decay 1e-4, momentum 0.9, learning rate decreasing
log-linearly from 0.1 to 0.0001 over 50 epochs (19,531 iterations);
uniformity regulariser lambda = 0.3, symmetric divergence (eq 11). The paper's
13-layer network (Tarvainen & Valpola's) is not in margin_jax.models: this
uses L-Softmax's CIFAR-100 net instead, so compare losses, not numbers.
--config.loss_kwargs.uniformity.divergence=q_u|u_q for Table 1, --config.loss=lsr for Table 2,
--config.train_fraction / --config.label_noise for Table 3.

Command:
  python -m experiments.train --config experiments/configs/kobayashi_cifar100.py \
      --workdir /tmp/kobayashi_cifar100

Needs tfds' cifar100. Expected time: ~60 h on a 2-core CPU, ~1 h on a GPU.
Target: Kobayashi Table 2: softmax 28.62%, ours (lambda=0.3) 27.27%.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "cifar100"
  config.model = "lsoftmax_cifar100"
  config.preprocess = "cifar_plus"
  config.loss = "uniformity"
  config.batch_size = 128
  config.weight_decay = 1e-4
  config.lr_schedule = "log"
  config.final_learning_rate = 1e-4
  config.num_train_steps = 50 * 50000 // 128
  return config
