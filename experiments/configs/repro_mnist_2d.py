"""2-D features on MNIST (L-Softmax Fig 2, Virtual Softmax Fig 2).

Command: (one run; the campaign's records hold each run's exact command)
  python -m experiments.train --config experiments/configs/repro_mnist_2d.py \
      --workdir /tmp/mnist_2d --config.loss=l_softmax --config.loss_kwargs.l_softmax.margin=2 \
      --config.seed=0

Expected time: ~5 min per run on an idle 2-core CPU.
Target: the 2-D softmax baseline at <= 3% MNIST test error; Virtual Softmax
Sec 5.3 (2-D, full width): softmax 1.09%, Virtual Softmax 0.80% test error.
L-Softmax Fig 2 prints its test accuracies only inside the figure.
Protocol: L-Softmax Table 1's 2-D net (its filters at 1/4), SGD momentum 0.9,
weight decay 5e-4, lr 0.1 /10 at 2/3 and 5/6 of the run (the shape of
L-Softmax's 12k/15k of 18k), batch 128, 6 epochs; test error every epoch.
"""

from experiments.configs import default

EPOCH = 60_000 // 128


def get_config():
  config = default.get_config()
  config.model = "lsoftmax_mnist_2d"
  config.width = 0.25
  config.batch_size = 128
  config.num_train_steps = 6 * EPOCH
  config.lr_boundaries = (4 * EPOCH, 5 * EPOCH)
  config.log_every_steps = 50
  config.eval_every_steps = EPOCH
  config.checkpoint_every_steps = EPOCH
  config.keep_checkpoints = 1
  return config
