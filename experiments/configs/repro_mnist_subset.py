"""Noisy Softmax Sec 5.4, MNIST with 1% or 10% of its training set.

Command: (one run; the campaign's records hold each run's exact command)
  python -m experiments.train --config experiments/configs/repro_mnist_subset.py \
      --workdir /tmp/mnist_subset --config.loss=noisy_softmax \
      --config.loss_kwargs.noisy_softmax.alpha=0.7071067811865476 \
      --config.train_fraction=0.01 --config.seed=0

Expected time: ~9 min per run on a 2-core CPU shared with one other training run
(0.17 s per step measured so).
Target: Noisy Softmax Sec 5.4 (full width): 600 images (1%) softmax 3.82%,
alpha^2 = 0.5 2.46%; 6,000 images (10%) 1.30% and 0.93% test error.
Protocol: Noisy Softmax Table 2's small-set MNIST net with its filters at 1/2,
its MNIST schedule's shape (SGD momentum 0.9, weight decay 0.001, lr 0.1 /10
at 3/4 of the run: 12k of 16k), batch 128, 3,000 steps (640 passes over the
1% subset, 64 over the 10%); class-balanced subsets; test error every 250 steps.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.model = "noisy_mnist_subset"
  config.width = 0.5
  config.weight_decay = 1e-3
  config.batch_size = 128
  config.num_train_steps = 3000
  config.lr_boundaries = (2250,)
  config.log_every_steps = 50
  config.eval_every_steps = 250
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 1
  return config
