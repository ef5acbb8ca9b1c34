"""L-Softmax protocol, MNIST (Liu et al. 2016, Table 1 MNIST net, Sec 5.1).

Command:
  python -m experiments.train --config experiments/configs/lsoftmax_mnist.py \
      --workdir /tmp/lsoftmax_mnist --config.loss=l_softmax --config.loss_kwargs.l_softmax.margin=4

Expected time: ~10 h on a 2-core CPU, ~15 min on one modern GPU.
Target: L-Softmax Table 2 test error: softmax 0.40%, m=2 0.32%, m=3/4 0.31%.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()  # the default is exactly this protocol
  config.loss = "l_softmax"
  return config
