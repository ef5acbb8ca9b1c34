"""Table 1 (issue 5) at the paper protocol: L-Softmax's MNIST net on Fashion-MNIST.

Command:
  python -m experiments.train --config experiments/configs/paper_table1_fmnist.py \
      --workdir /tmp/paper_t1_fmnist --config.loss=l_softmax --config.margin=4

Loss overrides per row as in experiments/protocols.py MAIN_LOSSES, e.g.
  --config.loss=noisy_softmax --config.alpha_squared=0.1
  --config.loss=em_softmax --config.num_classifiers=2 --config.diversity=0.1

Expected time: ~10 h per run on a 2-core CPU, ~15 min on one modern GPU.
Target: none of the papers reports Fashion-MNIST; the claim is the ranking of
L-Softmax Table 2 / EM-Softmax Table 1 (MNIST: softmax 0.40%, L-Softmax m=4
0.31%, EM-Softmax 0.27% test error). Not run in this repository's session (no
GPU was available).
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "fashion_mnist"
  config.model = "lsoftmax_mnist"
  config.preprocess = "mean"
  # L-Softmax Sec 5.1: batch 256, lr 0.1 /10 at 12k and 15k, stop at 18k.
  config.batch_size = 256
  config.lr_boundaries = (12000, 15000)
  config.num_train_steps = 18000
  return config
