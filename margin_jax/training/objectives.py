"""Training objectives built from the one table of losses.

The config's loss fields become a loss's keywords here (`loss_keywords`, the
only place that knows both), and `bound_loss` turns ``config.loss`` into a
`margin_jax.losses.BoundLoss` (no loss math here), which the trainer calls on
the model outputs of :class:`margin_jax.models.MarginNet` (``features`` [B, d],
``weights`` [d, C] or [V, d, C], optional ``bias`` and ``centers``). An
`Objective` adds the test-time logits and the diagnostics of the metrics log.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from margin_jax import losses

LOSSES = tuple(losses.TABLE)


@dataclasses.dataclass(frozen=True)
class Objective:
  """A named loss with its test-time logits and diagnostics.

  Attributes:
    name: the config string.
    loss: ``(outputs, labels, *, step, key, state=None, shard=None) -> [B]``
      per-example loss; ``step`` (traced) feeds hyperparameter schedules,
      ``key`` the Noisy Softmax noise and ElasticFace's margins, ``state`` the
      loss's training state (``None``: its initial values), ``shard`` the
      class shard of a class-sharded step (`margin_jax.sharding.ClassShard`;
      the methods take it too).
    update_state: ``(outputs, labels, state, *, axis_name=None, shard=None) -> state``,
      the loss's training state after this batch (AdaFace's norm
      statistics, CurricularFace's t; ``{}`` for the others), computed before
      the loss as the authors do, global over the mapped ``axis_name``.
    initial_state: the training state at step 0 (float32 scalars).
    lam: the L-/A-Softmax lambda schedule (``step -> lambda``), else ``None``.
    saturation_threshold: P(y|x) above which an example counts as saturated.
  """

  name: str
  loss: Callable[..., jax.Array]
  update_state: Callable[..., dict]
  initial_state: dict
  lam: Callable[[jax.Array], jax.Array] | None = None
  saturation_threshold: float = 0.99
  class_chunk_size: int = 0

  @property
  def _bound(self) -> losses.BoundLoss:
    bound = losses.by_name(self.name)
    return bound.streamed(chunk_size=self.class_chunk_size) if self.class_chunk_size else bound

  def predicted_class(self, outputs, *, shard=None) -> jax.Array:
    """The test-time prediction [B] (`margin_jax.losses.BoundLoss.predicted_class`),
    over class blocks when ``class_chunk_size`` is set."""
    return self._bound.predicted_class(
      outputs["features"], outputs["weights"], bias=outputs.get("bias"), shard=shard
    )

  def diagnostics(self, outputs, labels, step, *, shard=None) -> dict[str, jax.Array]:
    """Batch means of the papers' training statistics.

    ``theta_y`` (degrees): angle between x and W_y (L-Softmax Sec 3.3);
    ``p_target``: mean softmax probability of the target, Noisy eq 9 (taken
    over the batch), and ``saturated`` the fraction above
    ``saturation_threshold`` (Noisy Sec 3's "individual saturation");
    ``rho_hat``: Kobayashi eq 7; ``lambda``: the L-Softmax blend;
    ``hsic``: EM eq 6 for the ensemble's stacked weights. With
    ``class_chunk_size`` the [B, C] logits never form: ``p_target`` comes
    from the streamed softmax and ``rho_hat`` is left out.
    """
    outputs = jax.lax.stop_gradient(outputs)
    x, w = outputs["features"], outputs["weights"]
    classify = losses.TABLE[self.name].classify
    w_plain = losses.ensemble_weights(w) if w.ndim == 3 else w  # x @ w_plain: the plain logits
    if classify == "subcenter":  # The angle to the closest sub-centre of the class.
      cos = losses.take_target(losses.subcenter_cosines(x, w), labels, shard=shard)
    else:
      cos = losses.target_cosine(x, w_plain, labels, shard=shard)  # clipped to [-1, 1]
    bias = outputs.get("bias")
    if self.class_chunk_size:
      streamed = losses.chunked(losses.softmax_loss, chunk_size=self.class_chunk_size)
      p_target = jnp.exp(-streamed(x, w_plain, labels, bias=bias, shard=shard))  # softmax[y]
    else:
      plain = x @ w_plain if bias is None else x @ w_plain + bias
      p_target = jnp.exp(-losses.softmax_loss(plain, labels, shard=shard))
    out = {
      "theta_y": jnp.degrees(jnp.arccos(cos)).mean(),
      "p_target": p_target.mean(),
      "saturated": (p_target > self.saturation_threshold).mean(),
    }
    if not self.class_chunk_size:
      out["rho_hat"] = losses.rho_hat(plain, labels, shard=shard).mean()
    if self.lam is not None:
      out["lambda"] = self.lam(step)
    if classify == "averaged":
      out["hsic"] = losses.hsic_diversity(w, shard=shard)
    return out


def lambda_schedule(config):
  """The config's L-/A-Softmax lambda schedule over its ``num_train_steps``.

  Each ``lambda_*`` field left ``None`` takes the loss's published value
  (`margin_jax.losses.PUBLISHED_LAMBDA`).
  """
  published = losses.PUBLISHED_LAMBDA[config.loss]
  fields = {
    "base": "lambda_base",
    "gamma": "lambda_gamma",
    "power": "lambda_power",
    "lambda_min": "lambda_min",
    "schedule_steps": "lambda_schedule_steps",
  }
  settings = {k: published[k] if config[f] is None else config[f] for k, f in fields.items()}
  return losses.lambda_schedule(**settings, num_steps=config.num_train_steps)


# Each loss's keywords from the config fields of ``experiments/configs/default.py``
# (the losses take keywords only and know no config).
_KEYWORDS = {
  "softmax": lambda c: {},
  "l_softmax": lambda c: {"margin": c.margin, "lam": lambda_schedule(c)},
  "a_softmax": lambda c: {"margin": c.margin, "lam": lambda_schedule(c)},
  "noisy_softmax": lambda c: {"alpha": math.sqrt(c.alpha_squared), "noise": c.noise},
  "virtual_softmax": lambda c: {},
  "m_softmax": lambda c: {"margin": c.soft_margin},
  "e_softmax": lambda c: {"margin": 0.0, "diversity": c.diversity},
  "em_softmax": lambda c: {"margin": c.soft_margin, "diversity": c.diversity},
  "uniformity": lambda c: {"lam": c.uniformity_lambda, "divergence": c.divergence},
  "hinge": lambda c: {"margin": c.hinge_margin},
  "lsr": lambda c: {"smoothing": c.smoothing},
  "normface": lambda c: {"scale": c.scale},
  "cosface": lambda c: {"scale": c.scale, "margin": c.cos_margin},
  "arcface": lambda c: {"scale": c.scale, "margin": c.arc_margin},
  "combined_margin": lambda c: {
    "scale": c.scale,
    "m1": c.combined_m1,
    "m2": c.combined_m2,
    "m3": c.combined_m3,
  },
  "subcenter_arcface": lambda c: {"scale": c.scale, "margin": c.arc_margin},
  "adaface": lambda c: {
    "scale": c.scale,
    "margin": c.adaface_margin,
    "h": c.adaface_h,
    "norm_mean": c.adaface_norm_mean,
    "norm_std": c.adaface_norm_std,
  },
  "magface": lambda c: {
    "scale": c.scale,
    "lower_margin": c.magface_lower_margin,
    "upper_margin": c.magface_upper_margin,
    "lower_norm": c.magface_lower_norm,
    "upper_norm": c.magface_upper_norm,
    "lambda_g": c.magface_lambda_g,
  },
  "curricularface": lambda c: {"scale": c.scale, "margin": c.arc_margin, "t": c.curricular_t},
  "elasticface": lambda c: {
    "scale": c.scale,
    "margin": c.arc_margin if c.elastic_kind == "arc" else c.cos_margin,
    "sigma": c.elastic_sigma,
    "kind": c.elastic_kind,
  },
  "center": lambda c: {"center_weight": c.center_weight},
}


def loss_keywords(config) -> dict:
  """The keyword arguments ``config`` gives its loss ``config.loss`` (Noisy's
  alpha from the alpha^2 its tables report; L-/A-Softmax's lambda schedule)."""
  return _KEYWORDS.get(config.loss, lambda c: {})(config)


def bound_loss(config) -> losses.BoundLoss:
  """``config.loss`` as a `margin_jax.losses.BoundLoss` with the config's hyperparameters.

  Raises:
    ValueError: unknown loss name, or stacked weights (``num_classifiers``)
      without a stacked-weight loss or the other way round.
  """
  try:
    loss = losses.by_name(config.loss, **loss_keywords(config))
  except ValueError as err:
    raise ValueError(f"unknown config.loss {config.loss!r}: {err}") from None
  if config.class_chunk_size:
    try:
      loss = loss.streamed(chunk_size=config.class_chunk_size)
    except ValueError as err:
      raise ValueError(f"config.class_chunk_size={config.class_chunk_size}: {err}") from None
  if (loss.spec.inputs == "stacked") != (config.num_classifiers > 0):
    stacked = [name for name, row in losses.TABLE.items() if row.inputs == "stacked"]
    raise ValueError(
      f"config.num_classifiers={config.num_classifiers}: {', '.join(stacked)} take stacked"
      " weights (V weak classifiers, K sub-centres) and need num_classifiers >= 1,"
      " the other losses num_classifiers = 0"
    )
  return loss


def get_objective(config) -> Objective:
  """The objective of ``config.loss`` with the config's hyperparameters.

  Args:
    config: a ``ConfigDict`` with the fields of ``experiments/configs/default.py``.

  Raises:
    ValueError: as `bound_loss`; a bias with a loss that takes none.
  """
  loss = bound_loss(config)
  if config.use_bias and not loss.spec.takes_bias:
    raise ValueError(f"config.use_bias is not supported by {config.loss!r}")

  def per_example(o, y, step, key, state=None, shard=None):
    return loss(
      o["features"],
      o["weights"],
      y,
      key=key,
      bias=o.get("bias"),
      centers=o.get("centers"),
      step=step,
      state=state,
      shard=shard,
    )

  def update_state(o, y, state, *, axis_name=None, shard=None):
    return loss.update_state(
      o["features"], o["weights"], y, state, axis_name=axis_name, shard=shard
    )

  lam = loss.hyperparameters.get("lam") if loss.spec.lambda_schedule else None
  return Objective(
    name=config.loss,
    loss=per_example,
    update_state=update_state,
    initial_state={k: jnp.float32(v) for k, v in loss.initial_state.items()},
    lam=lam,
    saturation_threshold=config.saturation_threshold,
    class_chunk_size=config.class_chunk_size,
  )
