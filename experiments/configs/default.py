"""Default hyperparameters: L-Softmax's MNIST protocol with the softmax loss.

Command:
  python -m experiments.train --config experiments/configs/default.py \
      --workdir /tmp/default [--config.loss=l_softmax ...]

Expected time: ~10 h on a 2-core CPU, ~15 min on one modern GPU.
Target: L-Softmax Table 2, softmax 0.40% MNIST test error.

Every other config imports this file and overrides only what differs. Each
loss reads only its own keyword arguments, ``config.loss_kwargs.<loss>``.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from margin_jax.training import objectives


def get_config():
  """The default ``ConfigDict``."""
  config = ml_collections.ConfigDict()

  # Data (margin_jax.data). preprocess: "mean" (per-pixel mean subtraction,
  # L-Softmax/Noisy/EM), "cifar_plus" (+ pad-4 crop and flip), "noisy_crop"
  # (Noisy Softmax's random 30x30 crop), "none".
  config.dataset = "mnist"
  config.data_dir = ""  # "" = TFDS_DATA_DIR / tfds default
  config.preprocess = "mean"
  config.train_fraction = 1.0  # class-balanced subset (Noisy Sec 5.4)
  config.label_noise = 0.0  # flipped label rate (Kobayashi Table 3b)

  # Model (margin_jax.models.ARCHITECTURES, or FACE_NETS: experiments/configs/face.py).
  config.model = "lsoftmax_mnist"
  config.width = 1.0  # filter multiplier (Virtual Softmax's t; <1 on CPU)
  config.feature_dim = 0  # 0 = the table's feature width
  config.use_bias = False  # class bias b in W^T x + b

  # Loss (margin_jax.losses.TABLE) and its keyword arguments: one sub-config
  # per loss under the loss's own keyword names, the papers' typical values
  # (margin_jax.training.objectives.loss_kwargs_config), e.g.
  #   --config.loss=arcface --config.loss_kwargs.arcface.margin=0.3
  # L-/A-Softmax's lam is the settings of its published lambda schedule
  # max(base (1 + gamma t S/N)^-power, lambda_min) (losses.lambda_schedule),
  # stretched to this run's N steps from the S = schedule_steps it was
  # published for, e.g. --config.loss_kwargs.l_softmax.lam.lambda_min=0.5.
  # Noisy Softmax's alpha is the square root of the alpha^2 its tables report.
  config.loss = "softmax"
  config.loss_kwargs = objectives.loss_kwargs_config(scale=16.0)  # s = 16 for tens of classes
  config.loss_kwargs.center.center_weight = 0.01  # softmax + lambda * center loss (Wen eq 5)
  config.num_classifiers = 0  # EM-/E-Softmax ensemble size V (EM suggests 2)
  config.center_alpha = 0.5  # Wen eq 4 center update rate
  config.saturation_threshold = 0.99  # P(y|x) counted as saturated (Noisy)

  # Optimisation (L-Softmax Sec 5.1): SGD, momentum 0.9, weight decay 5e-4,
  # batch 256, lr 0.1, /10 at 12k and 15k, stop at 18k.
  config.batch_size = 256  # global, over all devices and processes
  config.eval_batch_size = 1000
  # (): pmap data parallelism over the devices. (data, model): jit on a device
  # mesh with the classifier's classes split over "model" (the product is the
  # device count; model must divide the class count), e.g.
  # --config.mesh_shape="(2, 4)".
  config.mesh_shape = ()
  # > 0: the loss, the accuracy and the evaluation run over blocks of this many
  # classes (per device on a mesh; `margin_jax.losses.chunked`), so the [B, C]
  # logits never form; 0: materialised. Every loss of the table streams.
  config.class_chunk_size = 0
  # PartialFC (on a mesh): the loss runs over this fraction of each class
  # shard's classes, every class of the batch kept (parallel.sample_shard);
  # None = all classes.
  config.sample_rate = placeholder(float)
  config.learning_rate = 0.1
  config.lr_schedule = "piecewise"  # piecewise|log
  config.lr_boundaries = (12000, 15000)
  config.lr_decay = 0.1
  config.final_learning_rate = 1e-4  # for "log" (Kobayashi)
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.num_train_steps = 18000

  # Run control (may change when resuming).
  config.log_every_steps = 50
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 2000
  config.keep_checkpoints = 3
  config.seed = 0
  return config
