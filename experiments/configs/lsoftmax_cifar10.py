"""L-Softmax protocol, CIFAR-10+ (Liu et al. 2016, Table 1, Sec 5.1-5.2).

Command:
  python -m experiments.train --config experiments/configs/lsoftmax_cifar10.py \
      --workdir /tmp/lsoftmax_cifar10 --config.loss=l_softmax \
      --config.loss_kwargs.l_softmax.margin=4

Offline here the data is the JPEG copy ("cifar10_jpeg", report it as
"CIFAR-10 (JPEG q75 copy)"); use --config.dataset=cifar10 where tfds can
download. --config.preprocess=mean gives the unaugmented CIFAR10 column.

Expected time: ~20 h on a 2-core CPU, ~30 min on one modern GPU.
Target: L-Softmax Table 3, CIFAR10+: softmax 6.50%, m=4 5.92%
(CIFAR10 without augmentation: 9.05% / 7.58%).
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "cifar10_jpeg"
  config.model = "lsoftmax_cifar10"
  config.preprocess = "cifar_plus"
  config.loss = "l_softmax"
  return config
