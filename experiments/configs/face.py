"""The papers' face protocol: CASIA-WebFace in, LFW-style verification out.

Command: (a GPU machine that holds the data)
  python -m experiments.train --config experiments/configs/face.py --workdir DIR \
      --config.train_data=PATH/train.rec \
      --config.val_pairs=PATH/lfw.bin,PATH/cfp_fp.bin,PATH/agedb_30.bin

Expected time: not measured (no GPU here); on this 2-core CPU only the tests'
small runs (`--config.width=0.0625`, a few steps) ran.
Target: L-Softmax Table 5 (CASIA-WebFace -> LFW: softmax 96.53%, L-Softmax
m = 4 98.71%), Noisy Softmax's face table (LFW 98.83% -> 99.18%), Virtual
Softmax Table 6 (LFW 99.10% with softmax, higher with Virtual Softmax).
Protocol: CASIA-WebFace (10,575 identities, ~0.49 M aligned 112x112 faces;
`train_data`: its folder or insightface's pack), IResNet-50 (or
`--config.model=sphereface20`, the 112x96 crop), batch 512 over all devices,
SGD momentum 0.9, weight decay 5e-4, lr 0.1 divided by 10 twice, at 16 and
24 of 28 epochs (the 16k/24k/28k proportions of SphereFace's released
schedule; L-Softmax Sec. 5.1 trains "about 30" epochs with the lr divided
by 10 twice), a random horizontal flip, faces scaled to [-1, 1]; the
verification sets scored every 2,000 steps, each image embedded with its
mirror. Any loss of the table by name (`--config.loss=arcface`), the
streamed and sharded heads through `class_chunk_size` and `mesh_shape`.
"""

from experiments.configs import default
from margin_jax.training import objectives

EPOCH = 490_623 // 512  # CASIA-WebFace's images per step of 512


def get_config():
  config = default.get_config()
  # Face data (margin_jax.data.faces), in place of `dataset`: a folder of
  # identity folders or an insightface .rec pack (required), and the
  # verification sets (.bin files or LFW's pairs.txt, comma-separated)
  # scored every eval_every_steps.
  config.train_data = ""
  config.val_pairs = ""
  config.model = "iresnet50"
  # The losses' typical values (the face margins' s = 64 for 10^4 identities,
  # where default.py has s = 16 for tens of classes).
  typical = objectives.loss_kwargs_config()
  for name, kwargs in config.loss_kwargs.items():
    kwargs.update(typical[name])
  config.preprocess = "face"
  config.batch_size = 512
  config.eval_batch_size = 512
  config.num_train_steps = 28 * EPOCH
  config.lr_boundaries = (16 * EPOCH, 24 * EPOCH)
  config.log_every_steps = 100
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 2000
  return config
