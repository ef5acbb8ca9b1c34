"""L-Softmax's MNIST protocol scaled down for a 2-core CPU (the demo's config).

Command:
  python -m experiments.train --config experiments/configs/mnist_cpu.py \
      --workdir /tmp/mnist_cpu --config.loss=l_softmax --config.margin=2

Expected time: ~1-2 min on a 2-core CPU per loss, seconds on a GPU.
Target: none from the papers (1/4 of the filters, 1/30 of the iterations);
the demo compares losses at equal budget. L-Softmax Table 2 (full
protocol): softmax 0.40%, L-Softmax m=2 0.32%.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.width = 0.25  # 16 filters per conv layer instead of 64
  config.batch_size = 128
  config.num_train_steps = 600
  # L-Softmax's 12k/15k of 18k, rescaled to 600 steps.
  config.lr_boundaries = (400, 500)
  # lambda reaches ~1 by step 300 (the paper's schedule does so at ~9k).
  config.lambda_gamma = 2.5e-5 * 30
  config.margin = 2
  config.log_every_steps = 100
  config.eval_every_steps = 600
  config.checkpoint_every_steps = 600
  return config
