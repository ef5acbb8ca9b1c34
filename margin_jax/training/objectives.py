"""Training objectives built from the one table of losses.

A loss's keyword arguments live in the config under their own names, one
sub-config per loss (``config.loss_kwargs.<loss>``, `loss_kwargs_config`), and
`bound_loss` turns ``config.loss`` into a
`margin_jax.losses.BoundLoss` (no loss math here), which the trainer calls on
the model outputs of :class:`margin_jax.models.MarginNet` (``features`` [B, d],
``weights`` [d, C] or [V, d, C], optional ``bias`` and ``centers``). An
`Objective` adds the test-time logits and the diagnostics of the metrics log.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from margin_jax import losses
from margin_jax import parallel

LOSSES = tuple(losses.TABLE)


@dataclasses.dataclass(frozen=True)
class Objective:
  """The config's loss, resolved once (`get_objective`), called on the model
  outputs, with its test-time prediction and the diagnostics of the metrics log.

  Attributes:
    name: the config string.
    bound: the loss with the config's keyword arguments
      (`margin_jax.losses.BoundLoss`), streamed over blocks of
      ``config.class_chunk_size`` classes when that is set.
    saturation_threshold: P(y|x) above which an example counts as saturated.
    sample_rate: PartialFC's negative-class sampling in a class-sharded step:
      the loss runs over a sample of each shard's classes
      (`margin_jax.parallel.sample_shard`; the accuracy and the evaluation
      over all of them); ``None``: all classes.

  Every method takes ``shard``, the class shard of a class-sharded step
  (`margin_jax.sharding.ClassShard`).
  """

  name: str
  bound: losses.BoundLoss
  saturation_threshold: float = 0.99
  sample_rate: float | None = None

  @property
  def class_chunk_size(self) -> int:
    return self.bound.chunk_size or 0

  @property
  def takes_centers(self) -> bool:
    """Whether the model keeps class centers for it (the center row)."""
    return self.bound.spec.inputs == "centers"

  @property
  def initial_state(self) -> dict:
    """The loss's training state at step 0 (float32 scalars; ``{}`` for most)."""
    return {k: jnp.float32(v) for k, v in self.bound.initial_state.items()}

  @property
  def lam(self) -> Callable[[jax.Array], jax.Array] | None:
    """The L-/A-Softmax lambda schedule (``step -> lambda``), else ``None``."""
    return self.bound.hyperparameters.get("lam") if self.bound.spec.lambda_schedule else None

  def loss(self, outputs, labels, *, step, key, state=None, shard=None) -> jax.Array:
    """The per-example loss [B]; ``step`` (traced) feeds hyperparameter
    schedules, ``key`` the Noisy Softmax noise and ElasticFace's margins,
    ``state`` the loss's training state (``None``: its initial values)."""
    if self.sample_rate is not None:
      local_count = outputs["weights"].shape[-1]
      classes, labels, shard = parallel.sample_shard(
        jax.random.fold_in(key, 1), labels, shard, local_count, sample_rate=self.sample_rate
      )
      outputs = parallel.take_classes(outputs, classes)
    return self.bound(
      outputs["features"],
      outputs["weights"],
      labels,
      key=key,
      bias=outputs.get("bias"),
      centers=outputs.get("centers"),
      step=step,
      state=state,
      shard=shard,
    )

  def update_state(self, outputs, labels, state, *, axis_name=None, shard=None) -> dict:
    """The loss's training state after this batch (AdaFace's norm statistics,
    CurricularFace's t; ``{}`` for the others), computed before the loss as
    the authors do, global over the mapped ``axis_name``."""
    return self.bound.update_state(
      outputs["features"], outputs["weights"], labels, state, axis_name=axis_name, shard=shard
    )

  def predicted_class(self, outputs, *, shard=None) -> jax.Array:
    """The test-time prediction [B] (`margin_jax.losses.BoundLoss.predicted_class`),
    over class blocks when ``class_chunk_size`` is set."""
    return self.bound.predicted_class(
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
    classify = self.bound.spec.classify
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


# Keywords every loss takes from the engine, not from the config.
_ENGINE_KEYWORDS = ("where", "shard", "bias")


def loss_kwargs_config(**common) -> ml_collections.ConfigDict:
  """One sub-config per loss of `margin_jax.losses.TABLE`, holding its keyword
  arguments under their own names: its declaration's ``typical`` values and
  the defaults of its other keyword-only hyperparameters; a loss whose ``lam``
  is annealed (L-/A-Softmax) holds the settings of its published
  `margin_jax.losses.lambda_schedule` instead, stretched to the run's
  ``num_train_steps`` in training. A keyword of ``common`` (e.g.
  ``scale=16.0``) is set for every loss that takes it.

  Example:
    >>> kwargs = loss_kwargs_config(scale=16.0)
    >>> kwargs.arcface.to_dict()
    {'margin': 0.5, 'scale': 16.0, 'theta_overflow': 'plain'}
    >>> kwargs.l_softmax.lam.lambda_min
    0.0
  """
  out = ml_collections.ConfigDict()
  for name, spec in losses.TABLE.items():
    defaults = {
      k: p.default
      for k, p in inspect.signature(spec.fn).parameters.items()
      if p.kind == p.KEYWORD_ONLY and p.default is not p.empty and k not in _ENGINE_KEYWORDS
    }
    kwargs = {**defaults, **spec.typical}
    if spec.lambda_schedule:
      kwargs["lam"] = dict(spec.lambda_schedule)
    kwargs.update((k, v) for k, v in common.items() if k in kwargs)
    out[name] = dict(sorted(kwargs.items()))
  return out


def loss_keywords(config) -> dict:
  """The keyword arguments of ``config.loss``: its sub-config
  ``config.loss_kwargs.<loss>`` (`loss_kwargs_config`), with an annealed
  ``lam``'s settings turned into its schedule over ``config.num_train_steps``."""
  kwargs = config.loss_kwargs.get(config.loss)
  kwargs = {} if kwargs is None else kwargs.to_dict()
  if isinstance(kwargs.get("lam"), dict):
    kwargs["lam"] = losses.lambda_schedule(**kwargs["lam"], num_steps=config.num_train_steps)
  return kwargs


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
  """The objective of ``config.loss`` with the config's keyword arguments: the
  trainer's one resolution of the loss's name.

  Args:
    config: a ``ConfigDict`` with the fields of ``experiments/configs/default.py``.

  Raises:
    ValueError: as `bound_loss`; a bias with a loss that takes none; a
      ``sample_rate`` outside (0, 1] or without a mesh.
  """
  loss = bound_loss(config)
  if config.use_bias and not loss.spec.takes_bias:
    raise ValueError(f"config.use_bias is not supported by {config.loss!r}")
  sample_rate = config.get("sample_rate")
  if sample_rate is not None:
    if not config.mesh_shape:
      raise ValueError(
        f"config.sample_rate={sample_rate} samples each class shard's classes: it needs a"
        ' class-sharded step, e.g. --config.mesh_shape="(2, 4)".'
      )
    if not 0.0 < sample_rate <= 1.0:
      raise ValueError(f"config.sample_rate={sample_rate} must be in (0, 1] or None.")
  return Objective(
    config.loss, loss, saturation_threshold=config.saturation_threshold, sample_rate=sample_rate
  )
