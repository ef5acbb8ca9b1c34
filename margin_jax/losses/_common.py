"""Shared helpers of the loss library: input checks, dtype policy, norms.

Every loss calls :func:`prepare` first: it checks the static shapes, computes in
float32 when the inputs are bf16/f16 (float64 stays float64) and returns the
dtype the result is cast back to.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

_HALF_DTYPES = (jnp.bfloat16, jnp.float16)


def result_dtype(*arrays) -> jnp.dtype:
  """The promoted floating dtype of the inputs (the dtype a loss returns)."""
  dtype = jnp.result_type(*arrays)
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jnp.result_type(dtype, jnp.float32)
  return dtype


def compute_dtype(dtype) -> jnp.dtype:
  """Half precision is computed in float32; float32/float64 are kept."""
  return jnp.float32 if dtype in _HALF_DTYPES else dtype


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


def safe_labels(labels: jax.Array, num_classes: int, where) -> jax.Array:
  """Labels for the target gathers: an out-of-range label (negative included)
  becomes ``num_classes``, which every gather fills with NaN, so its loss is
  NaN and never another class's; a masked-out example gets label 0, so it
  computes finite values that `apply_where` then drops."""
  labels = jnp.where((labels >= 0) & (labels < num_classes), labels, num_classes)
  return labels if where is None else jnp.where(where, labels, 0)


def apply_where(loss: jax.Array, where, out_dtype) -> jax.Array:
  """The per-example loss in ``out_dtype``, 0 (and no gradient) where masked out."""
  if where is not None:
    loss = jnp.where(where, loss, 0.0)
  return loss.astype(out_dtype)


def check_static(name: str, value, *, low=None, high=None, low_open=False, hint="") -> None:
  """Range check of a hyperparameter given as a Python number; a traced or
  array value is not checked (inside ``jit`` it has no value to check)."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return
  too_low = low is not None and (value <= low if low_open else value < low)
  if too_low or (high is not None and value >= high) or value != value:
    lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
    hi = "" if high is None else f"< {high}"
    raise ValueError(f"{name}={value!r} must be {' and '.join(b for b in (lo, hi) if b)}.{hint}")


def prepare_logits(logits, labels, *, min_classes: int = 1, where=None):
  """Checks ``logits`` [B, C], ``labels`` [B] and the mask ``where`` [B].

  Returns (logits, labels, where, out_dtype): logits in the compute dtype,
  labels made safe for the target gathers (`safe_labels`).
  """
  logits = jnp.asarray(logits)
  if logits.ndim != 2:
    raise ValueError(f"logits must have shape [batch_size, num_classes], got {logits.shape}.")
  if logits.shape[1] < min_classes:
    raise ValueError(f"this loss needs at least {min_classes} classes, got logits {logits.shape}.")
  labels = check_labels(labels, logits.shape[0])
  where = check_where(where, logits.shape[0])
  labels = safe_labels(labels, logits.shape[1], where)
  out_dtype = result_dtype(logits)
  return logits.astype(compute_dtype(out_dtype)), labels, where, out_dtype


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


def prepare_features(features, weights, labels, *, kind: str = "classifier", where=None):
  """Checks ``features`` [B, d], class weights of ``kind``, ``labels`` [B] and
  the mask ``where`` [B].

  ``kind``: ``"classifier"`` W [d, C], ``"stacked"`` [V, d, C] or
  ``"centers"`` [C, d]. Returns (features, weights, labels, where, out_dtype)
  with the arrays cast to the compute dtype and the labels made safe for the
  target gathers (`safe_labels`).
  """
  features, weights = jnp.asarray(features), check_weights(weights, kind)
  if features.ndim != 2:
    raise ValueError(f"features must have shape [batch_size, dim], got {features.shape}.")
  name, layout, dim_axis = _WEIGHT_LAYOUTS[kind]
  if weights.shape[dim_axis] != features.shape[1]:
    raise ValueError(
      f"{name} {weights.shape} (layout {layout}) do not match features {features.shape}: "
      f"expected dim {features.shape[1]} on axis {dim_axis}."
    )
  labels = check_labels(labels, features.shape[0])
  where = check_where(where, features.shape[0])
  num_classes = weights.shape[0] if kind == "centers" else weights.shape[-1]
  labels = safe_labels(labels, num_classes, where)
  out_dtype = result_dtype(features, weights)
  dtype = compute_dtype(out_dtype)
  return features.astype(dtype), weights.astype(dtype), labels, where, out_dtype


def check_choice(name: str, value, choices) -> None:
  if value not in choices:
    raise ValueError(f"{name}={value!r} is not one of {sorted(choices)}.")


# Norms are floored at 1e-12 (as torch's F.normalize does): below it a vector
# counts as zero, and 1/norm^2 stays finite in float32.
_NORM_FLOOR_SQ = 1e-24


# XLA:CPU sums over a non-minor axis (the d axis of W [d, C], the batch axis
# of [B, C]) about 9x slower than the same sum written as a ones-vector matmul
# (W [512, 10^5]: 5.7 s against 0.64 s on a 2-core Xeon). Column sums, and the
# column sums that autodiff makes of broadcasts along such an axis, therefore
# go through ``ones @ a`` (full precision, so accelerators do not round).


def _is_second_minor(axis: int, ndim: int) -> bool:
  return ndim >= 2 and axis % ndim == ndim - 2


def sum_over_axis(a: jax.Array, axis: int) -> jax.Array:
  """``jnp.sum(a, axis)``; over the second-minor axis as a ones-vector matmul."""
  if not _is_second_minor(axis, a.ndim):
    return jnp.sum(a, axis=axis)
  ones = jnp.ones((1, a.shape[axis]), a.dtype)
  return jnp.matmul(ones, a, precision=lax.Precision.HIGHEST)[..., 0, :]


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _broadcast_second_minor(v: jax.Array, axis: int, size: int) -> jax.Array:
  return jnp.broadcast_to(jnp.expand_dims(v, axis), v.shape[:axis] + (size,) + v.shape[axis:])


@_broadcast_second_minor.defjvp
def _broadcast_second_minor_jvp(axis, size, primals, tangents):
  (v,), (dv,) = primals, tangents
  # The tangent as an outer product, so that its transpose (the reverse-mode
  # column sum) is the fast ones-vector matmul rather than a reduction.
  ones = jnp.ones((size, 1), v.dtype)
  tangent = jnp.matmul(ones, jnp.expand_dims(dv, axis), precision=lax.Precision.HIGHEST)
  return _broadcast_second_minor(v, axis, size), tangent


def expand_to(v: jax.Array, axis: int, size: int) -> jax.Array:
  """``v`` with a new ``axis`` of length ``size`` (a broadcast), gradient-friendly."""
  ndim = v.ndim + 1
  axis = axis % ndim
  if _is_second_minor(axis, ndim):
    return _broadcast_second_minor(v, axis, size)
  return jnp.expand_dims(v, axis)  # broadcasts at use; its column sum is over a minor axis


def safe_norm(x: jax.Array, axis: int) -> jax.Array:
  """L2 norm, floored at 1e-12, whose gradient is finite (zero) at x = 0."""
  return jnp.sqrt(jnp.maximum(sum_over_axis(x * x, axis), _NORM_FLOOR_SQ))


def normalize(x: jax.Array, axis: int) -> jax.Array:
  """x / ||x|| along ``axis``; a zero vector stays zero with finite gradients."""
  return x / expand_to(safe_norm(x, axis), axis, x.shape[axis])


def divide_columns(a: jax.Array, v: jax.Array) -> jax.Array:
  """a [B, C] / v [C], each column by its entry (a fast column-sum gradient for v)."""
  return a / expand_to(v, 0, a.shape[0])


def take_target(values: jax.Array, labels: jax.Array) -> jax.Array:
  """values[i, labels[i]] for [B, C] values (NaN for an out-of-range label)."""
  return jnp.take_along_axis(values, labels[:, None], axis=-1, mode="fill")[:, 0]


def target_mask(labels: jax.Array, num_classes: int) -> jax.Array:
  """Boolean [B, C] mask of each example's target class (fuses, no one-hot matmul)."""
  return labels[:, None] == jnp.arange(num_classes)[None, :]


def target_columns(weights: jax.Array, labels: jax.Array) -> jax.Array:
  """The target classifiers W_{y_i} as rows, [B, d], from weights [d, C]."""
  return jnp.take(weights, labels, axis=1, mode="fill").T


def cross_entropy_with_target(
  logits: jax.Array, labels: jax.Array, target_logit: jax.Array
) -> jax.Array:
  """-log softmax with the target logit replaced by ``target_logit`` [B].

  The replacement is a fused select, so no [B, C] one-hot or scatter is built.
  """
  replaced = jnp.where(target_mask(labels, logits.shape[1]), target_logit[:, None], logits)
  return jax.nn.logsumexp(replaced, axis=-1) - target_logit
