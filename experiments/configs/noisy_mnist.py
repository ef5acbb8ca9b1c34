"""Noisy Softmax protocol, MNIST (Chen et al. 2017, Table 2, Sec 6.1-6.2, 5.4).

Batch 256, weight decay 0.001, lr 0.1 /10 at 12k, stop at 16k, mean
subtraction. For Sec 5.4's small training sets use
--config.model=noisy_mnist_subset --config.train_fraction=0.01 (or 0.1)
--config.loss_kwargs.noisy_softmax.alpha=0.7071067811865476 (alpha^2 = 0.5).

Command:
  python -m experiments.train --config experiments/configs/noisy_mnist.py \
      --workdir /tmp/noisy_mnist

Expected time: ~8 h on a 2-core CPU, ~10 min on a GPU.
Target: Noisy Softmax Table 3: softmax 0.43%, alpha^2=0.1 0.33%; Sec 5.4:
1%/10% subsets softmax 3.82%/1.30%, alpha^2=0.5 2.46%/0.93%.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.model = "noisy_mnist"
  config.loss = "noisy_softmax"
  config.weight_decay = 1e-3
  config.lr_boundaries = (12000,)
  config.num_train_steps = 16000
  return config
