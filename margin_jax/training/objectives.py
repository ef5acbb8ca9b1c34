"""The one mapping from a config's loss name to a training objective.

Every objective calls :mod:`margin_jax.losses` (no loss math here) on the
model outputs of :class:`margin_jax.models.MarginNet` (``features`` [B, d],
``weights`` [d, C] or [V, d, C], optional ``bias`` and ``centers``), returns
the per-example loss [B], the test-time logits via
:func:`margin_jax.losses.inference_logits`, and diagnostics for the metrics
log.

=================== ============================================ ==================
``config.loss``     function (hyperparameters from config)       paper
=================== ============================================ ==================
``softmax``         ``softmax_loss``                             all
``l_softmax``       ``large_margin_softmax_loss`` (margin,       L-Softmax eqs 4-8
                    lambda schedule ``lambda_*``)
``a_softmax``       ``a_softmax_loss`` (margin, ``lambda_*``)    SphereFace
``noisy_softmax``   ``noisy_softmax_loss`` (alpha_squared,       Noisy eqs 5-6
                    ``noise`` ablation)
``virtual_softmax`` ``virtual_softmax_loss``                     Virtual eq 3
``m_softmax``       ``soft_margin_softmax_loss`` (soft_margin)   EM eq 4
``e_softmax``       ``ensemble_soft_margin_softmax_loss``,       EM eq 7
                    margin 0 (num_weak, diversity)
``em_softmax``      the same with ``soft_margin``                EM eq 8
``uniformity``      ``uniformity_regularized_softmax_loss``      Kobayashi eq 11
                    (uniformity_lambda, ``divergence`` ablation)
``hinge``           ``multiclass_hinge_loss`` (hinge_margin)     Kobayashi eq 14
``lsr``             ``label_smoothing_loss`` (smoothing)         Kobayashi eq 13
``normface``        ``normface_loss`` (scale)                    EM/Virtual baselines
``cosface``         ``cosface_loss`` (scale, cos_margin)
``arcface``         ``arcface_loss`` (scale, arc_margin)
``center``          ``softmax_loss + center_weight *             EM baseline
                    center_loss`` (centers: Wen eq 4 state)
=================== ============================================ ==================
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from margin_jax import losses

# Losses that classify by angle at test time (normalised class weights).
_COSINE = ("a_softmax", "normface", "cosface", "arcface")
# Losses that take logits (and so may use a class bias).
_LOGIT_LOSSES = ("softmax", "m_softmax", "uniformity", "hinge", "lsr", "center")
LOSSES = ("softmax", "l_softmax", "a_softmax", "noisy_softmax",
          "virtual_softmax", "m_softmax", "e_softmax", "em_softmax",
          "uniformity", "hinge", "lsr", "normface", "cosface", "arcface",
          "center")


@dataclasses.dataclass(frozen=True)
class Objective:
  """A named loss with its test-time logits and diagnostics.

  Attributes:
    name: the config string.
    loss: ``(outputs, labels, *, step, key) -> [B]`` per-example loss; ``step``
      (traced) feeds hyperparameter schedules, ``key`` the Noisy Softmax noise.
    cosine: classify by cosine similarity at test time.
    lam: the L-/A-Softmax lambda schedule (``step -> lambda``), else ``None``.
    saturation_threshold: P(y|x) above which an example counts as saturated.
  """

  name: str
  loss: Callable[..., jax.Array]
  cosine: bool = False
  lam: Callable[[jax.Array], jax.Array] | None = None
  saturation_threshold: float = 0.99

  def logits(self, outputs) -> jax.Array:
    """Test-time logits ``[B, C]`` (averaged W for EM; + bias if any)."""
    logits = losses.inference_logits(outputs["features"], outputs["weights"],
                                     cosine=self.cosine)
    return logits + outputs["bias"] if "bias" in outputs else logits

  def diagnostics(self, outputs, labels, step) -> dict[str, jax.Array]:
    """Batch means of the papers' training statistics.

    ``theta_y`` (degrees): angle between x and W_y (L-Softmax Sec 3.3);
    ``p_target``: mean softmax probability of the target, Noisy eq 9 (taken
    over the batch), and ``saturated`` the fraction above
    ``saturation_threshold`` (Noisy Sec 3's "individual saturation");
    ``rho_hat``: Kobayashi eq 7; ``lambda``: the L-Softmax blend;
    ``hsic``: EM eq 6 for stacked weights.
    """
    outputs = jax.lax.stop_gradient(outputs)
    x, w = outputs["features"], outputs["weights"]
    plain = losses.inference_logits(x, w)
    if "bias" in outputs:
      plain = plain + outputs["bias"]
    w_bar = losses.ensemble_weights(w) if w.ndim == 3 else w
    cos = jnp.clip(losses.target_cosine(x, w_bar, labels), -1.0, 1.0)
    p_target = jnp.take_along_axis(jax.nn.softmax(plain), labels[:, None],
                                   axis=1)[:, 0]
    out = {
        "theta_y": jnp.degrees(jnp.arccos(cos)).mean(),
        "p_target": p_target.mean(),
        "saturated": (p_target > self.saturation_threshold).mean(),
        "rho_hat": losses.rho_hat(plain, labels).mean(),
    }
    if self.lam is not None:
      out["lambda"] = self.lam(step)
    if w.ndim == 3:
      out["hsic"] = losses.hsic_diversity(w)
    return out


def lambda_schedule(config):
  """The config's L-/A-Softmax lambda schedule over its ``num_train_steps``.

  Each ``lambda_*`` field left ``None`` takes the loss's published value
  (`margin_jax.losses.PUBLISHED_LAMBDA`).
  """
  published = losses.PUBLISHED_LAMBDA[config.loss]
  fields = {"base": "lambda_base", "gamma": "lambda_gamma",
            "power": "lambda_power", "lambda_min": "lambda_min",
            "schedule_steps": "lambda_schedule_steps"}
  settings = {k: published[k] if config[f] is None else config[f]
              for k, f in fields.items()}
  return losses.lambda_schedule(**settings, num_steps=config.num_train_steps)


def _int_margin(config) -> int:
  if config.margin != int(config.margin):
    raise ValueError(f"config.margin must be an integer for {config.loss}, "
                     f"got {config.margin}")
  return int(config.margin)


def get_objective(config) -> Objective:
  """Builds the objective named ``config.loss`` with its hyperparameters.

  Args:
    config: a ``ConfigDict`` with the fields of ``experiments/configs/default.py``.

  Raises:
    ValueError: unknown loss name, a bias with a feature-based loss other than
      Noisy Softmax, stacked weights (``num_weak``) without an ensemble loss
      or centers without ``center``.
  """
  c = config
  if c.loss not in LOSSES:
    raise ValueError(f"unknown config.loss {c.loss!r}; expected one of "
                     f"{list(LOSSES)}")
  if c.use_bias and c.loss not in _LOGIT_LOSSES + ("noisy_softmax",):
    raise ValueError(f"config.use_bias is not supported by {c.loss!r}")
  ensemble = c.loss in ("e_softmax", "em_softmax")
  if ensemble != (c.num_weak > 0):
    raise ValueError(f"config.num_weak={c.num_weak}: e_softmax/em_softmax need "
                     "num_weak >= 1, the other losses num_weak = 0")

  def logits(o):
    return o["features"] @ o["weights"] + o.get("bias", 0.0)

  lam = None
  if c.loss in ("l_softmax", "a_softmax"):
    lam = lambda_schedule(c)
    margin = _int_margin(c)
    fn = (losses.large_margin_softmax_loss if c.loss == "l_softmax"
          else losses.a_softmax_loss)
    loss = lambda o, y, step, key: fn(o["features"], o["weights"], y,
                                      margin=margin, lam=lam(step))
  elif c.loss == "noisy_softmax":
    alpha = math.sqrt(c.alpha_squared)  # the paper reports alpha^2
    loss = lambda o, y, step, key: losses.noisy_softmax_loss(
        o["features"], o["weights"], y, key, alpha=alpha, noise=c.noise,
        bias=o.get("bias"))
  elif ensemble:
    margin = c.soft_margin if c.loss == "em_softmax" else 0.0
    loss = lambda o, y, step, key: losses.ensemble_soft_margin_softmax_loss(
        o["features"], o["weights"], y, margin=margin, diversity=c.diversity)
  else:  # neither schedule nor noise: ignore step and key
    plain = {
        "softmax": lambda o, y: losses.softmax_loss(logits(o), y),
        "virtual_softmax": lambda o, y: losses.virtual_softmax_loss(
            o["features"], o["weights"], y),
        "m_softmax": lambda o, y: losses.soft_margin_softmax_loss(
            logits(o), y, margin=c.soft_margin),
        "uniformity": lambda o, y: losses.uniformity_regularized_softmax_loss(
            logits(o), y, lam=c.uniformity_lambda, divergence=c.divergence),
        "hinge": lambda o, y: losses.multiclass_hinge_loss(
            logits(o), y, margin=c.hinge_margin),
        "lsr": lambda o, y: losses.label_smoothing_loss(
            logits(o), y, smoothing=c.smoothing),
        "normface": lambda o, y: losses.normface_loss(
            o["features"], o["weights"], y, scale=c.scale),
        "cosface": lambda o, y: losses.cosface_loss(
            o["features"], o["weights"], y, scale=c.scale, margin=c.cos_margin),
        "arcface": lambda o, y: losses.arcface_loss(
            o["features"], o["weights"], y, scale=c.scale, margin=c.arc_margin),
        "center": lambda o, y: losses.softmax_loss(logits(o), y)
                               + c.center_weight * losses.center_loss(
                                   o["features"], o["centers"], y),
    }[c.loss]
    loss = lambda o, y, step, key: plain(o, y)
  return Objective(name=c.loss, loss=loss, cosine=c.loss in _COSINE, lam=lam,
                   saturation_threshold=c.saturation_threshold)
