"""Virtual Softmax protocol, CIFAR-100(+) (Chen et al. 2018, Table 1, Sec 6).

lr 0.1, /10 at 20k and 27k, stop at 30k; width factor t (--config.width,
Table 2 uses t = 2, 3, 4, 7). The paper fills the GPU with "different batch
sizes" and does not state weight decay: batch 128 and 5e-4 are our
assumptions. Preprocessing follows Noisy Softmax (mean); "+" = cifar_plus.

Command:
  python -m experiments.train --config experiments/configs/virtual_cifar100.py \
      --workdir /tmp/virtual_cifar100 --config.width=7

Needs tfds' cifar100. Expected time: ~100 h on a 2-core CPU at t=7, ~2 h on
a GPU.
Target: Virtual Softmax Table 4 (t=7): CIFAR100 softmax 27.7%, virtual
26.02%; CIFAR100+ 25.52% / 24.01%.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "cifar100"
  config.model = "virtual_cifar100"
  config.width = 7.0
  config.loss = "virtual_softmax"
  config.batch_size = 128
  config.lr_boundaries = (20000, 27000)
  config.num_train_steps = 30000
  return config
