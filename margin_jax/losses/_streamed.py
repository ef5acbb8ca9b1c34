r"""The streamed engine: a loss over class chunks that never forms the [B, C] logits.

It holds no loss of its own. Each loss declares its streamed form next to its
materialised function (``LossSpec.streamed``, in its family's module): a
function of a few per-example statistics of the logits
:math:`z_j = s\, v(a^\top W_j / n_j) + b_j` (``a`` the features or the unit
features, ``n_j`` 1 or :math:`\|W_j\|`, ``s`` a scale, ``b`` a bias, ``v``
the identity or a declared elementwise map of the non-target values, as
CurricularFace's hard negatives), which `StreamedHead.stats` computes:

* :math:`\operatorname{LSE}_{j \ne y} z_j` (an online log-sum-exp),
* for Kobayashi's regulariser :math:`\sum_{j \ne y} q_j z_j` with
  :math:`q_j = e^{z_j - \operatorname{LSE}}`, and :math:`\sum_{j \ne y} z_j`
  (also label smoothing's),
* for the multiclass hinge :math:`\sum_{j \ne y} \max(0, z_j - p)` and its count,
* the target's raw dot product :math:`a^\top W_y` and :math:`\|W_y\|^2` (an
  indexed dot product: the margin is applied to it alone, by the loss's own
  target function, the one its materialised form calls too).

`_class_stats` computes them in one pass over the classes with a
``jax.custom_vjp`` that saves only [B]-sized statistics and recomputes each
block's logits in the backward pass, writing W's gradient block by block: no
[B, C] array and no [d, C] temporary besides the gradient itself (no padded
or transposed copy of W; when the chunk does not divide C the rest is one
smaller block). The target's gradient is one scatter-add after the loop.
Inside `margin_jax.parallel.shard_classes` each shard streams its own classes
and the statistics are combined across shards with ``pmax``/``psum`` outside
the custom rule, as differentiable [B]-sized ops.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from margin_jax import sharding
from margin_jax.losses import _common
from margin_jax.numerics import NORM_FLOOR_SQ
from margin_jax.numerics import compute_dtype
from margin_jax.numerics import norm_from_squared
from margin_jax.numerics import normalize
from margin_jax.numerics import result_dtype
from margin_jax.numerics import safe_norm
from margin_jax.numerics import sum_over_axis


class _Config(NamedTuple):
  """The static part of a `_class_stats` call."""

  chunk_size: int
  unit_columns: bool  # divide each class's dot product by ||W_j||
  # The optional statistics (`Stats`): "mean" (Kobayashi's q-weighted mean of
  # the non-target logits), "total" (their sum), "excess" (sum and count above a pivot).
  moments: tuple[str, ...]
  scale: float | None  # s when known at trace time (then no gradient for it), else an operand
  # v(u, *context): each non-target class's value before the scale, from its
  # unit (or raw) dot product u, elementwise (CurricularFace's hard negatives);
  # None: v = u. The context arrays [B] take no gradient.
  negatives: Callable | None = None
  # Stacked W [K, d, C]: the statistics of each row (EM-Softmax's V classifiers,
  # [K, B]) rather than of each class's closest row (Sub-center ArcFace, [B]).
  each_row: bool = False


class Stats(NamedTuple):
  """Per-example statistics of the logits z [B, C] (see the module docstring).

  ``lse``: LSE over the non-target classes; ``mean``: sum_{j != y} q_j z_j;
  ``total``: sum_{j != y} z_j; ``excess`` and ``count``: the sum of
  max(0, z_j - pivot) and the number of z_j > pivot over the non-target classes
  (``None`` where not asked for); ``dot_y`` and ``squared_norm_y``: a^T W_y and
  ||W_y||^2, [B, K] (K sub-centres; 1 for a classifier), NaN for an
  out-of-range label.
  """

  lse: jax.Array
  mean: jax.Array | None
  total: jax.Array | None
  excess: jax.Array | None
  count: jax.Array | None
  dot_y: jax.Array
  squared_norm_y: jax.Array


def _over_blocks(step, num_classes: int, chunk_size: int, carry):
  """``step(start, size, carry)`` over the classes: a loop over the whole
  blocks of ``chunk_size``, then the remainder as one smaller block (so no
  block reaches past C and none overlaps another)."""
  chunk = min(chunk_size, num_classes)
  whole, remainder = divmod(num_classes, chunk)
  carry = lax.fori_loop(0, whole, lambda i, c: step(i * chunk, chunk, c), carry)
  return step(whole * chunk, remainder, carry) if remainder else carry


# The block's three products, each a 2-D matmul for one classifier (K = 1): as
# 3-D einsums XLA:CPU transposes the W block and the logits around them.
def _dots(a, block):
  """a [B, d], block [K, d, c] -> [K, B, c]."""
  if block.shape[0] == 1:
    return (a @ block[0])[None]
  return jnp.einsum("bd,kdc->kbc", a, block)


def _block_gradient(a, d_raw):
  """a [B, d], d_raw [K, B, c] -> [K, d, c]."""
  if d_raw.shape[0] == 1:
    return (a.T @ d_raw[0])[None]
  return jnp.einsum("bd,kbc->kdc", a, d_raw)


def _features_gradient(d_raw, block):
  """d_raw [K, B, c], block [K, d, c] -> [B, d]."""
  if block.shape[0] == 1:
    return d_raw[0] @ block[0].T
  return jnp.einsum("kbc,kdc->bd", d_raw, block)


def _block_logits(config, a, weights, bias, scale, context, start, size):
  """One block's columns [K, d, c], unit (or raw) dot products u [K, B, c],
  column norms n [K, c] (``None`` for raw columns), the closest row's u
  [B, c] (each row's, [K, B, c], with ``each_row``), its value v
  (`_Config.negatives`) and logits z = s v + b."""
  block = lax.dynamic_slice_in_dim(weights, start, size, axis=2).astype(a.dtype)
  unit = _dots(a, block)
  norms = None
  if config.unit_columns:
    norms = safe_norm(block, axis=1)
    unit = unit / norms[:, None, :]
  if config.each_row:
    closest = unit
  else:
    closest = unit[0] if unit.shape[0] == 1 else jnp.max(unit, axis=0)
  value = closest if config.negatives is None else config.negatives(closest, *context)
  z = value * (config.scale if scale is None else scale)
  if bias is not None:
    z = z + lax.dynamic_slice_in_dim(bias, start, size).astype(a.dtype)
  return block, norms, unit, closest, value, z


def _non_target(local_labels, inside, valid, start, size):
  """[B, c]: the block's entries that are a non-target class (and a real one)."""
  ids = start + jnp.arange(size)
  others = (ids[None, :] != local_labels[:, None]) | ~inside[:, None]
  if valid is not None:
    others = others & lax.dynamic_slice_in_dim(valid, start, size)[None, :]
  return others


def _target_columns(weights, local_labels, dtype):
  """W_y for each example, [K, d, B]."""
  return jnp.take(weights, local_labels, axis=2).astype(dtype)


def _varying_like(tree, *operands):
  """``tree``'s arrays typed as varying over every mesh axis any of ``operands``
  varies over (inside ``shard_map``; a no-op outside): a loop's initial carry
  must have the type of the values the loop computes from the operands."""
  arrays = [v for v in operands if isinstance(v, jax.Array)]
  return jax.tree.map(lambda v: _common.cast_to_common_vma(v, *arrays)[0], tree)


def _forward(config, a, weights, bias, scale, local_labels, inside, valid, pivot, context):
  def step(start, size, carry):
    peak, total_exp, moment, total, excess, count = carry
    *_, z = _block_logits(config, a, weights, bias, scale, context, start, size)
    others = _non_target(local_labels, inside, valid, start, size)
    kept = jnp.where(others, z, -jnp.inf)
    new_peak = jnp.maximum(peak, jnp.max(kept, axis=-1))
    shift = jnp.where(jnp.isfinite(new_peak), new_peak, 0.0)
    e = jnp.exp(kept - shift[..., None])
    rescale = jnp.exp(peak - shift)
    total_exp = total_exp * rescale + jnp.sum(e, axis=-1)
    # The optional statistics only where asked for (a loop keeps what it carries).
    if "mean" in config.moments:
      moment = moment * rescale + jnp.sum(e * jnp.where(others, z, 0.0), axis=-1)
    if "total" in config.moments:
      total = total + jnp.sum(jnp.where(others, z, 0.0), axis=-1)
    if "excess" in config.moments:
      above = others & (z > pivot[:, None])
      excess = excess + jnp.sum(jnp.where(above, z - pivot[:, None], 0.0), axis=-1)
      count = count + jnp.sum(above, axis=-1).astype(a.dtype)
    return new_peak, total_exp, moment, total, excess, count

  shape = (weights.shape[0], a.shape[0]) if config.each_row else (a.shape[0],)
  zeros = jnp.zeros(shape, a.dtype)
  init = (jnp.full(shape, -jnp.inf, a.dtype), zeros, zeros, zeros, zeros, zeros)
  init = _varying_like(init, a, weights, bias, scale, local_labels, inside, valid, pivot, *context)
  peak, total_exp, moment, total, excess, count = _over_blocks(
    step, weights.shape[2], config.chunk_size, init
  )
  has_others = total_exp > 0
  safe_total = jnp.where(has_others, total_exp, 1.0)
  lse = jnp.where(has_others, peak + jnp.log(safe_total), -jnp.inf)
  mean = jnp.where(has_others, moment / safe_total, 0.0)
  targets = _target_columns(weights, local_labels, a.dtype)
  keep = inside[:, None]
  dot_y = jnp.where(keep, jnp.einsum("bd,kdb->bk", a, targets), 0.0)
  squared_norm_y = jnp.where(keep, jnp.sum(targets * targets, axis=1).T, 0.0)
  wanted = config.moments
  return Stats(
    lse,
    mean if "mean" in wanted else None,
    total if "total" in wanted else None,
    excess if "excess" in wanted else None,
    count if "excess" in wanted else None,
    dot_y,
    squared_norm_y,
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _class_stats(config, a, weights, bias, scale, local_labels, inside, valid, pivot, context):
  return _forward(config, a, weights, bias, scale, local_labels, inside, valid, pivot, context)


def _class_stats_fwd(config, a, weights, bias, scale, local_labels, inside, valid, pivot, context):
  stats = _forward(config, a, weights, bias, scale, local_labels, inside, valid, pivot, context)
  residuals = (a, weights, bias, scale, local_labels, inside, valid, pivot, context)
  return stats, (*residuals, stats.lse, stats.mean)


def _class_stats_bwd(config, residuals, cotangents):
  # With q_j = e^{z_j - LSE} over the non-target classes:
  #   dLSE/dz_j = q_j, d(sum q z)/dz_j = q_j (1 + z_j - sum q z), d(sum z)/dz_j = 1,
  #   d excess/dz_j = [z_j > pivot];
  # z = s v(u) + b, u = a^T W_j / n_j: du/da = W_j / n_j, du/dW_j = a / n_j - u W_j / n_j^2
  # (the second term 0 where n_j is floored). The target's a^T W_y and ||W_y||^2
  # add g a + 2 g' W_y to column y and g W_y to a, after the loop (a scatter-add).
  a, weights, bias, scale, local_labels, inside, valid, pivot, context, lse, mean = residuals
  g = cotangents
  lse_shift = jnp.where(jnp.isfinite(lse), lse, 0.0)
  s = config.scale if scale is None else scale

  def step(start, size, carry):
    d_a, d_weights, d_bias, d_scale = carry
    block, norms, unit, closest, value, z = _block_logits(
      config, a, weights, bias, scale, context, start, size
    )
    others = _non_target(local_labels, inside, valid, start, size)
    q = jnp.where(others, jnp.exp(z - lse_shift[..., None]), 0.0)
    d_z = g.lse[..., None] * q
    if g.mean is not None:
      d_z = d_z + g.mean[..., None] * q * (1.0 + z - mean[..., None])
    if g.total is not None:
      d_z = d_z + jnp.where(others, g.total[..., None], 0.0)
    if g.excess is not None:
      d_z = d_z + jnp.where(others & (z > pivot[:, None]), g.excess[:, None], 0.0)
    d_closest = s * d_z
    if config.negatives is not None:  # elementwise: dv/du is the JVP along ones
      slope = jax.jvp(
        lambda u: config.negatives(u, *context), (closest,), (jnp.ones_like(closest),)
      )[1]
      d_closest = d_closest * slope
    d_unit = d_closest if config.each_row else d_closest[None]  # [K, B, c]
    if unit.shape[0] > 1 and not config.each_row:  # to the closest sub-centre
      d_unit = d_unit * jax.nn.one_hot(
        jnp.argmax(unit, axis=0), unit.shape[0], axis=0, dtype=a.dtype
      )
    d_raw = d_unit if norms is None else d_unit / norms[:, None, :]
    d_block = _block_gradient(a, d_raw)
    if norms is not None:
      radial = sum_over_axis(d_unit * unit, 1) / (norms * norms)
      d_block = d_block - block * jnp.where(norms * norms > NORM_FLOOR_SQ, radial, 0.0)[:, None]
    d_weights = lax.dynamic_update_slice_in_dim(
      d_weights, d_block.astype(d_weights.dtype), start, axis=2
    )
    d_a = d_a + _features_gradient(d_raw, block)
    if d_bias is not None:
      d_bias = lax.dynamic_update_slice_in_dim(
        d_bias, d_z.reshape(-1, size).sum(0).astype(d_bias.dtype), start, axis=0
      )
    if d_scale is not None:
      d_scale = d_scale + jnp.sum(d_z * value)
    return d_a, d_weights, d_bias, d_scale

  init = (
    jnp.zeros_like(a),
    jnp.zeros_like(weights),
    None if bias is None else jnp.zeros_like(bias),
    None if scale is None else jnp.zeros((), a.dtype),
  )
  init = _varying_like(init, *jax.tree.leaves(residuals))
  d_a, d_weights, d_bias, d_scale = _over_blocks(step, weights.shape[2], config.chunk_size, init)
  targets = _target_columns(weights, local_labels, a.dtype)  # [K, d, B]
  g_dot = jnp.where(inside[:, None], g.dot_y, 0.0)  # [B, K]
  g_squared = jnp.where(inside[:, None], g.squared_norm_y, 0.0)
  d_a = d_a + jnp.einsum("bk,kdb->bd", g_dot, targets)
  d_targets = g_dot.T[:, None, :] * a.T[None] + 2.0 * g_squared.T[:, None, :] * targets
  d_weights = d_weights.at[:, :, local_labels].add(d_targets.astype(d_weights.dtype))
  if d_scale is not None:
    d_scale = d_scale.astype(jnp.result_type(scale))
  return d_a, d_weights, d_bias, d_scale, None, None, None, None, tuple(None for _ in context)


_class_stats.defvjp(_class_stats_fwd, _class_stats_bwd)


def _combine(stats: Stats, inside: jax.Array, shard) -> Stats:
  """The statistics over all classes from each shard's (a no-op unsharded);
  the target's terms NaN where no shard owns the label."""
  if shard is None:
    owned = inside
  else:
    axis = shard.axis_name
    peak = lax.pmax(lax.stop_gradient(stats.lse), axis)
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
    weight = jnp.exp(stats.lse - peak)
    total_weight = lax.psum(weight, axis)
    psum = lambda v: None if v is None else lax.psum(v, axis)
    stats = Stats(
      peak + jnp.log(total_weight),
      None if stats.mean is None else lax.psum(weight * stats.mean, axis) / total_weight,
      psum(stats.total),
      psum(stats.excess),
      psum(stats.count),
      psum(stats.dot_y),
      psum(stats.squared_norm_y),
    )
    owned = lax.psum(inside.astype(jnp.int32), axis) > 0
  owned = owned[:, None]
  return stats._replace(
    dot_y=jnp.where(owned, stats.dot_y, jnp.nan),
    squared_norm_y=jnp.where(owned, stats.squared_norm_y, jnp.nan),
  )


class StreamedHead(NamedTuple):
  """What a loss's streamed form (`margin_jax.losses.LossSpec.streamed`)
  reads: the checked features [B, d] in the compute dtype (masked rows
  zeroed), the weights [K, d, C] in their own dtype (K = 1 but for stacked
  weights), the safe labels [B], the bias [C] or ``None`` and the class
  shard (`margin_jax.sharding.ClassShard`) or ``None``; `stats` streams the
  classes."""

  features: jax.Array
  weights: jax.Array
  labels: jax.Array
  bias: jax.Array | None
  chunk_size: int
  shard: sharding.ClassShard | None

  def stats(
    self,
    *,
    cosine=False,
    unit_columns=False,
    scale=1.0,
    moments=(),
    pivot=None,
    negatives=None,
    context=(),
    each_row=False,
  ) -> Stats:
    """`Stats` of z_j = s v(a^T W_j / n_j) + b_j over the classes, in one pass.

    ``cosine``: a = x / ||x|| and n_j = ||W_j||; ``unit_columns``: a = x and
    n_j = ||W_j||; else a = x, n_j = 1. ``moments``: the optional statistics
    (``"mean"``, ``"total"``, ``"excess"`` with its ``pivot`` [B]).
    ``negatives(u, *context)``: the non-target classes' v, elementwise
    (default v = u; ``context`` [B] arrays take no gradient). Stacked
    weights [K, d, C]: ``each_row``, every row's statistics (``lse`` [K, B],
    ``dot_y`` [B, K]: EM-Softmax's weak classifiers); else each class's
    closest row (Sub-center ArcFace's sub-centres).
    """
    a = normalize(self.features, axis=1) if cosine else self.features
    config = _Config(
      self.chunk_size, cosine or unit_columns, tuple(moments), None, negatives, each_row
    )
    local_count = self.weights.shape[2]
    shard = self.shard
    if shard is None:
      local, valid = self.labels, None
    else:
      local, valid = self.labels - lax.axis_index(shard.axis_name) * local_count, shard.valid
    inside = (local >= 0) & (local < local_count)
    local = jnp.clip(local, 0, local_count - 1)
    if valid is not None:
      inside = inside & valid[local]
    static_scale = _common.concrete_number(scale)
    if static_scale is not None:
      config, scale = config._replace(scale=float(static_scale)), None
    operands = [v for v in (a, self.weights, scale, self.bias) if v is not None]
    cast = iter(_common.cast_to_common_vma(*operands))
    a, weights = next(cast), next(cast)
    scale = None if scale is None else next(cast)
    bias = None if self.bias is None else next(cast)
    context = tuple(lax.stop_gradient(c) for c in context)
    stats = _class_stats(config, a, weights, bias, scale, local, inside, valid, pivot, context)
    return _combine(stats, inside, shard)

  @property
  def num_classes(self) -> int | jax.Array:
    """C, over all class shards."""
    return sharding.class_count(self.weights.shape[2], self.shard)

  def target_bias(self) -> jax.Array | float:
    """b_y [B] (0 without a bias)."""
    return (
      0.0
      if self.bias is None
      else _common.take_classes(self.bias, self.labels, axis=0, shard=self.shard)
    )

  def target_logit(self) -> jax.Array:
    """x^T W_y + b_y [B] with no gradient (the hinge's pivot)."""
    w = lax.stop_gradient(
      _common.take_classes(self.weights[0], self.labels, axis=1, shard=self.shard)
    ).T
    return jnp.sum(lax.stop_gradient(self.features) * w.astype(self.features.dtype), axis=1) + (
      lax.stop_gradient(self.target_bias())
    )

  def norm_product(self, stats: Stats) -> jax.Array:
    """||x|| ||W_y|| [B]."""
    return safe_norm(self.features, axis=1) * norm_from_squared(stats.squared_norm_y[:, 0])


def cross_entropy(lse_others, target, *extra):
  """-log softmax of ``target`` among the non-target logits (their LSE) and
  ``extra`` ones."""
  return functools.reduce(jnp.logaddexp, extra, jnp.logaddexp(lse_others, target)) - target


def cosine_y(stats: Stats) -> jax.Array:
  """cos(theta_y) [B]: the closest sub-centre's."""
  return jnp.max(stats.dot_y / norm_from_squared(stats.squared_norm_y), axis=1)


def top_classes(score_fn, features, weights, *, k: int, chunk_size: int, bias=None, shard=None):
  """The ``k`` best classes [B, k] and their scores [B, k], best first (ties:
  the lower class first), from ``score_fn(features, weights_block)`` [B, c]
  over blocks of ``chunk_size`` classes of ``weights`` (class axis last;
  ``bias`` [C] added): prediction at any class count without [B, C] scores.
  Class-sharded (``shard``), the local best of every shard merged (global class ids)."""
  num_classes = weights.shape[-1]
  if not 1 <= k <= num_classes:
    raise ValueError(f"k={k} must be in [1, num_classes={num_classes}].")
  offset = 0 if shard is None else lax.axis_index(shard.axis_name) * num_classes

  def step(start, size, carry):
    scores = score_fn(features, lax.dynamic_slice_in_dim(weights, start, size, axis=-1))
    if bias is not None:
      scores = scores + lax.dynamic_slice_in_dim(bias, start, size)
    if shard is not None and shard.valid is not None:
      scores = jnp.where(lax.dynamic_slice_in_dim(shard.valid, start, size), scores, -jnp.inf)
    ids = jnp.broadcast_to(offset + start + jnp.arange(size), scores.shape)
    best, best_ids = carry
    return _merge_top(jnp.concatenate([best, scores], 1), jnp.concatenate([best_ids, ids], 1), k)

  batch = features.shape[0]
  dtype = jax.eval_shape(score_fn, features, weights[..., :1]).dtype
  init = (jnp.full((batch, k), -jnp.inf, dtype), jnp.zeros((batch, k), jnp.int32))
  init = _varying_like(init, features, weights, bias, offset)
  best, best_ids = _over_blocks(step, num_classes, chunk_size, init)
  if shard is None:
    return best_ids, best
  gathered = (_gather_shards(v, shard.axis_name) for v in (best, best_ids))
  return _merge_top(*gathered, k)[::-1]


def _merge_top(scores, ids, k):
  best, position = lax.top_k(scores, k)
  return best, jnp.take_along_axis(ids, position, axis=1)


def _gather_shards(values, axis):
  """Every class shard's ``values`` [B, k] side by side, [B, n k], typed
  invariant across the shards (a psum of each shard's slot; ``all_gather``'s
  result would stay typed as varying)."""
  slots = jnp.zeros((values.shape[0], lax.axis_size(axis), values.shape[1]), values.dtype)
  slots = lax.dynamic_update_index_in_dim(slots, values, lax.axis_index(axis), axis=1)
  return lax.psum(slots, axis).reshape(values.shape[0], -1)


def _check_like_materialised(fn, takes_logits, arguments):
  """The materialised loss's own checks and errors, on abstract shapes
  (``arguments``: the streamed call's, by name)."""

  def materialised(arrays):
    merged = {**arrays, **statics}
    if takes_logits:
      features, weights, _ = _common.prepare_arrays(merged.pop("features"), merged.pop("weights"))
      logits = features @ weights
      bias = merged.pop("bias", None)
      if bias is not None:
        logits = logits + _common.check_bias(bias, logits.shape[1], logits.dtype)
      merged["logits"] = logits
    return fn(**merged)

  arrays = {k: v for k, v in arguments.items() if sharding.is_array(v)}
  statics = {k: v for k, v in arguments.items() if k not in arrays}
  jax.eval_shape(materialised, sharding.unplaced(arrays))


def stream(spec, *, chunk_size: int) -> Callable[..., jax.Array]:
  """The loss of ``spec`` (a `margin_jax.losses.LossSpec` with a ``streamed``
  form) streamed over blocks of ``chunk_size`` classes; see
  `margin_jax.losses.chunked` for what it returns."""
  fn, takes_logits = spec.fn, spec.inputs == "logits"
  name = getattr(fn, "__name__", spec.name)
  signature = inspect.signature(fn)
  if takes_logits:
    params = list(signature.parameters.values())
    feature_params = [
      inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("features", "weights")
    ]
    keywords = [p for p in params[2:] if p.name not in ("where", "shard")]
    extra = [
      inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None)
      for n in ("bias", "where", "shard")
    ]
    signature = signature.replace(parameters=[*feature_params, params[1], *keywords, *extra])
  stacked = spec.inputs == "stacked"

  @sharding.accepts_explicit_axes
  def streamed(*args, **kwargs):
    arguments = signature.bind(*args, **kwargs).arguments
    shard = arguments.pop("shard", None)
    if shard is None:  # inside shard_classes, checked on the global shapes
      _check_like_materialised(fn, takes_logits, arguments)
    features, weights, labels = (arguments.pop(k) for k in ("features", "weights", "labels"))
    where, bias = arguments.pop("where", None), arguments.pop("bias", None)
    features, weights = jnp.asarray(features), jnp.asarray(weights)
    out_dtype = result_dtype(features, weights)
    features = features.astype(compute_dtype(out_dtype))
    where = _common.check_where(where, features.shape[0])
    labels = _common.safe_labels(
      _common.check_labels(labels, features.shape[0]), weights.shape[-1], where, shard=shard
    )
    head = StreamedHead(
      _common.mask_rows(features, where),
      weights if stacked else weights[None],
      labels,
      None if bias is None else jnp.asarray(bias),
      chunk_size,
      shard,
    )
    keys = (arguments.pop("key"),) if "key" in arguments else ()
    valid = True if spec.checks is None else spec.checks(**arguments)
    try:
      loss = spec.streamed(head, *keys, **arguments)
    except TypeError as error:  # jax.jvp / jacfwd reaching the custom_vjp
      if "forward-mode" not in str(error):
        raise
      raise TypeError(
        f"{name} streamed over class chunks is reverse mode only (jax.grad, jax.vjp, "
        f"jax.hessian); for jax.jvp or jax.jacfwd call the materialised {name}."
      ) from error
    return _common.apply_where(loss, where, out_dtype, valid)

  streamed.__signature__ = signature
  streamed.__name__ = f"chunked_{name}"
  streamed.__doc__ = f"`{name}` streamed over blocks of {chunk_size} classes (`chunked`)."
  return streamed
