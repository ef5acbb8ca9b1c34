"""Table 1 (issue 5) at the paper protocol: L-Softmax's CIFAR-10 net.

Command:
  python -m experiments.train --config experiments/configs/paper_table1_cifar10.py \
      --workdir /tmp/paper_t1_cifar --config.loss=l_softmax --config.margin=4

Use --config.dataset=cifar10 where tfds can download the exact CIFAR-10; the
default here is the offline "cifar10_jpeg" copy (report it as "CIFAR-10 (JPEG
q75 copy)": not comparable to the papers' numbers).

Expected time: ~20 h per run on a 2-core CPU, ~30 min on one modern GPU.
Target: L-Softmax Table 3, CIFAR-10+ (augmented): softmax 6.98%, L-Softmax
m=4 5.92% test error; EM-Softmax Table 1 CIFAR10+: 4.98%.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "cifar10_jpeg"
  config.model = "lsoftmax_cifar10"
  config.preprocess = "cifar_plus"
  config.batch_size = 256
  config.lr_boundaries = (12000, 15000)
  config.num_train_steps = 18000
  return config
