"""The registry of losses, `TABLE` (name -> `LossSpec`, each declared once in
its family's module), and the engines' entry points by declaration:
`by_name` -> `BoundLoss` (materialised or streamed), `chunked` (the streamed
engine, `margin_jax.losses._streamed`) and `register` (your own loss).

Training (`margin_jax.training.objectives`), the sharded example, the tests and
the benchmarks iterate over `TABLE` and call losses through `BoundLoss`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from margin_jax import sharding
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
from margin_jax.losses._spec import CLASSIFY
from margin_jax.losses._spec import INPUTS
from margin_jax.losses._spec import LossSpec

_FAMILIES = (
  _logit_losses,
  _angular,
  _noisy_virtual,
  _ensemble,
  _cosine_margins,
  _subcenter,
  _face_margins,
  _centers,
)
TABLE: dict[str, LossSpec] = {spec.name: spec for family in _FAMILIES for spec in family.SPECS}
# The authors' released lambda annealing settings of the built-in L-/A-Softmax
# (their declarations' ``lambda_schedule``), for `lambda_schedule(**settings, num_steps=N)`.
PUBLISHED_LAMBDA = {name: dict(s.lambda_schedule) for name, s in TABLE.items() if s.lambda_schedule}


def register(spec: LossSpec) -> LossSpec:
  """Adds your own loss to `TABLE`: `by_name`, `chunked` (if it declares a
  ``streamed`` form) and `margin_jax.parallel.shard_classes` then take it as
  they take the built-in ones, and so does the trainer's objective
  (`margin_jax.training.objectives.get_objective` with ``config.loss`` its
  name) in the process that registered it, with its ``typical``
  hyperparameters.

  Args:
    spec: its declaration, e.g. from `declare_cosine_margin`, or a
      `LossSpec` written out.

  Returns:
    ``spec``.

  Raises:
    ValueError: the name is taken, or a field is not one the engines know.
  """
  if spec.name in TABLE:
    raise ValueError(f"a loss named {spec.name!r} is registered already ({TABLE[spec.name].fn}).")
  _common.check_choice(f"{spec.name}: inputs", spec.inputs, INPUTS)
  _common.check_choice(f"{spec.name}: classify", spec.classify, CLASSIFY)
  TABLE[spec.name] = spec
  return spec


def _declaration_of(fn: Callable) -> LossSpec | None:
  return next((spec for spec in TABLE.values() if spec.fn is fn), None)


def _check_chunk_size(chunk_size) -> None:
  if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
    raise ValueError(f"chunk_size={chunk_size!r} must be a Python int >= 1.")


def chunked(fn: Callable[..., jax.Array], *, chunk_size: int) -> Callable[..., jax.Array]:
  r"""``fn`` streamed over blocks of ``chunk_size`` classes: the [B, C] logits never exist.

  For a feature loss the result has ``fn``'s signature and values; a logit
  loss becomes fused linear + loss,
  ``(features, weights, labels, *, <fn's keywords>, bias=None, where=None, shard=None)``
  equal to ``fn(features @ weights + bias, labels, ...)``. Values and
  ``jax.grad`` w.r.t. features, weights and bias equal the materialised
  loss's to float32 rounding, for any number of classes. Memory beyond the
  inputs and W's gradient: a few [B, chunk_size] blocks and [B]-sized
  statistics (EM-Softmax's HSIC term, when its weight is not 0, keeps its
  materialised [V, d, C] unit columns). Inside
  `margin_jax.parallel.shard_classes`, ``chunk_size`` counts the device's
  local classes. Reverse mode only (a ``jax.custom_vjp``): ``jax.jvp`` and
  ``jacfwd`` raise a TypeError saying so; use the materialised loss for
  forward mode (``jax.hessian``, reverse over reverse, works).

  Streams every loss of `TABLE` that declares a ``streamed`` form: all the
  built-in ones, with the center row's softmax through `BoundLoss.streamed`
  (the center term itself is a [B, d] gather). Sub-center ArcFace's gradient
  goes to the first of exactly tied sub-centres (the materialised max splits
  it); Noisy Softmax and ElasticFace draw the same noise from the same key.

  Args:
    fn: a loss of `margin_jax.losses` (or one you `register`).
    chunk_size: classes per block (static), >= 1; a multiple of 128 suits
      accelerators (e.g. 8192).

  Returns:
    The streamed loss, per example ``[batch_size]``.

  Raises:
    ValueError: ``fn`` cannot be streamed (named), or a bad ``chunk_size``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from margin_jax import losses
    >>> x, W = jax.random.normal(jax.random.key(0), (4, 8)), jax.random.normal(jax.random.key(1), (8, 50))
    >>> y = jnp.array([0, 7, 49, 3])
    >>> streamed = losses.chunked(losses.arcface_loss, chunk_size=16)
    >>> bool(jnp.allclose(streamed(x, W, y, scale=16.0, margin=0.5),
    ...                   losses.arcface_loss(x, W, y, scale=16.0, margin=0.5), atol=1e-5))
    True
  """
  spec = _declaration_of(fn)
  if spec is None or spec.streamed is None:
    name = getattr(fn, "__name__", repr(fn))
    streamable = sorted({s.fn.__name__ for s in TABLE.values() if s.streamed is not None})
    raise ValueError(
      f"{name} cannot be streamed over class chunks; chunked() streams {streamable}"
      " (a loss you register streams when its LossSpec declares streamed=)."
    )
  _check_chunk_size(chunk_size)
  return _streamed.stream(spec, chunk_size=chunk_size)


@dataclasses.dataclass(frozen=True)
class BoundLoss:
  """A loss of `TABLE` with its hyperparameters bound: the one path from a
  name to a call,
  ``loss(features, weights, labels, *, key=None, where=None, bias=None, centers=None, step=None,
  state=None, shard=None) -> [B]``.

  ``weights`` is W ``[d, C]`` (stacked ``[V, d, C]`` for EM-Softmax, the
  sub-centres ``[K, d, C]`` for Sub-center ArcFace); logit losses get
  ``features @ W + bias``; the center row is Wen et al.'s joint objective
  ``softmax(x @ W + bias) + center_weight * center_loss(x, centers)`` (eq 5).
  ``key``: Noisy Softmax's noise, ElasticFace's margins. A hyperparameter
  bound as a callable is an optax-style schedule, evaluated at ``step`` (e.g.
  L-Softmax's ``lam`` from `margin_jax.losses.lambda_schedule`). ``state``:
  the current values of the loss's training state (`initial_state`,
  `update_state`), over the bound ones. ``shard``: the class shard the call
  runs on (`margin_jax.sharding.ClassShard`, inside ``shard_map``; the
  methods take it too). ``chunk_size`` (see `streamed`): the loss runs over
  blocks of that many classes, ``None`` materialised.
  """

  spec: LossSpec
  hyperparameters: Mapping[str, Any]
  chunk_size: int | None = None

  def streamed(self, *, chunk_size: int) -> BoundLoss:
    """This loss streamed over blocks of ``chunk_size`` classes
    (`margin_jax.losses.chunked`): logit losses become fused linear + loss, so
    the [B, C] logits never form (the center row streams its softmax).
    Raises ValueError for a loss that cannot stream."""
    streamed = _logit_losses.softmax_loss if self.spec.inputs == "centers" else self.spec.fn
    chunked(streamed, chunk_size=chunk_size)  # the checks
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
    shard=None,
  ):
    name, inputs = self.spec.name, self.spec.inputs
    kwargs = {**self._at_step(step), **(state or {}), "shard": shard}
    fn = self.spec.fn
    if self.chunk_size is not None and inputs != "centers":
      fn = chunked(fn, chunk_size=self.chunk_size)
      if inputs == "logits":
        return fn(features, weights, labels, **kwargs, bias=bias, where=where)
    if where is not None:  # before the logits form, so a masked row cannot reach W
      features = _common.mask_rows(features, _common.check_where(where, features.shape[0]))
    if inputs == "logits":
      logits = features @ weights if bias is None else features @ weights + bias
      return self.spec.fn(logits, labels, **kwargs, where=where)
    if inputs == "centers":
      if centers is None or "center_weight" not in kwargs:
        raise ValueError(
          f"{name} is softmax + center_weight * center loss: bind center_weight= and pass"
          " centers=[C, d]."
        )
      softmax = BoundLoss(TABLE["softmax"], {}, self.chunk_size)(
        features, weights, labels, where=where, bias=bias, shard=shard
      )
      return softmax + kwargs["center_weight"] * self.spec.fn(
        features, centers, labels, where=where, shard=shard
      )
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

  def update_state(
    self, features, weights, labels, state, *, where=None, axis_name=None, shard=None
  ):
    """The training state after this batch (before its loss, as the authors
    update it; no gradient), global over the mapped ``axis_name``."""
    if self.spec.update_state is None:
      return state
    # A row whose label is out of range is skipped, as if masked (the state stays finite).
    labels = jnp.asarray(labels)
    known = (labels >= 0) & (labels < sharding.class_count(weights.shape[-1], shard))
    where = known if where is None else known & jnp.asarray(where, bool)
    return self.spec.update_state(
      features, weights, labels, state, where=where, axis_name=axis_name, shard=shard
    )

  def test_logits(self, features, weights):
    """The logits ``[B, C]`` a model trained with this loss classifies with."""
    if self.spec.classify == "subcenter":
      return _subcenter.subcenter_cosines(features, weights)
    return _test_logits.inference_logits(features, weights, cosine=self.spec.classify == "cosine")

  def top_k(self, features, weights, *, k: int = 1, bias=None, shard=None):
    """The ``k`` classes [B, k] with the largest `test_logits` (+ ``bias``),
    best first, and those logits [B, k]; over blocks of ``chunk_size``
    classes when it is set, so no [B, C] array forms (`_streamed.top_classes`)."""
    chunk_size = self.chunk_size or weights.shape[-1]

    @sharding.accepts_explicit_axes
    def top_k(features, weights, bias):
      return _streamed.top_classes(
        self.test_logits, features, weights, k=k, chunk_size=chunk_size, bias=bias, shard=shard
      )

    return top_k(features, weights, bias)

  def predicted_class(self, features, weights, *, bias=None, shard=None):
    """The class [B] with the largest `test_logits` (+ ``bias``), the first
    of ties (`margin_jax.losses.predicted_class`); streamed as `top_k`."""
    if self.chunk_size is None:
      logits = self.test_logits(features, weights)
      return _common.predicted_class(logits if bias is None else logits + bias, shard=shard)
    return self.top_k(features, weights, bias=bias, shard=shard)[0][:, 0]


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
