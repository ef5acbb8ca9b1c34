"""Large-margin softmax losses as pure JAX functions.

Every loss returns the per-example loss ``[batch_size]`` (no reduction);
hyperparameters are keyword-only; float hyperparameters may be traced scalars.
Out-of-range label values cannot be checked inside ``jit``: the target gather
then fills NaN, so the loss is NaN (a trainer's non-finite check stops there);
so is a traced hyperparameter out of its range (a known one raises ValueError).
"""

from margin_jax.losses._adacos import adacos_dynamic_scale
from margin_jax.losses._adacos import adacos_fixed_scale
from margin_jax.losses._angular import a_softmax_loss
from margin_jax.losses._angular import large_margin_softmax_loss
from margin_jax.losses._angular import psi
from margin_jax.losses._angular import target_cosine
from margin_jax.losses._centers import center_loss
from margin_jax.losses._common import predicted_class
from margin_jax.losses._common import take_target
from margin_jax.losses._cosine_margins import arcface_loss
from margin_jax.losses._cosine_margins import combined_margin_loss
from margin_jax.losses._cosine_margins import cosface_loss
from margin_jax.losses._cosine_margins import declare_cosine_margin
from margin_jax.losses._cosine_margins import normface_loss
from margin_jax.losses._ensemble import ensemble_soft_margin_softmax_loss
from margin_jax.losses._ensemble import hsic_diversity
from margin_jax.losses._face_margins import adaface_loss
from margin_jax.losses._face_margins import adaface_norm_stats
from margin_jax.losses._face_margins import curricularface_loss
from margin_jax.losses._face_margins import curricularface_t
from margin_jax.losses._face_margins import elasticface_loss
from margin_jax.losses._face_margins import magface_loss
from margin_jax.losses._logit_losses import label_smoothing_loss
from margin_jax.losses._logit_losses import multiclass_hinge_loss
from margin_jax.losses._logit_losses import rho_hat
from margin_jax.losses._logit_losses import soft_margin_softmax_loss
from margin_jax.losses._logit_losses import softmax_loss
from margin_jax.losses._logit_losses import uniformity_regularized_softmax_loss
from margin_jax.losses._noisy_virtual import noisy_softmax_loss
from margin_jax.losses._noisy_virtual import virtual_softmax_loss
from margin_jax.losses._schedules import lambda_schedule
from margin_jax.losses._spec import LossSpec
from margin_jax.losses._streamed import StreamedHead
from margin_jax.losses._subcenter import dominant_subcenters
from margin_jax.losses._subcenter import far_from_dominant_subcenter
from margin_jax.losses._subcenter import subcenter_arcface_loss
from margin_jax.losses._subcenter import subcenter_cosines
from margin_jax.losses._table import PUBLISHED_LAMBDA
from margin_jax.losses._table import TABLE
from margin_jax.losses._table import BoundLoss
from margin_jax.losses._table import by_name
from margin_jax.losses._table import chunked
from margin_jax.losses._table import register
from margin_jax.losses._test_logits import ensemble_weights
from margin_jax.losses._test_logits import inference_logits

__all__ = (
  "PUBLISHED_LAMBDA",
  "TABLE",
  "BoundLoss",
  "LossSpec",
  "StreamedHead",
  "a_softmax_loss",
  "adacos_dynamic_scale",
  "adacos_fixed_scale",
  "adaface_loss",
  "adaface_norm_stats",
  "arcface_loss",
  "by_name",
  "center_loss",
  "chunked",
  "combined_margin_loss",
  "cosface_loss",
  "curricularface_loss",
  "curricularface_t",
  "declare_cosine_margin",
  "dominant_subcenters",
  "elasticface_loss",
  "ensemble_soft_margin_softmax_loss",
  "ensemble_weights",
  "far_from_dominant_subcenter",
  "hsic_diversity",
  "inference_logits",
  "label_smoothing_loss",
  "lambda_schedule",
  "large_margin_softmax_loss",
  "magface_loss",
  "multiclass_hinge_loss",
  "noisy_softmax_loss",
  "normface_loss",
  "predicted_class",
  "psi",
  "register",
  "rho_hat",
  "soft_margin_softmax_loss",
  "softmax_loss",
  "subcenter_arcface_loss",
  "subcenter_cosines",
  "take_target",
  "target_cosine",
  "uniformity_regularized_softmax_loss",
  "virtual_softmax_loss",
)
