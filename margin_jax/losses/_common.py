"""Shared helpers of the loss library: input checks, target gathers, class reductions.

Every loss calls `prepare_logits` or `prepare_features` first: they check the
static shapes, compute in float32 when the inputs are bf16/f16 (float64 stays
float64, `margin_jax.numerics`) and return the dtype the result is cast back
to. The class-axis reductions take the class shard they run on, ``shard``
(a `margin_jax.sharding.ClassShard`, or ``None``), and use collectives inside one.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from margin_jax import sharding
from margin_jax.numerics import NORM_FLOOR_SQ
from margin_jax.numerics import compute_dtype
from margin_jax.numerics import expand_tangent
from margin_jax.numerics import expand_to
from margin_jax.numerics import normalize
from margin_jax.numerics import result_dtype
from margin_jax.numerics import safe_norm


def check_labels(labels, batch_size: int, name: str = "labels") -> jax.Array:
  labels = jnp.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(
      f"{name} must have shape [batch_size]={[batch_size]}, got shape {labels.shape}."
    )
  if labels.shape[0] != batch_size:
    raise ValueError(
      f"{name} has {labels.shape[0]} entries but the batch has {batch_size} examples."
    )
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"{name} must be integer class indices, got dtype {labels.dtype}.")
  return labels


def check_where(where, batch_size: int) -> jax.Array | None:
  """Checks an optax-style example mask ``where`` [B] (``None``: every example)."""
  if where is None:
    return None
  where = jnp.asarray(where)
  if where.shape != (batch_size,):
    raise ValueError(f"where must have shape [batch_size]=[{batch_size}], got {where.shape}.")
  return where.astype(bool)


def mask_padding(values: jax.Array, fill, *, shard) -> jax.Array:
  """``values`` [..., C_local] with ``fill`` on padded class columns (a no-op unsharded)."""
  if shard is None or shard.valid is None:
    return values
  return jnp.where(shard.valid, values, fill)


def logsumexp_classes(values: jax.Array, *, shard, keepdims: bool = False) -> jax.Array:
  """log-sum-exp over the class (last) axis; sharded, a max and a sum of
  exponentials combined across shards (``pmax``, ``psum``)."""
  if shard is None:
    return jax.nn.logsumexp(values, axis=-1, keepdims=keepdims)
  values = mask_padding(values, -jnp.inf, shard=shard)
  peak = lax.pmax(lax.stop_gradient(jnp.max(values, axis=-1, keepdims=True)), shard.axis_name)
  peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
  total = lax.psum(jnp.sum(jnp.exp(values - peak), axis=-1, keepdims=True), shard.axis_name)
  out = peak + jnp.log(total)
  return out if keepdims else out[..., 0]


def sum_classes(values: jax.Array, *, shard) -> jax.Array:
  """Sum over the class (last) axis, padded columns excluded, across shards."""
  if shard is None:
    return jnp.sum(values, axis=-1)
  return lax.psum(jnp.sum(mask_padding(values, 0.0, shard=shard), axis=-1), shard.axis_name)


def max_classes(values: jax.Array, *, shard) -> jax.Array:
  """Max over the class (last) axis across shards (not differentiable sharded)."""
  if shard is None:
    return jnp.max(values, axis=-1)
  return lax.pmax(jnp.max(mask_padding(values, -jnp.inf, shard=shard), axis=-1), shard.axis_name)


@sharding.accepts_explicit_axes
def predicted_class(logits: jax.Array, *, shard: sharding.ClassShard | None = None) -> jax.Array:
  """``argmax`` over the classes of ``logits`` [B, C] (the first maximum);
  class-sharded (``shard``, inside `margin_jax.parallel.shard_classes`), the
  owner of the global maximum's lowest index."""
  if shard is None:
    return jnp.argmax(logits, axis=-1)
  logits = mask_padding(logits, -jnp.inf, shard=shard)
  local_max = jnp.max(logits, axis=-1)
  best = lax.pmax(local_max, shard.axis_name)
  index = sharding.class_ids(shard, logits.shape[-1])[jnp.argmax(logits, axis=-1)]
  return lax.pmin(jnp.where(local_max == best, index, jnp.iinfo(index.dtype).max), shard.axis_name)


def psum_classes(value: jax.Array, *, shard) -> jax.Array:
  """A partial sum over the local classes completed across shards."""
  return value if shard is None else lax.psum(value, shard.axis_name)


def example_normal(key: jax.Array, shape: tuple[int], dtype, *, shard) -> jax.Array:
  """Standard normal noise, one per example; with the batch split over a mesh
  axis, each shard gets its slice of the draw for the whole batch (so a key
  gives the same noise sharded or not)."""
  if shard is None or shard.batch_axis is None:
    return jax.random.normal(key, shape, dtype=dtype)
  num_shards = lax.axis_size(shard.batch_axis)
  noise = jax.random.normal(key, (num_shards * shape[0],), dtype=dtype)
  return lax.dynamic_slice_in_dim(noise, lax.axis_index(shard.batch_axis) * shape[0], shape[0])


def safe_labels(labels: jax.Array, num_classes: int, where, *, shard) -> jax.Array:
  """Labels for the target gathers: an out-of-range label (negative included)
  becomes ``num_classes``, which every gather fills with NaN, so its loss is
  NaN and never another class's; a masked-out example gets label 0, so it
  computes finite values that `apply_where` then drops."""
  num_classes = sharding.class_count(num_classes, shard)
  labels = jnp.where((labels >= 0) & (labels < num_classes), labels, num_classes)
  return labels if where is None else jnp.where(where, labels, 0)


def mask_rows(values: jax.Array, where) -> jax.Array:
  """``values`` [B, ...] with the masked-out rows set to 0 before any use (the
  double-``where`` pattern): whatever a masked row holds (NaN, Inf) reaches
  neither the loss nor any gradient, W's included."""
  if where is None:
    return values
  return jnp.where(where.reshape((-1,) + (1,) * (values.ndim - 1)), values, 0)


def apply_where(loss: jax.Array, where, out_dtype, valid=True) -> jax.Array:
  """The per-example loss in ``out_dtype``, 0 (and no gradient) where masked
  out, NaN where ``valid`` (`check_range` of a traced hyperparameter) is False."""
  if valid is not True:
    loss = jnp.where(valid, loss, jnp.nan)
  if where is not None:
    loss = jnp.where(where, loss, 0.0)
  return loss.astype(out_dtype)


def concrete_number(value) -> float | int | None:
  """The value of a hyperparameter known at trace time: a Python, NumPy or
  concrete (non-traced) JAX scalar; ``None`` for a traced value, an array or a bool."""
  if isinstance(value, (bool, np.bool_)) or isinstance(value, jax.core.Tracer):
    return None
  if isinstance(value, (int, float)) and not isinstance(value, np.generic):
    return value
  if isinstance(value, (np.generic, np.ndarray, jax.Array)) and np.ndim(value) == 0:
    if jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating):
      return value.item()
  return None


def check_range(name: str, value, *, low=None, high=None, low_open=False, hint=""):
  """Range check of a hyperparameter (``low`` and ``high`` may be other
  hyperparameters). A known value (a Python, NumPy or concrete JAX scalar)
  out of range raises ValueError naming it; a traced one, which has no value
  to check inside ``jit``, gives a traced bool, False out of range (or NaN),
  that the loss turns into NaN (`apply_where`'s ``valid``), as an
  out-of-range label. Returns True for a known value in range."""
  known = [concrete_number(v) for v in (value, low, high)]
  if known[0] is not None and all(
    k is not None or b is None for k, b in zip(known[1:], (low, high))
  ):
    value, low, high = known
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value >= high) or value != value:
      lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
      hi = "" if high is None else f"< {high}"
      raise ValueError(f"{name}={value!r} must be {' and '.join(b for b in (lo, hi) if b)}.{hint}")
    return True
  value = jnp.asarray(value)
  valid = ~jnp.isnan(value)
  if low is not None:
    valid = valid & (value > low if low_open else value >= low)
  if high is not None:
    valid = valid & (value < high)
  return valid


def prepare_logits(logits, labels, *, shard, min_classes: int = 1, where=None):
  """Checks ``logits`` [B, C], ``labels`` [B] and the mask ``where`` [B].

  Returns (logits, labels, where, out_dtype): logits in the compute dtype,
  labels made safe for the target gathers (`safe_labels`).
  """
  logits = jnp.asarray(logits)
  if logits.ndim != 2:
    raise ValueError(f"logits must have shape [batch_size, num_classes], got {logits.shape}.")
  num_classes = sharding.class_count(logits.shape[1], shard)
  if isinstance(num_classes, int) and num_classes < min_classes:
    raise ValueError(f"this loss needs at least {min_classes} classes, got logits {logits.shape}.")
  labels = check_labels(labels, logits.shape[0])
  where = check_where(where, logits.shape[0])
  labels = safe_labels(labels, logits.shape[1], where, shard=shard)
  out_dtype = result_dtype(logits)
  return mask_rows(logits.astype(compute_dtype(out_dtype)), where), labels, where, out_dtype


# Per kind of class-weight argument: its name, layout and the axis of dim.
_WEIGHT_LAYOUTS = {
  "classifier": ("weights", "[dim, num_classes]", 0),
  "stacked": ("weights", "[num_classifiers, dim, num_classes]", 1),
  "centers": ("centers", "[num_classes, dim]", 1),
}


def check_weights(weights, kind: str = "classifier") -> jax.Array:
  """Checks the rank of class weights of ``kind`` (see `_WEIGHT_LAYOUTS`)."""
  name, layout, _ = _WEIGHT_LAYOUTS[kind]
  weights = jnp.asarray(weights)
  if weights.ndim != layout.count(",") + 1:
    raise ValueError(f"{name} must have shape {layout}, got {weights.shape}.")
  return weights


def prepare_arrays(features, weights, *, kind: str = "classifier"):
  """Checks ``features`` [B, d] against class weights of ``kind`` (see
  `prepare_features`); returns both in the compute dtype and the result dtype."""
  features, weights = jnp.asarray(features), check_weights(weights, kind)
  if features.ndim != 2:
    raise ValueError(f"features must have shape [batch_size, dim], got {features.shape}.")
  name, layout, dim_axis = _WEIGHT_LAYOUTS[kind]
  if weights.shape[dim_axis] != features.shape[1]:
    raise ValueError(
      f"{name} {weights.shape} (layout {layout}) do not match features {features.shape}: "
      f"expected dim {features.shape[1]} on axis {dim_axis}."
    )
  out_dtype = result_dtype(features, weights)
  dtype = compute_dtype(out_dtype)
  return features.astype(dtype), weights.astype(dtype), out_dtype


def prepare_features(features, weights, labels, *, shard, kind: str = "classifier", where=None):
  """Checks ``features`` [B, d], class weights of ``kind``, ``labels`` [B] and
  the mask ``where`` [B].

  ``kind``: ``"classifier"`` W [d, C], ``"stacked"`` [V, d, C] or
  ``"centers"`` [C, d]. Returns (features, weights, labels, where, out_dtype)
  with the arrays cast to the compute dtype and the labels made safe for the
  target gathers (`safe_labels`).
  """
  features, weights, out_dtype = prepare_arrays(features, weights, kind=kind)
  labels = check_labels(labels, features.shape[0])
  where = check_where(where, features.shape[0])
  num_classes = weights.shape[0] if kind == "centers" else weights.shape[-1]
  labels = safe_labels(labels, num_classes, where, shard=shard)
  return mask_rows(features, where), weights, labels, where, out_dtype


def check_bias(bias, num_classes: int, dtype) -> jax.Array:
  bias = jnp.asarray(bias, dtype)
  if bias.shape != (num_classes,):
    raise ValueError(f"bias must have shape [num_classes]={[num_classes]}, got {bias.shape}.")
  return bias


def check_choice(name: str, value, choices) -> None:
  if value not in choices:
    raise ValueError(f"{name}={value!r} is not one of {sorted(choices)}.")


def cast_to_common_vma(*arrays):
  """Inside ``shard_map``: each array typed as varying over every mesh axis
  any of them varies over (a no-op outside), so that a custom JVP's primal and
  tangent outputs have one type; the casts' transposes sum the per-shard
  cotangents across shards."""
  varying = [jax.typeof(a).manual_axis_type.varying for a in arrays]
  axes = frozenset().union(*varying)
  return tuple(
    lax.pcast(a, tuple(sorted(axes - v)), to="varying") if axes - v else a
    for a, v in zip(arrays, varying)
  )


@jax.custom_jvp
def _matmul_unit_columns(a: jax.Array, weights: jax.Array) -> jax.Array:
  return divide_columns(a @ weights, safe_norm(weights, axis=0))


@_matmul_unit_columns.defjvp
def _matmul_unit_columns_jvp(primals, tangents):
  # out = (a @ W) / n_j with n_j = ||W_j||:
  #   d out = (da @ W + a @ dW) / n - out (W_j . dW_j) / n_j^2,
  # the second term zero where n_j is floored (no derivative through the floor).
  # Its transpose is the backward pass  d a = (g / n) W^T,
  # d W_j = a^T (g / n)_j - W_j sum_b g_bj out_bj / n_j^2, which keeps one
  # [B, C] array (out) alive rather than autodiff's two (a @ W and out).
  (a, weights), (d_a, d_weights) = primals, tangents
  norms = safe_norm(weights, axis=0)
  out = divide_columns(a @ weights, norms)
  radial = jnp.sum(weights * d_weights, axis=0) / (norms * norms)
  radial = jnp.where(norms * norms > NORM_FLOOR_SQ, radial, 0.0)
  tangent = divide_columns(d_a @ weights + a @ d_weights, norms)
  return out, tangent - out * expand_tangent(radial, 0, a.shape[0])


def matmul_unit_columns(a: jax.Array, weights: jax.Array) -> jax.Array:
  """``a @ (W / ||W_j||)`` [B, C] for ``a`` [B, d] and W [d, C], computed as
  ``(a @ W) / ||W_j||`` (no normalised [d, C] copy of W) with a custom JVP
  whose transpose keeps one [B, C] array alive in reverse mode (the result)
  rather than autodiff's two (the raw product and the result)."""
  return _matmul_unit_columns(*cast_to_common_vma(a, weights))


def divide_columns(a: jax.Array, v: jax.Array) -> jax.Array:
  """a [B, C] / v [C], each column by its entry (a fast column-sum gradient for v)."""
  return a / expand_to(v, 0, a.shape[0])


def _owned_gather(
  gather, local_count: int, labels: jax.Array, batch_axis_of_result: int, ndim: int, shard
):
  """``gather(local labels)`` on the shard that owns each label, summed across
  shards (NaN where no shard owns it: an out-of-range label)."""
  local = labels - lax.axis_index(shard.axis_name) * local_count
  inside = (local >= 0) & (local < local_count)
  local = jnp.clip(local, 0, local_count - 1)
  if shard.valid is not None:
    inside = inside & shard.valid[local]
  mask_shape = [1] * ndim
  mask_shape[batch_axis_of_result] = labels.shape[0]
  gathered = jnp.where(inside.reshape(mask_shape), gather(local), 0.0)
  total = lax.psum(gathered, shard.axis_name)
  owned = lax.psum(inside.astype(jnp.int32), shard.axis_name) > 0
  return jnp.where(owned.reshape(mask_shape), total, jnp.nan)


@jax.custom_jvp
def _take_target(values: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.take_along_axis(values, labels[:, None], axis=-1, mode="fill")[:, 0]


@_take_target.defjvp
def _take_target_jvp(primals, tangents):
  # The tangent as a masked sum over the classes: its transpose (the reverse-mode
  # cotangent) is a select, which fuses into its consumers; a gather's would be
  # a scatter into a zero [B, C] array, one more [B, C] buffer.
  (values, labels), (d_values, _) = primals, tangents
  is_target = labels[:, None] == jnp.arange(values.shape[1])
  return _take_target(values, labels), jnp.sum(jnp.where(is_target, d_values, 0.0), axis=-1)


@sharding.accepts_explicit_axes
def take_target(
  values: jax.Array, labels: jax.Array, *, shard: sharding.ClassShard | None = None
) -> jax.Array:
  """values[i, labels[i]] for [B, C] values (NaN for an out-of-range label); class-sharded
  (``shard``, inside `margin_jax.parallel.shard_classes`), from the shard that owns the label."""
  if shard is None:
    return _take_target(values, labels)
  return _owned_gather(
    lambda local: jnp.take_along_axis(values, local[:, None], axis=-1)[:, 0],
    values.shape[-1],
    labels,
    0,
    1,
    shard,
  )


def take_classes(values: jax.Array, labels: jax.Array, axis: int, *, shard) -> jax.Array:
  """``jnp.take(values, labels, axis)`` along the class ``axis`` (NaN for an
  out-of-range label): W [d, C] -> [d, B], centres [C, d] -> [B, d]."""
  if shard is None:
    return jnp.take(values, labels, axis=axis, mode="fill")
  return _owned_gather(
    lambda local: jnp.take(values, local, axis=axis),
    values.shape[axis],
    labels,
    axis,
    values.ndim,
    shard,
  )


def target_mask(labels: jax.Array, num_classes: int, *, shard) -> jax.Array:
  """Boolean [B, C] mask of each example's target class (fuses, no one-hot
  matmul); ``num_classes`` is the local column count when sharded."""
  ids = jnp.arange(num_classes) if shard is None else sharding.class_ids(shard, num_classes)
  return labels[:, None] == ids[None, :]


def target_columns(weights: jax.Array, labels: jax.Array, *, shard) -> jax.Array:
  """The target classifiers W_{y_i} as rows, [B, d], from weights [d, C]."""
  return take_classes(weights, labels, axis=1, shard=shard).T


def cross_entropy(logits: jax.Array, labels: jax.Array, *, shard) -> jax.Array:
  """-log softmax(logits)[y] [B]: the log-sum-exp over the classes minus the target logit."""
  return logsumexp_classes(logits, shard=shard) - take_target(logits, labels, shard=shard)


def cross_entropy_with_target(
  logits: jax.Array, labels: jax.Array, target_logit: jax.Array, *, shard
) -> jax.Array:
  """-log softmax with the target logit replaced by ``target_logit`` [B].

  The replacement is a fused select, so no [B, C] one-hot or scatter is built.
  """
  is_target = target_mask(labels, logits.shape[1], shard=shard)
  replaced = jnp.where(is_target, target_logit[:, None], logits)
  return logsumexp_classes(replaced, shard=shard) - target_logit


def target_norm_product(features, weights, labels, *, shard):
  """||W_y|| ||x|| per example, shape [B]."""
  target = target_columns(weights, labels, shard=shard)
  return safe_norm(features, axis=1) * safe_norm(target, axis=1)


def clip_cosine(target_logit, norm_product):
  """cos(theta_y) = W_y^T x / (||W_y|| ||x||), clipped to [-1, 1] against rounding."""
  return jnp.clip(target_logit / norm_product, -1.0, 1.0)


def target_cosines(features, weights, labels, *, shard):
  """cos(theta_y) [B] from the target columns alone (one gather of W_y), clipped
  to [-1, 1]; NaN for an out-of-range label."""
  target = target_columns(weights, labels, shard=shard).astype(features.dtype)
  norm_product = safe_norm(features, axis=1) * safe_norm(target, axis=1)
  return clip_cosine(jnp.sum(features * target, axis=1), norm_product)


def cosine_logits(features, weights):
  """cos(theta_j) for every class, [B, C]: unit features times unit class columns.

  Computed as (x/||x|| @ W) / ||W_j|| (`matmul_unit_columns`), which
  equals x/||x|| @ W/||W_j|| but never builds the normalised [d, C] copy of
  W: its forward and backward passes over [d, C] cost more than the matmul's
  own memory traffic at many classes.
  """
  return matmul_unit_columns(normalize(features, axis=1), weights)


def check_integer_margin(margin) -> int:
  if isinstance(margin, bool) or not isinstance(margin, int) or margin < 1:
    raise ValueError(
      f"margin must be a Python integer >= 1 (static), got {margin!r}; "
      "L-Softmax's psi(theta) is defined for integer m only."
    )
  return margin


def cos_sin_multiple(cosine: jax.Array, m: int) -> tuple[jax.Array, jax.Array]:
  r"""cos(m theta) and sin(m theta) as polynomials of c = cos(theta), theta in [0, pi].

  .. math::
    \cos m\theta = \sum_{n} (-1)^n \binom{m}{2n} c^{m-2n} (1 - c^2)^n, \qquad
    \sin m\theta = \sin\theta \sum_{n} (-1)^n \binom{m}{2n+1} c^{m-2n-1} (1 - c^2)^n

  with sin(theta) = sqrt(max(1 - c^2, eps)) >= 0: the floor keeps the sqrt's
  gradient finite at c = +-1, and no arccos is differentiated.
  """
  sine = jnp.sqrt(jnp.maximum(1.0 - cosine * cosine, jnp.finfo(cosine.dtype).eps))
  if m == 1:
    return cosine, sine
  sine_sq = 1.0 - cosine * cosine
  cos_m = sum(
    (-1) ** n * math.comb(m, 2 * n) * cosine ** (m - 2 * n) * sine_sq**n for n in range(m // 2 + 1)
  )
  sin_m = sine * sum(
    (-1) ** n * math.comb(m, 2 * n + 1) * cosine ** (m - 2 * n - 1) * sine_sq**n
    for n in range((m - 1) // 2 + 1)
  )
  return cos_m, sin_m
