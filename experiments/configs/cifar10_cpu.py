"""L-Softmax's CIFAR-10+ protocol scaled down for a 2-core CPU.

Command:
  python -m experiments.train --config experiments/configs/cifar10_cpu.py \
      --workdir /tmp/cifar10_cpu --config.loss=l_softmax --config.loss_kwargs.l_softmax.margin=2

Expected time: ~30 min per loss on an idle 2-core CPU, ~1 min on a GPU.
Target: none from the papers (1/4 width, 1/9 of the iterations); compares
losses at equal budget on "CIFAR-10 (JPEG q75 copy)". Full protocol: see
lsoftmax_cifar10.py.
"""

from experiments.configs import lsoftmax_cifar10


def get_config():
  config = lsoftmax_cifar10.get_config()
  config.loss = "softmax"
  config.width = 0.25
  config.batch_size = 128
  config.num_train_steps = 2000
  config.lr_boundaries = (1333, 1667)
  config.loss_kwargs.l_softmax.margin = config.loss_kwargs.a_softmax.margin = 2
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  return config
