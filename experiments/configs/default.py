"""Default hyperparameters: L-Softmax's MNIST protocol with the softmax loss.

Command:
  python -m experiments.train --config experiments/configs/default.py \
      --workdir /tmp/default [--config.loss=l_softmax ...]

Expected time: ~10 h on a 2-core CPU, ~15 min on one modern GPU.
Target: L-Softmax Table 2, softmax 0.40% MNIST test error.

Every other config imports this file and overrides only what differs. Loss
hyperparameters are named as in their papers; each loss reads only its own.
"""

import ml_collections
from ml_collections.config_dict import placeholder


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

  # Loss (margin_jax.training.objectives.LOSSES) and its hyperparameters.
  config.loss = "softmax"
  config.margin = 4  # L-/A-Softmax integer m
  # L-/A-Softmax lambda schedule max(base (1 + gamma t S/N)^-power, lambda_min)
  # (margin_jax.losses.lambda_schedule), stretched to this run's N steps from
  # the S = lambda_schedule_steps it was published for. None = the loss's
  # published value (losses.PUBLISHED_LAMBDA: L-Softmax 1000, 2.5e-5, 35, 0
  # over 18k steps; A-Softmax 1000, 0.12, 1, 5 over 28k).
  config.lambda_base = placeholder(float)
  config.lambda_gamma = placeholder(float)
  config.lambda_power = placeholder(float)
  config.lambda_min = placeholder(float)
  config.lambda_schedule_steps = placeholder(int)
  config.alpha_squared = 0.1  # Noisy Softmax alpha^2 (Tables 1, 3, 4)
  config.noise = "annealed"  # annealed|amplitude|free|normal|negative
  config.soft_margin = 0.5  # M-/EM-Softmax m (EM eq 4)
  config.num_classifiers = 0  # EM-/E-Softmax ensemble size V (EM suggests 2)
  config.diversity = 0.1  # EM eq 8 HSIC weight lambda
  config.uniformity_lambda = 0.3  # Kobayashi eq 11 lambda
  config.divergence = "symmetric"  # symmetric|q_u|u_q (Kobayashi Table 1)
  config.hinge_margin = 1.0  # Kobayashi eq 14
  config.smoothing = 0.1  # LSR lambda (Kobayashi eq 13)
  config.scale = 16.0  # NormFace/CosFace/ArcFace s
  config.cos_margin = 0.35  # CosFace m
  config.arc_margin = 0.5  # ArcFace m (radians)
  # insightface's combined margin s (cos(m1 theta + m2) - m3), its (1, 0.3, 0.2).
  config.combined_m1 = 1.0
  config.combined_m2 = 0.3
  config.combined_m3 = 0.2
  # AdaFace m, h and the initial running mean / std of ||x|| (the authors' 20 / 100).
  config.adaface_margin = 0.4
  config.adaface_h = 0.333
  config.adaface_norm_mean = 20.0
  config.adaface_norm_std = 100.0
  # MagFace margins l_m..u_m over norms l_a..u_a and the regulariser's lambda_g.
  config.magface_lower_margin = 0.45
  config.magface_upper_margin = 0.8
  config.magface_lower_norm = 10.0
  config.magface_upper_norm = 110.0
  config.magface_lambda_g = 35.0
  config.curricular_t = 0.0  # CurricularFace's initial t (its margin: arc_margin)
  # ElasticFace: arc (margin arc_margin) or cos (margin cos_margin), sigma of the margins.
  config.elastic_kind = "arc"
  config.elastic_sigma = 0.05
  config.center_weight = 0.01  # softmax + lambda * center loss (Wen eq 5)
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
