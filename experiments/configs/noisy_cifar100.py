"""Noisy Softmax protocol, CIFAR-100 (Chen et al. 2017, Table 2, Sec 6.1/6.3).

Batch 256, lr 0.1 divided by 10 at 12k, stop at 16k; random 30x30 crops
(centre crop at test); alpha^2 = 0.1. The paper states weight decay only for
MNIST (0.001); 5e-4 here (L-Softmax's) is our assumption.

Command:
  python -m experiments.train --config experiments/configs/noisy_cifar100.py \
      --workdir /tmp/noisy_cifar100 [--config.loss_kwargs.noisy_softmax.noise=amplitude|free|...]

Needs tfds' cifar100. Expected time: ~50 h on a 2-core CPU, ~1 h on a GPU.
Target: Noisy Softmax Table 4, CIFAR100+: softmax 31.77%, alpha^2=0.1 28.48%
(Table 1 ablation: free 31.04%, amplitude 29.97% at alpha^2=0.1).
"""

import math

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "cifar100"
  config.model = "noisy_cifar100"
  config.preprocess = "noisy_crop"
  config.loss = "noisy_softmax"
  config.loss_kwargs.noisy_softmax.alpha = math.sqrt(0.1)  # alpha^2 = 0.1
  config.lr_boundaries = (12000,)
  config.num_train_steps = 16000
  return config
