"""L-Softmax's MNIST protocol (Table 1 MNIST net, Sec 5.1) on Fashion-MNIST.

Command:
  python -m experiments.train --config experiments/configs/lsoftmax_protocol_fmnist.py \
      --workdir /tmp/lsoftmax_fmnist --config.loss=l_softmax \
      --config.loss_kwargs.l_softmax.margin=4

Other losses as in the table of losses, e.g. --config.loss=noisy_softmax
--config.loss_kwargs.noisy_softmax.alpha=0.31622776601683794 (alpha^2 = 0.1)
or --config.loss=em_softmax --config.num_classifiers=2
--config.loss_kwargs.em_softmax.diversity=0.1.

Expected time: ~10 h per run on a 2-core CPU, ~15 min on one modern GPU.
Target: none of the papers reports Fashion-MNIST; the claim to compare with
is the ranking of the papers' MNIST tables (L-Softmax Table 2: softmax 0.40%,
m=2 0.32%, m=4 0.31% test error).
"""

from experiments.configs import default


def get_config():
  config = default.get_config()  # L-Softmax's MNIST protocol
  config.dataset = "fashion_mnist"
  return config
