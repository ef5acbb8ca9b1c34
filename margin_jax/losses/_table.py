"""The one table of losses: name, function, inputs, test-time classification,
hyperparameters with the papers' typical values, and their config fields.

Training (`margin_jax.training.objectives`), the tests and the benchmarks
iterate over `TABLE`; adding a loss means writing its function, adding its
row here, exporting it in ``__init__`` and listing it in the README.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from margin_jax.losses import _angular
from margin_jax.losses import _centers
from margin_jax.losses import _cosine_margins
from margin_jax.losses import _ensemble
from margin_jax.losses import _logit_losses
from margin_jax.losses import _noisy_virtual
from margin_jax.losses import _subcenter
from margin_jax.losses import _test_logits

# What a loss takes besides the labels:
#   "logits"   logits [B, C] (= x @ W [+ b]),
#   "features" features [B, d] and class weights [d, C],
#   "stacked"  features [B, d] and stacked weights [V, d, C] (EM-Softmax; the
#              K sub-centres [K, d, C] of Sub-center ArcFace),
#   "centers"  features [B, d] and class centers [C, d] (center loss).
INPUTS = ("logits", "features", "stacked", "centers")
# How a model trained with it classifies (`BoundLoss.test_logits`): x @ W, the
# cosines (normalised-weight losses), x @ mean_v W_v (EM-Softmax), or each
# class's largest cosine over its sub-centres (Sub-center ArcFace).
CLASSIFY = ("plain", "cosine", "averaged", "subcenter")


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """One row of the table.

  Attributes:
    name: the name configs and the command line use (``config.loss``).
    fn: the function of `margin_jax.losses`.
    inputs: one of `INPUTS`.
    classify: one of `CLASSIFY`.
    typical: the papers' typical keyword arguments (tests and benchmarks use
      them; the noise key is passed separately). L-/A-Softmax's ``lam`` is the
      pure margin here; training anneals it (``lambda_schedule``).
    config_fields: ``{keyword: config field}``; the field's value is passed as
      the keyword (see ``from_config`` for derived values).
    from_config: ``config -> {keyword: value}`` for keywords that are not a
      plain field (Noisy's alpha from alpha^2, E-Softmax's zero margin).
    lambda_schedule: takes the L-/A-Softmax ``lam`` from the lambda schedule.
    needs_key: takes a PRNG key after the labels (Noisy Softmax).
    paper: where its equations are.
  """

  name: str
  fn: Callable[..., Any]
  inputs: str
  classify: str = "plain"
  typical: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  config_fields: Mapping[str, str] = dataclasses.field(default_factory=dict)
  from_config: Callable[[Any], dict] | None = None
  lambda_schedule: bool = False
  needs_key: bool = False
  paper: str = ""

  def hyperparameters(self, config) -> dict:
    """The keyword arguments a config gives this loss (read once)."""
    kwargs = {k: config[field] for k, field in self.config_fields.items()}
    if self.from_config is not None:
      kwargs.update(self.from_config(config))
    return kwargs


TABLE: dict[str, LossSpec] = {
  spec.name: spec
  for spec in (
    LossSpec(
      "softmax",
      _logit_losses.softmax_loss,
      "logits",
      paper="L-Softmax (Liu et al., ICML 2016) eqs 1-2",
    ),
    LossSpec(
      "l_softmax",
      _angular.large_margin_softmax_loss,
      "features",
      typical={"margin": 4, "lam": 0.0},
      config_fields={"margin": "margin"},
      lambda_schedule=True,
      paper="L-Softmax (Liu et al., ICML 2016) eqs 4-13, Sec 5.1",
    ),
    LossSpec(
      "a_softmax",
      _angular.a_softmax_loss,
      "features",
      "cosine",
      typical={"margin": 4, "lam": 0.0},
      config_fields={"margin": "margin"},
      lambda_schedule=True,
      paper="SphereFace (Liu et al., CVPR 2017) eq 7 (L-Softmax 6 with unit W)",
    ),
    LossSpec(
      "noisy_softmax",
      _noisy_virtual.noisy_softmax_loss,
      "features",
      typical={"alpha": math.sqrt(0.1)},
      config_fields={"noise": "noise"},
      from_config=lambda c: {"alpha": math.sqrt(c.alpha_squared)},  # Tables report alpha^2.
      needs_key=True,
      paper="Noisy Softmax (Chen et al., CVPR 2017) eqs 5-8",
    ),
    LossSpec(
      "virtual_softmax",
      _noisy_virtual.virtual_softmax_loss,
      "features",
      paper="Virtual Softmax (Chen et al., NeurIPS 2018) eqs 3-5",
    ),
    LossSpec(
      "m_softmax",
      _logit_losses.soft_margin_softmax_loss,
      "logits",
      typical={"margin": 0.5},
      config_fields={"margin": "soft_margin"},
      paper="EM-Softmax (Wang et al., IJCAI 2018) eq 4",
    ),
    LossSpec(
      "e_softmax",
      _ensemble.ensemble_soft_margin_softmax_loss,
      "stacked",
      "averaged",
      typical={"margin": 0.0, "diversity": 0.1},
      config_fields={"diversity": "diversity"},
      from_config=lambda c: {"margin": 0.0},
      paper="EM-Softmax (Wang et al., IJCAI 2018) eq 7",
    ),
    LossSpec(
      "em_softmax",
      _ensemble.ensemble_soft_margin_softmax_loss,
      "stacked",
      "averaged",
      typical={"margin": 0.5, "diversity": 0.1},
      config_fields={"margin": "soft_margin", "diversity": "diversity"},
      paper="EM-Softmax (Wang et al., IJCAI 2018) eqs 4, 6-8",
    ),
    LossSpec(
      "uniformity",
      _logit_losses.uniformity_regularized_softmax_loss,
      "logits",
      typical={"lam": 0.3},
      config_fields={"lam": "uniformity_lambda", "divergence": "divergence"},
      paper="Kobayashi, BMVC 2019, eqs 8-12",
    ),
    LossSpec(
      "hinge",
      _logit_losses.multiclass_hinge_loss,
      "logits",
      typical={"margin": 1.0},
      config_fields={"margin": "hinge_margin"},
      paper="Kobayashi, BMVC 2019, eq 14",
    ),
    LossSpec(
      "lsr",
      _logit_losses.label_smoothing_loss,
      "logits",
      typical={"smoothing": 0.1},
      config_fields={"smoothing": "smoothing"},
      paper="Kobayashi, BMVC 2019, eq 13",
    ),
    LossSpec(
      "normface",
      _cosine_margins.normface_loss,
      "features",
      "cosine",
      typical={"scale": 16.0},
      config_fields={"scale": "scale"},
      paper="NormFace (Wang et al., ACM MM 2017) eq 6",
    ),
    LossSpec(
      "cosface",
      _cosine_margins.cosface_loss,
      "features",
      "cosine",
      typical={"scale": 64.0, "margin": 0.35},
      config_fields={"scale": "scale", "margin": "cos_margin"},
      paper="CosFace (Wang et al., CVPR 2018) eq 4",
    ),
    LossSpec(
      "arcface",
      _cosine_margins.arcface_loss,
      "features",
      "cosine",
      typical={"scale": 64.0, "margin": 0.5},
      config_fields={"scale": "scale", "margin": "arc_margin"},
      paper="ArcFace (Deng et al., CVPR 2019) eq 3",
    ),
    # insightface's combined (m1, m2, m3) = (1, 0.3, 0.2); the config has no
    # m1/m2/m3 fields yet, so training uses these values.
    LossSpec(
      "combined_margin",
      _cosine_margins.combined_margin_loss,
      "features",
      "cosine",
      typical={"scale": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2},
      config_fields={"scale": "scale"},
      from_config=lambda c: {"m1": 1.0, "m2": 0.3, "m3": 0.2},
      paper="insightface's combined margin (ArcFace, Deng et al., CVPR 2019; eq not checked)",
    ),
    LossSpec(
      "subcenter_arcface",
      _subcenter.subcenter_arcface_loss,
      "stacked",
      "subcenter",
      typical={"scale": 64.0, "margin": 0.5},
      config_fields={"scale": "scale", "margin": "arc_margin"},
      paper="Sub-center ArcFace (Deng et al., ECCV 2020); sections not checked (paper not here)",
    ),
    # Trained jointly with softmax: softmax + center_weight * center loss
    # (Wen et al., ECCV 2016, eq 5).
    LossSpec(
      "center",
      _centers.center_loss,
      "centers",
      paper="Center loss (Wen et al., ECCV 2016) eqs 2, 5",
    ),
  )
}


@dataclasses.dataclass(frozen=True)
class BoundLoss:
  """A loss of `TABLE` with its hyperparameters bound, called uniformly as
  ``loss(features, weights, labels, *, key=None, where=None) -> [B]``.

  ``weights`` is W ``[d, C]`` (stacked ``[V, d, C]`` for EM-Softmax, the
  sub-centres ``[K, d, C]`` for Sub-center ArcFace; the centres ``[C, d]``
  for the center loss); logit losses get ``features @ W``.
  ``key`` is needed by Noisy Softmax only.
  """

  spec: LossSpec
  hyperparameters: Mapping[str, Any]

  def __call__(self, features, weights, labels, *, key=None, where=None):
    if self.spec.inputs == "logits":
      return self.spec.fn(features @ weights, labels, **self.hyperparameters, where=where)
    if self.spec.needs_key:
      if key is None:
        raise ValueError(f"{self.spec.name} draws noise: pass key=jax.random.key(...).")
      return self.spec.fn(features, weights, labels, key, **self.hyperparameters, where=where)
    return self.spec.fn(features, weights, labels, **self.hyperparameters, where=where)

  def test_logits(self, features, weights):
    """The logits ``[B, C]`` a model trained with this loss classifies with."""
    if self.spec.classify == "subcenter":
      return _subcenter.subcenter_cosines(features, weights)
    return _test_logits.inference_logits(features, weights, cosine=self.spec.classify == "cosine")


def by_name(name: str, **hyperparameters) -> BoundLoss:
  """The loss ``name`` of `TABLE` with ``hyperparameters`` over its typical ones.

  Example:
    >>> import jax.numpy as jnp
    >>> loss = by_name("arcface", scale=16.0)  # margin: the typical 0.5
    >>> x, W, y = jnp.array([[1.0, 2.0]]), jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([1])
    >>> loss(x, W, y).round(4), loss.test_logits(x, W).argmax(-1)
    (Array([0.1302], dtype=float32), Array([1], dtype=int32))
  """
  if name not in TABLE:
    raise ValueError(f"Unknown loss {name!r}; expected one of {sorted(TABLE)}.")
  spec = TABLE[name]
  return BoundLoss(spec, {**spec.typical, **hyperparameters})
