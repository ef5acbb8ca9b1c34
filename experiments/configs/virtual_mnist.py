"""Virtual Softmax protocol, MNIST (Chen et al. 2018, Table 1 MNIST net, Sec 6).

Table 1's MNIST net (three blocks of four 3x3 convs of 32 filters, 3x3/2 max
pooling, 64-d features) at t = 1 (the width of the MNIST column is not stated;
t = 1 is Table 1's); lr 0.1, /10 at 12k and 18k, stop at 20k; mean subtraction
(the paper follows Noisy Softmax's preprocessing). Batch 128 and weight decay
5e-4 are our assumptions (not stated), as for CIFAR-10.

Command:
  python -m experiments.train --config experiments/configs/virtual_mnist.py \
      --workdir /tmp/virtual_mnist [--config.loss=softmax]

Expected time: ~2 h on a 2-core CPU, ~10 min on one modern GPU.
Target: Virtual Softmax Table 3, MNIST test error: softmax 0.35%, Virtual
Softmax 0.28%.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.model = "virtual_mnist"
  config.loss = "virtual_softmax"
  config.batch_size = 128
  config.lr_boundaries = (12000, 18000)
  config.num_train_steps = 20000
  return config
