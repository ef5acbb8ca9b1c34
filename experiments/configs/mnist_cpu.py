"""L-Softmax's MNIST protocol scaled down for a 2-core CPU (the demo's config).

Command:
  python -m experiments.train --config experiments/configs/mnist_cpu.py \
      --workdir /tmp/mnist_cpu --config.loss=l_softmax --config.margin=2

Expected time: ~1 min per loss on an idle 2-core CPU, seconds on a GPU.
Target: none from the papers (1/8 of the filters, 1/90 of the iterations at a
quarter of the batch); the demo compares losses at equal budget. The full
protocol's numbers (L-Softmax Table 2): softmax 0.40%, L-Softmax m=2 0.32%.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.width = 0.125  # 8 filters per conv layer instead of 64
  config.batch_size = 64
  config.num_train_steps = 200
  # L-Softmax's 12k/15k of 18k iterations, rescaled to 200.
  config.lr_boundaries = (133, 167)
  # The lambda schedule compressed by the same factor 90: lambda ~1 by ~100.
  config.lambda_gamma = 2.5e-5 * 90
  config.margin = 2
  config.log_every_steps = 50
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  return config
