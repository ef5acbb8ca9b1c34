"""Virtual Softmax protocol, CIFAR-10 (Chen et al. 2018, Table 1, Sec 6).

lr 0.1, /10 at 12k and 18k, stop at 20k; width factor t = 1..4 (Table 2).
Batch 128 and weight decay 5e-4 are our assumptions (not stated).

Command:
  python -m experiments.train --config experiments/configs/virtual_cifar10.py \
      --workdir /tmp/virtual_cifar10 --config.width=4

Offline data: "CIFAR-10 (JPEG q75 copy)". Expected time: ~30 h on a 2-core
CPU at t=4, ~40 min on a GPU.
Target: Virtual Softmax Table 2: t=1 softmax 9.84%, virtual 8.95%; t=4
7.15% / 6.68% (Table 4).
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "cifar10_jpeg"
  config.model = "virtual_cifar10"
  config.width = 4.0
  config.loss = "virtual_softmax"
  config.batch_size = 128
  config.lr_boundaries = (12000, 18000)
  config.num_train_steps = 20000
  return config
