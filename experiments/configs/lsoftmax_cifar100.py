"""L-Softmax protocol, CIFAR-100 (Liu et al. 2016, Table 1, Sec 5.1).

Command:
  python -m experiments.train --config experiments/configs/lsoftmax_cifar100.py \
      --workdir /tmp/lsoftmax_cifar100 --config.loss=l_softmax \
      --config.loss_kwargs.l_softmax.margin=4

Needs tfds' cifar100 (no offline copy here).
Expected time: ~60 h on a 2-core CPU, ~1 h on one modern GPU.
Target: L-Softmax Table 4: softmax 32.74%, m=4 29.53% test error.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "cifar100"
  config.model = "lsoftmax_cifar100"
  config.loss = "l_softmax"
  return config
