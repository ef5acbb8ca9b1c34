"""Shared helpers of the loss library: input checks, dtype policy, norms.

Every loss calls :func:`prepare` first: it checks the static shapes, computes in
float32 when the inputs are bf16/f16 (float64 stays float64) and returns the
dtype the result is cast back to.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
        f"{name} must have shape [batch_size]={[batch_size]}, got shape {labels.shape}.")
  if labels.shape[0] != batch_size:
    raise ValueError(
        f"{name} has {labels.shape[0]} entries but the batch has {batch_size} examples.")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"{name} must be integer class indices, got dtype {labels.dtype}.")
  return labels


def prepare_logits(logits, labels, *, min_classes: int = 1):
  """Checks ``logits`` [B, C] and ``labels`` [B]; returns (logits, labels, out_dtype)."""
  logits = jnp.asarray(logits)
  if logits.ndim != 2:
    raise ValueError(f"logits must have shape [batch_size, num_classes], got {logits.shape}.")
  if logits.shape[1] < min_classes:
    raise ValueError(f"this loss needs at least {min_classes} classes, got logits {logits.shape}.")
  labels = check_labels(labels, logits.shape[0])
  out_dtype = result_dtype(logits)
  return logits.astype(compute_dtype(out_dtype)), labels, out_dtype


def prepare_features(features, weights, labels, *, weights_ndim: int = 2):
  """Checks ``features`` [B, d], ``weights`` [d, C] (or [V, d, C]), ``labels`` [B].

  Returns (features, weights, labels, out_dtype) with the arrays cast to the
  compute dtype.
  """
  features, weights = jnp.asarray(features), jnp.asarray(weights)
  if features.ndim != 2:
    raise ValueError(f"features must have shape [batch_size, dim], got {features.shape}.")
  layout = "[dim, num_classes]" if weights_ndim == 2 else "[num_classifiers, dim, num_classes]"
  if weights.ndim != weights_ndim:
    raise ValueError(f"weights must have shape {layout}, got {weights.shape}.")
  if weights.shape[-2] != features.shape[1]:
    raise ValueError(
        f"weights {weights.shape} (layout {layout}) do not match features {features.shape}: "
        f"expected dim {features.shape[1]} on axis {weights.ndim - 2}.")
  labels = check_labels(labels, features.shape[0])
  out_dtype = result_dtype(features, weights)
  dtype = compute_dtype(out_dtype)
  return features.astype(dtype), weights.astype(dtype), labels, out_dtype


def check_choice(name: str, value, choices) -> None:
  if value not in choices:
    raise ValueError(f"{name}={value!r} is not one of {sorted(choices)}.")


# Norms are floored at 1e-12 (as torch's F.normalize does): below it a vector
# counts as zero, and 1/norm^2 stays finite in float32.
_NORM_FLOOR_SQ = 1e-24


def safe_norm(x: jax.Array, axis: int) -> jax.Array:
  """L2 norm, floored at 1e-12, whose gradient is finite (zero) at x = 0."""
  return jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=axis), _NORM_FLOOR_SQ))


def normalize(x: jax.Array, axis: int) -> jax.Array:
  """x / ||x|| along ``axis``; a zero vector stays zero with finite gradients."""
  return x / jnp.expand_dims(safe_norm(x, axis), axis)


def take_target(values: jax.Array, labels: jax.Array) -> jax.Array:
  """values[i, labels[i]] for [B, C] values (NaN for an out-of-range label)."""
  return jnp.take_along_axis(values, labels[:, None], axis=-1, mode="fill")[:, 0]


def target_mask(labels: jax.Array, num_classes: int) -> jax.Array:
  """Boolean [B, C] mask of each example's target class (fuses, no one-hot matmul)."""
  return labels[:, None] == jnp.arange(num_classes)[None, :]


def target_columns(weights: jax.Array, labels: jax.Array) -> jax.Array:
  """The target classifiers W_{y_i} as rows, [B, d], from weights [d, C]."""
  return jnp.take(weights, labels, axis=1, mode="fill").T


def cross_entropy_with_target(logits: jax.Array, labels: jax.Array,
                              target_logit: jax.Array) -> jax.Array:
  """-log softmax with the target logit replaced by ``target_logit`` [B].

  The replacement is a fused select, so no [B, C] one-hot or scatter is built.
  """
  replaced = jnp.where(target_mask(labels, logits.shape[1]), target_logit[:, None], logits)
  return jax.nn.logsumexp(replaced, axis=-1) - target_logit
