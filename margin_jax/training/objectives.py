"""Training objectives built from the one table of losses.

Every objective calls the function its row of `margin_jax.losses.TABLE` names
(no loss math here) on the model outputs of :class:`margin_jax.models.MarginNet`
(``features`` [B, d], ``weights`` [d, C] or [V, d, C], optional ``bias`` and
``centers``) with the hyperparameters its row reads from the config, returns
the per-example loss [B], the test-time logits via
:func:`margin_jax.losses.inference_logits`, and diagnostics for the metrics
log. ``config.loss`` is a name of the table.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp

from margin_jax import losses
from margin_jax import models
from margin_jax.losses import _common

LOSSES = tuple(losses.TABLE)


@dataclasses.dataclass(frozen=True)
class Objective:
  """A named loss with its test-time logits and diagnostics.

  Attributes:
    name: the config string.
    loss: ``(outputs, labels, *, step, key) -> [B]`` per-example loss; ``step``
      (traced) feeds hyperparameter schedules, ``key`` the Noisy Softmax noise.
    lam: the L-/A-Softmax lambda schedule (``step -> lambda``), else ``None``.
    saturation_threshold: P(y|x) above which an example counts as saturated.
  """

  name: str
  loss: Callable[..., jax.Array]
  lam: Callable[[jax.Array], jax.Array] | None = None
  saturation_threshold: float = 0.99

  def logits(self, outputs) -> jax.Array:
    """Test-time logits ``[B, C]`` (`margin_jax.models.test_logits`)."""
    return models.test_logits(outputs, self.name)

  def diagnostics(self, outputs, labels, step) -> dict[str, jax.Array]:
    """Batch means of the papers' training statistics.

    ``theta_y`` (degrees): angle between x and W_y (L-Softmax Sec 3.3);
    ``p_target``: mean softmax probability of the target, Noisy eq 9 (taken
    over the batch), and ``saturated`` the fraction above
    ``saturation_threshold`` (Noisy Sec 3's "individual saturation");
    ``rho_hat``: Kobayashi eq 7; ``lambda``: the L-Softmax blend;
    ``hsic``: EM eq 6 for the ensemble's stacked weights.
    """
    outputs = jax.lax.stop_gradient(outputs)
    x, w = outputs["features"], outputs["weights"]
    plain = losses.inference_logits(x, w)
    if "bias" in outputs:
      plain = plain + outputs["bias"]
    classify = losses.TABLE[self.name].classify
    if classify == "subcenter":  # The angle to the closest sub-centre of the class.
      cos = _common.take_target(losses.subcenter_cosines(x, w), labels)
    else:
      w_bar = losses.ensemble_weights(w) if w.ndim == 3 else w
      cos = losses.target_cosine(x, w_bar, labels)  # clipped to [-1, 1]
    p_target = jnp.exp(-losses.softmax_loss(plain, labels))  # softmax(plain)[y]
    out = {
      "theta_y": jnp.degrees(jnp.arccos(cos)).mean(),
      "p_target": p_target.mean(),
      "saturated": (p_target > self.saturation_threshold).mean(),
      "rho_hat": losses.rho_hat(plain, labels).mean(),
    }
    if self.lam is not None:
      out["lambda"] = self.lam(step)
    if classify == "averaged":
      out["hsic"] = losses.hsic_diversity(w)
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


def _int_margin(config) -> int:
  if config.margin != int(config.margin):
    raise ValueError(f"config.margin must be an integer for {config.loss}, got {config.margin}")
  return int(config.margin)


def get_objective(config) -> Objective:
  """Builds the objective named ``config.loss`` with its hyperparameters.

  Args:
    config: a ``ConfigDict`` with the fields of ``experiments/configs/default.py``.

  Raises:
    ValueError: unknown loss name, a bias with a feature-based loss that takes
      none, stacked weights (``num_classifiers``) without an ensemble loss or centers
      without ``center``.
  """
  c = config
  if c.loss not in losses.TABLE:
    raise ValueError(f"unknown config.loss {c.loss!r}; expected one of {list(LOSSES)}")
  spec = losses.TABLE[c.loss]
  takes_bias = spec.inputs in ("logits", "centers") or (
    "bias" in inspect.signature(spec.fn).parameters
  )
  if c.use_bias and not takes_bias:
    raise ValueError(f"config.use_bias is not supported by {c.loss!r}")
  stacked = [name for name, row in losses.TABLE.items() if row.inputs == "stacked"]
  if (spec.inputs == "stacked") != (c.num_classifiers > 0):
    raise ValueError(
      f"config.num_classifiers={c.num_classifiers}: {', '.join(stacked)} take stacked"
      " weights (V weak classifiers, K sub-centres) and need num_classifiers >= 1,"
      " the other losses num_classifiers = 0"
    )
  kwargs = spec.hyperparameters(c)
  if "margin" in kwargs and spec.lambda_schedule:
    kwargs["margin"] = _int_margin(c)
  center_weight = c.center_weight
  lam = lambda_schedule(c) if spec.lambda_schedule else None

  def loss(o, y, step, key):
    x, w = o["features"], o["weights"]
    if spec.inputs == "logits":
      return spec.fn(x @ w + o.get("bias", 0.0), y, **kwargs)
    if spec.inputs == "centers":  # Wen et al. eq 5: softmax + lambda * center.
      softmax = losses.softmax_loss(x @ w + o.get("bias", 0.0), y)
      return softmax + center_weight * spec.fn(x, o["centers"], y, **kwargs)
    if spec.needs_key:
      return spec.fn(x, w, y, key, bias=o.get("bias"), **kwargs)
    return spec.fn(x, w, y, **kwargs, **({"lam": lam(step)} if lam else {}))

  return Objective(
    name=c.loss,
    loss=loss,
    lam=lam,
    saturation_threshold=c.saturation_threshold,
  )
