"""The one table of losses (name, function, inputs, test-time classification,
the papers' typical hyperparameters) and the one adapter from a name to a call,
`by_name` -> `BoundLoss`.

Training (`margin_jax.training.objectives`), the sharded example, the tests and
the benchmarks iterate over `TABLE` and call losses through `BoundLoss`; adding
a loss means writing its function, adding its row here, exporting it in
``__init__`` and listing it in docs/losses.md and docs/api/losses.md.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

from margin_jax.losses import _angular
from margin_jax.losses import _centers
from margin_jax.losses import _common
from margin_jax.losses import _cosine_margins
from margin_jax.losses import _ensemble
from margin_jax.losses import _face_margins
from margin_jax.losses import _logit_losses
from margin_jax.losses import _noisy_virtual
from margin_jax.losses import _streamed
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
    name: the name `by_name` takes.
    fn: the function of `margin_jax.losses`.
    inputs: one of `INPUTS`.
    classify: one of `CLASSIFY`.
    typical: the papers' typical keyword arguments (tests and benchmarks use
      them; the noise key is passed separately). L-/A-Softmax's ``lam`` is the
      pure margin here; training anneals it (``lambda_schedule``).
    lambda_schedule: takes the L-/A-Softmax ``lam``, annealed by
      `margin_jax.losses.lambda_schedule` in training.
    needs_key: takes a PRNG key after the labels (Noisy Softmax, ElasticFace).
    state: the keywords that are training state (AdaFace's norm statistics,
      CurricularFace's t): their initial values are in ``typical``, and
      ``update_state`` updates them before each step's loss.
    update_state: ``(features, weights, labels, state, *, where, axis_name) ->
      state``, the ``state`` keywords' new values (`BoundLoss.update_state`).
    paper: where its equations are.
  """

  name: str
  fn: Callable[..., Any]
  inputs: str
  classify: str = "plain"
  typical: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  lambda_schedule: bool = False
  needs_key: bool = False
  state: tuple[str, ...] = ()
  update_state: Callable[..., dict] | None = None
  paper: str = ""

  @property
  def takes_bias(self) -> bool:
    """Whether a class bias ``[C]`` can be added to its logits."""
    return self.inputs in ("logits", "centers") or "bias" in inspect.signature(self.fn).parameters


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
      lambda_schedule=True,
      paper="L-Softmax (Liu et al., ICML 2016) eqs 4-13, Sec 5.1",
    ),
    LossSpec(
      "a_softmax",
      _angular.a_softmax_loss,
      "features",
      "cosine",
      typical={"margin": 4, "lam": 0.0},
      lambda_schedule=True,
      paper="SphereFace (Liu et al., CVPR 2017) eq 7 (L-Softmax 6 with unit W)",
    ),
    LossSpec(
      "noisy_softmax",
      _noisy_virtual.noisy_softmax_loss,
      "features",
      typical={"alpha": math.sqrt(0.1)},
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
      paper="EM-Softmax (Wang et al., IJCAI 2018) eq 4",
    ),
    LossSpec(
      "e_softmax",
      _ensemble.ensemble_soft_margin_softmax_loss,
      "stacked",
      "averaged",
      typical={"margin": 0.0, "diversity": 0.1},
      paper="EM-Softmax (Wang et al., IJCAI 2018) eq 7",
    ),
    LossSpec(
      "em_softmax",
      _ensemble.ensemble_soft_margin_softmax_loss,
      "stacked",
      "averaged",
      typical={"margin": 0.5, "diversity": 0.1},
      paper="EM-Softmax (Wang et al., IJCAI 2018) eqs 4, 6-8",
    ),
    LossSpec(
      "uniformity",
      _logit_losses.uniformity_regularized_softmax_loss,
      "logits",
      typical={"lam": 0.3},
      paper="Kobayashi, BMVC 2019, eqs 8-12",
    ),
    LossSpec(
      "hinge",
      _logit_losses.multiclass_hinge_loss,
      "logits",
      typical={"margin": 1.0},
      paper="Kobayashi, BMVC 2019, eq 14",
    ),
    LossSpec(
      "lsr",
      _logit_losses.label_smoothing_loss,
      "logits",
      typical={"smoothing": 0.1},
      paper="Kobayashi, BMVC 2019, eq 13",
    ),
    LossSpec(
      "normface",
      _cosine_margins.normface_loss,
      "features",
      "cosine",
      typical={"scale": 16.0},
      paper="NormFace (Wang et al., ACM MM 2017) eq 6",
    ),
    LossSpec(
      "cosface",
      _cosine_margins.cosface_loss,
      "features",
      "cosine",
      typical={"scale": 64.0, "margin": 0.35},
      paper="CosFace (Wang et al., CVPR 2018) eq 4",
    ),
    LossSpec(
      "arcface",
      _cosine_margins.arcface_loss,
      "features",
      "cosine",
      typical={"scale": 64.0, "margin": 0.5},
      paper="ArcFace (Deng et al., CVPR 2019) eq 3",
    ),
    # insightface's combined (m1, m2, m3) = (1, 0.3, 0.2).
    LossSpec(
      "combined_margin",
      _cosine_margins.combined_margin_loss,
      "features",
      "cosine",
      typical={"scale": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2},
      paper="insightface's combined margin (ArcFace, Deng et al., CVPR 2019; eq not checked)",
    ),
    LossSpec(
      "subcenter_arcface",
      _subcenter.subcenter_arcface_loss,
      "stacked",
      "subcenter",
      typical={"scale": 64.0, "margin": 0.5},
      paper="Sub-center ArcFace (Deng et al., ECCV 2020); section numbers not checked",
    ),
    LossSpec(
      "adaface",
      _face_margins.adaface_loss,
      "features",
      "cosine",
      typical={"scale": 64.0, "margin": 0.4, "h": 0.333, "norm_mean": 20.0, "norm_std": 100.0},
      state=("norm_mean", "norm_std"),
      update_state=lambda x, w, y, state, **kw: dict(
        zip(
          ("norm_mean", "norm_std"),
          _face_margins.adaface_norm_stats(x, state["norm_mean"], state["norm_std"], **kw),
        )
      ),
      paper="AdaFace (Kim et al., CVPR 2022) Sec 3; eq numbers not checked",
    ),
    LossSpec(
      "magface",
      _face_margins.magface_loss,
      "features",
      "cosine",
      typical={
        "scale": 64.0,
        "lower_margin": 0.45,
        "upper_margin": 0.8,
        "lower_norm": 10.0,
        "upper_norm": 110.0,
        "lambda_g": 35.0,
      },
      paper="MagFace (Meng et al., CVPR 2021) Sec 3-4; eq numbers not checked",
    ),
    LossSpec(
      "curricularface",
      _face_margins.curricularface_loss,
      "features",
      "cosine",
      typical={"scale": 64.0, "margin": 0.5, "t": 0.0},
      state=("t",),
      update_state=lambda x, w, y, state, **kw: {
        "t": _face_margins.curricularface_t(x, w, y, state["t"], **kw)
      },
      paper="CurricularFace (Huang et al., CVPR 2020) Sec 3; eq numbers not checked",
    ),
    # ElasticFace-Arc; ElasticFace-Cos is kind="cos" with margin 0.35.
    LossSpec(
      "elasticface",
      _face_margins.elasticface_loss,
      "features",
      "cosine",
      typical={"scale": 64.0, "margin": 0.5, "sigma": 0.05},
      needs_key=True,
      paper="ElasticFace (Boutros et al., CVPRW 2022) eqs 6-7",
    ),
    # Trained jointly with softmax: softmax + center_weight * center loss
    # (Wen et al., ECCV 2016, eq 5); `BoundLoss` forms the sum, weighted by its
    # center_weight= (Wen et al. use 0.003-0.1).
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
  """A loss of `TABLE` with its hyperparameters bound: the one path from a
  name to a call,
  ``loss(features, weights, labels, *, key=None, where=None, bias=None, centers=None, step=None,
  state=None) -> [B]``.

  ``weights`` is W ``[d, C]`` (stacked ``[V, d, C]`` for EM-Softmax, the
  sub-centres ``[K, d, C]`` for Sub-center ArcFace); logit losses get
  ``features @ W + bias``; the center row is Wen et al.'s joint objective
  ``softmax(x @ W + bias) + center_weight * center_loss(x, centers)`` (eq 5).
  ``key``: Noisy Softmax's noise, ElasticFace's margins. A hyperparameter
  bound as a callable is an optax-style schedule, evaluated at ``step`` (e.g.
  L-Softmax's ``lam`` from `margin_jax.losses.lambda_schedule`). ``state``:
  the current values of the loss's training state (`initial_state`,
  `update_state`), over the bound ones. ``chunk_size`` (see `streamed`):
  the loss runs over blocks of that many classes, ``None`` materialised.
  """

  spec: LossSpec
  hyperparameters: Mapping[str, Any]
  chunk_size: int | None = None

  def streamed(self, *, chunk_size: int) -> BoundLoss:
    """This loss streamed over blocks of ``chunk_size`` classes
    (`margin_jax.losses.chunked`): logit losses become fused linear + loss, so
    the [B, C] logits never form. Raises ValueError for a loss that cannot stream."""
    _streamed.chunked(self.spec.fn, chunk_size=chunk_size)  # the checks
    return dataclasses.replace(self, chunk_size=chunk_size)

  def __call__(
    self,
    features,
    weights,
    labels,
    *,
    key=None,
    where=None,
    bias=None,
    centers=None,
    step=None,
    state=None,
  ):
    name, inputs = self.spec.name, self.spec.inputs
    kwargs = {**self._at_step(step), **(state or {})}
    fn = self.spec.fn
    if self.chunk_size is not None:
      fn = _streamed.chunked(fn, chunk_size=self.chunk_size)
      if inputs == "logits":
        return fn(features, weights, labels, **kwargs, bias=bias, where=where)
    if where is not None:  # before the logits form, so a masked row cannot reach W
      features = _common.mask_rows(features, _common.check_where(where, features.shape[0]))
    if inputs in ("logits", "centers"):
      logits = features @ weights if bias is None else features @ weights + bias
      if inputs == "logits":
        return self.spec.fn(logits, labels, **kwargs, where=where)
      if centers is None or "center_weight" not in kwargs:
        raise ValueError(
          f"{name} is softmax + center_weight * center loss: bind center_weight= and pass"
          " centers=[C, d]."
        )
      center = self.spec.fn(features, centers, labels, where=where)
      softmax = _logit_losses.softmax_loss(logits, labels, where=where)
      return softmax + kwargs["center_weight"] * center
    if bias is not None:
      if not self.spec.takes_bias:
        raise ValueError(f"{name} takes no class bias (bias=...).")
      kwargs["bias"] = bias
    if self.spec.needs_key:
      if key is None:
        raise ValueError(f"{name} draws noise: pass key=jax.random.key(...).")
      return fn(features, weights, labels, key, **kwargs, where=where)
    return fn(features, weights, labels, **kwargs, where=where)

  def _at_step(self, step) -> dict:
    """The hyperparameters, each schedule evaluated at ``step``."""
    schedules = [k for k, v in self.hyperparameters.items() if callable(v)]
    if schedules and step is None:
      raise ValueError(f"{self.spec.name}: {schedules} are schedules; pass step=.")
    return {k: v(step) if callable(v) else v for k, v in self.hyperparameters.items()}

  @property
  def initial_state(self) -> dict:
    """The training state's initial values (the bound ones), ``{}`` for a stateless loss."""
    return {k: self.hyperparameters[k] for k in self.spec.state}

  def update_state(self, features, weights, labels, state, *, where=None, axis_name=None):
    """The training state after this batch (before its loss, as the authors
    update it; no gradient), global over the mapped ``axis_name``."""
    if self.spec.update_state is None:
      return state
    return self.spec.update_state(
      features, weights, labels, state, where=where, axis_name=axis_name
    )

  def test_logits(self, features, weights):
    """The logits ``[B, C]`` a model trained with this loss classifies with."""
    if self.spec.classify == "subcenter":
      return _subcenter.subcenter_cosines(features, weights)
    return _test_logits.inference_logits(features, weights, cosine=self.spec.classify == "cosine")

  def top_k(self, features, weights, *, k: int = 1, bias=None):
    """The ``k`` classes [B, k] with the largest `test_logits` (+ ``bias``),
    best first, and those logits [B, k]; over blocks of ``chunk_size``
    classes when it is set, so no [B, C] array forms (`_streamed.top_classes`)."""
    chunk_size = self.chunk_size or weights.shape[-1]
    return _streamed.top_classes(
      self.test_logits, features, weights, k=k, chunk_size=chunk_size, bias=bias
    )

  def predicted_class(self, features, weights, *, bias=None):
    """The class [B] with the largest `test_logits` (+ ``bias``), the first
    of ties (`margin_jax.losses.predicted_class`); streamed as `top_k`."""
    if self.chunk_size is None:
      logits = self.test_logits(features, weights)
      return _common.predicted_class(logits if bias is None else logits + bias)
    return self.top_k(features, weights, bias=bias)[0][:, 0]


def by_name(name: str, **hyperparameters) -> BoundLoss:
  """The loss ``name`` of `TABLE` with ``hyperparameters`` over its typical ones.

  A hyperparameter may be a schedule (``step -> value``), evaluated at the
  call's ``step=``.

  Example:
    >>> import jax.numpy as jnp
    >>> loss = by_name("arcface", scale=16.0)  # margin: the typical 0.5
    >>> x, W, y = jnp.array([[1.0, 2.0]]), jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([1])
    >>> loss(x, W, y).round(4), loss.test_logits(x, W).argmax(-1)
    (Array([0.1302], dtype=float32), Array([1], dtype=int32))
  """
  if name not in TABLE:
    raise ValueError(f"unknown loss {name!r}; expected one of {sorted(TABLE)}")
  spec = TABLE[name]
  return BoundLoss(spec, {**spec.typical, **hyperparameters})
