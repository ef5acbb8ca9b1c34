r"""Class-sharded margin losses on a device mesh (insightface's PartialFC in JAX).

With 10^5-10^7 classes the classifier W [d, C], its gradient and its momentum
outgrow one device. `shard_classes` runs any loss of `margin_jax.losses` with
the class axis split over a mesh axis under ``jax.shard_map``: each shard
computes its logits [B_local, C / n]; the log-sum-exp, the target logit and
every other sum over classes are completed with ``pmax``/``psum`` of [B]-sized
(or, for EM-Softmax's HSIC, [d, d]) partials; the margin is applied to the
target logit gathered from the shard that owns the label. Nothing of size
[B, C] or [d, C] is gathered onto one device.

The losses themselves are not rewritten: each takes the class shard it runs
on as its ``shard=`` argument (a `margin_jax.sharding.ClassShard`), which
`shard_classes` passes inside ``shard_map``, and its class-axis reductions
(``logsumexp_classes``, ``sum_classes``, ``take_target``, ...) then use
collectives.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from margin_jax import losses, parallel
  >>> mesh = jax.make_mesh((1, 1), ("data", "model"))
  >>> x, W, y = jnp.ones((2, 3)), jnp.eye(3, 5), jnp.array([0, 4])
  >>> sharded = parallel.shard_classes(losses.cosface_loss, mesh)
  >>> bool(jnp.allclose(sharded(x, W, y, scale=30.0, margin=0.35),
  ...                   losses.cosface_loss(x, W, y, scale=30.0, margin=0.35)))
  True
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from margin_jax import sharding

# The class axis of each class-indexed argument of the losses ("weights": its
# last axis, W [d, C] or the stacked [V, d, C]) and the arguments whose first
# axis is the batch.
_CLASS_AXIS = {"logits": 1, "bias": 0, "centers": 0, "weights": -1}
_BATCH_ARGUMENTS = ("features", "logits", "labels", "where")


def sample_classes(
  key: jax.Array, labels: jax.Array, *, num_classes: int, num_sampled: int, valid=None
):
  """Every class that occurs in ``labels`` plus random other classes,
  ``num_sampled`` in all (PartialFC's negative-class sampling).

  The sampled loss is the loss of the classifier restricted to these classes:
  the target's logit against the sampled negatives only. Its value is lower
  than the full loss (fewer terms in the log-sum-exp); its gradient reaches
  only the sampled columns of W, and with the target always kept it is an
  approximation of the full-softmax gradient that insightface reports costs
  no accuracy at rate 0.1 for face recognition. ``num_sampled = num_classes``
  keeps every class in order: the full loss exactly.

  Args:
    key: PRNG key; the same key and labels give the same classes.
    labels: ``[batch_size]`` integers; those outside ``[0, num_classes)`` are
      not sampled and map to -1.
    num_classes: C (static).
    num_sampled: how many classes to keep (static), at least the number of
      distinct labels (otherwise some targets are dropped and map to -1).
    valid: optional ``[num_classes]`` bool; invalid classes are taken last.

  Returns:
    ``(classes, remapped)``: the kept class indices ``[num_sampled]`` in
    ascending order, and each label's position in ``classes`` (-1 if absent).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> classes, new = sample_classes(jax.random.key(0), jnp.array([7, 2, 7]), num_classes=10, num_sampled=4)
    >>> bool(jnp.all(classes[new] == jnp.array([7, 2, 7])))
    True
  """
  if not 1 <= num_sampled <= num_classes:
    raise ValueError(f"num_sampled={num_sampled} must be in [1, num_classes={num_classes}].")
  inside = (labels >= 0) & (labels < num_classes)
  positive = (
    jnp.zeros(num_classes, bool).at[jnp.where(inside, labels, num_classes)].set(True, mode="drop")
  )
  score = jnp.where(positive, 2.0, jax.random.uniform(key, (num_classes,)))
  if valid is not None:
    score = jnp.where(valid, score, -1.0)
  classes = jnp.sort(lax.top_k(score, num_sampled)[1])
  return classes, _position_in(classes, labels)


def sample_shard(
  key: jax.Array,
  labels: jax.Array,
  shard: sharding.ClassShard,
  local_count: int,
  *,
  sample_rate: float,
  where=None,
) -> tuple[jax.Array, jax.Array, sharding.ClassShard]:
  """PartialFC's sampling of one class shard, inside ``shard_map``.

  The shard keeps the classes of the global batch (``labels`` gathered over
  ``shard.batch_axis``) that it owns plus random others,
  ``max(ceil(sample_rate * local_count), min(local_count, global batch))``
  in all (`sample_classes`; ``key`` folded with the shard's index). What
  `shard_classes` does with a ``sample_rate``, for a training step that runs
  inside ``shard_map`` itself.

  Args:
    key: the same on every shard of a step.
    labels: ``[B_local]`` in the numbering of all shards' classes.
    shard: the class shard the step runs on.
    local_count: the shard's columns (``W.shape[-1]``).
    sample_rate: in (0, 1].
    where: ``[B_local]`` bool; a masked example's class is not kept for it.

  Returns:
    ``(classes, labels, shard)``: the kept local columns ``[kept]``
    (`take_classes` cuts W, the bias and the centers to them), each label in
    the numbering of all shards' kept classes, and the
    `margin_jax.sharding.ClassShard` of the kept classes (pass it as the
    loss's ``shard=``).
  """
  axis = shard.axis_name
  everyone = labels if where is None else jnp.where(where, labels, -1)
  if shard.batch_axis is not None:
    everyone = lax.all_gather(everyone, shard.batch_axis, tiled=True)
  kept = min(local_count, max(math.ceil(sample_rate * local_count), everyone.shape[0]))
  offset = lax.axis_index(axis) * local_count
  key = jax.random.fold_in(key, lax.axis_index(axis))
  classes, _ = sample_classes(
    key, everyone - offset, num_classes=local_count, num_sampled=kept, valid=shard.valid
  )
  # Each example's label in the numbering of all shards' kept classes.
  position = _position_in(classes, labels - offset)
  owned = position >= 0
  new_labels = lax.psum(jnp.where(owned, lax.axis_index(axis) * kept + position, 0), axis)
  found = lax.psum(owned.astype(jnp.int32), axis) > 0
  num_shards = lax.psum(1, axis)
  valid = jnp.ones(local_count, bool) if shard.valid is None else shard.valid
  valid = valid[classes]
  kept_classes = lax.psum(jnp.sum(valid.astype(jnp.int32)), axis)
  return (
    classes,
    jnp.where(found, new_labels, num_shards * kept),
    sharding.ClassShard(axis, valid, kept_classes, shard.batch_axis),
  )


def take_classes(arrays: dict, classes: jax.Array) -> dict:
  """A loss's arguments by name, each class-indexed one (``weights`` on its
  last axis, ``bias``, ``centers``, ``logits``) cut to the local ``classes``
  that `sample_shard` kept; the others, and ``None``, as given.

  Like `sample_shard`, inside ``shard_map``: ``classes`` index this class
  shard's own columns, so the arrays are the shard's local blocks (on arrays
  placed over a mesh outside ``shard_map`` local indices mean nothing, and
  Explicit axes refuse the gather)."""
  return {
    k: v if v is None or k not in _CLASS_AXIS else jnp.take(v, classes, axis=_class_axis(k, v))
    for k, v in arrays.items()
  }


def _position_in(classes: jax.Array, labels: jax.Array) -> jax.Array:
  """Each label's index in the ascending ``classes`` (-1 if absent)."""
  position = jnp.clip(jnp.searchsorted(classes, labels), 0, classes.shape[0] - 1)
  return jnp.where(classes[position] == labels, position, -1)


def _class_axis(name: str, value) -> int | None:
  axis = _CLASS_AXIS.get(name)
  return None if axis is None else axis % np.ndim(value)


def _pad_classes(value, axis: int, size: int):
  pad = [(0, 0)] * value.ndim
  pad[axis] = (0, size - value.shape[axis])
  return jnp.pad(value, pad)


def shard_classes(
  loss_fn: Callable[..., jax.Array],
  mesh: Mesh,
  *,
  class_axis: str = "model",
  batch_axis: str | None = None,
  sample_rate: float | None = None,
) -> Callable[..., jax.Array]:
  """``loss_fn`` with its class axis split over the mesh axis ``class_axis``.

  The returned function has ``loss_fn``'s signature and result (values and
  gradients equal the unsharded loss's to float32 rounding). Class-indexed
  arguments (``weights`` [d, C] or [V, d, C], ``logits`` [B, C], ``centers``
  [C, d], ``bias`` [C]) are split over ``class_axis``; a class count that the
  shard count does not divide is padded with classes that take part in no
  sum and receive no gradient. ``batch_axis=None`` replicates the batch; a
  mesh axis name splits ``features``, ``logits``, ``labels`` and ``where``
  over it. Noisy Softmax draws the same noise as the unsharded call.

  Args:
    loss_fn: a loss of `margin_jax.losses` with a class axis (or
      `margin_jax.losses.hsic_diversity`), or any function with a ``weights``,
      ``logits`` or ``centers`` argument and a ``shard`` keyword that it
      passes on to the loss helpers (a loss you declare gets one).
    mesh: the device mesh.
    class_axis: the mesh axis the classes are split over.
    batch_axis: the mesh axis the batch is split over, or ``None``.
    sample_rate: PartialFC's negative-class sampling: each class shard keeps
      the classes of the (global) batch that it owns plus random others,
      ``max(ceil(rate * C/n), min(C/n, global batch))`` in all (so every
      target fits), and the loss runs over the kept classes only (see
      `sample_classes` for what it estimates). The returned function then
      takes ``sample_key=`` (the same key samples the same classes). ``1.0``
      equals the full loss exactly.

  Returns:
    The sharded loss; call it inside or outside ``jax.jit``.
  """
  signature = inspect.signature(loss_fn)
  fn_name = getattr(loss_fn, "__name__", loss_fn)
  if not {"weights", "logits", "centers"} & set(signature.parameters):
    raise ValueError(
      f"{fn_name} has no class axis: expected a weights, logits or centers argument."
    )
  if "shard" not in signature.parameters:
    raise ValueError(
      f"{fn_name} takes no shard= argument: shard_classes passes each shard's ClassShard"
      " to the loss; declare the loss with margin_jax.losses.declare_cosine_margin, or give"
      " it a shard keyword that it passes on to the margin_jax.losses functions it calls."
    )
  for name in (class_axis, batch_axis):
    if name is not None and name not in mesh.shape:
      raise ValueError(f"mesh axis {name!r} is not in the mesh's axes {tuple(mesh.shape)}.")
  if sample_rate is not None and not 0.0 < sample_rate <= 1.0:
    raise ValueError(f"sample_rate={sample_rate} must be in (0, 1].")
  num_shards = mesh.shape[class_axis]
  # Auto axes: the results then carry no sharding in their types, so callers
  # can use them outside ``jax.set_mesh`` (an Explicit mesh would require it).
  mesh = sharding.auto_axes(mesh)

  @functools.wraps(loss_fn)
  def sharded(*args, sample_key=None, **kwargs):
    if (sample_key is None) != (sample_rate is None):
      raise ValueError("pass sample_key= exactly when shard_classes was given a sample_rate.")
    # The loss's own checks and errors, on the global shapes.
    # (As unsharded shapes: the checks need no placement, and a gather on an
    # array typed with Explicit mesh axes would have to name its out_sharding.)
    array_kwargs = {k: v for k, v in kwargs.items() if sharding.is_array(v)}
    static_kwargs = {k: v for k, v in kwargs.items() if k not in array_kwargs}
    out = jax.eval_shape(
      lambda args, array_kwargs: loss_fn(*args, **array_kwargs, **static_kwargs),
      sharding.unplaced(args),
      sharding.unplaced(array_kwargs),
    )
    arguments = signature.bind(*args, **kwargs).arguments
    arrays = {k: v for k, v in arguments.items() if sharding.is_array(v)}
    if batch_axis is not None:
      batch, size = (
        next(np.shape(arrays[k])[0] for k in _BATCH_ARGUMENTS if k in arrays),
        mesh.shape[batch_axis],
      )
      if batch % size:
        raise ValueError(
          f"a batch of {batch} examples does not split over the mesh axis {batch_axis!r} of "
          f"size {size}: pass a multiple of {size} (pad the batch and mask the padding with where=)."
        )
    static = {k: v for k, v in arguments.items() if k not in arrays}
    class_sharded = {k: _class_axis(k, v) for k, v in arrays.items() if k in _CLASS_AXIS}
    name, axis = next(iter(class_sharded.items()))
    num_classes = arrays[name].shape[axis]
    local_count = -(-num_classes // num_shards)
    for k, axis in class_sharded.items():
      arrays[k] = _pad_classes(jnp.asarray(arrays[k]), axis, local_count * num_shards)

    def spec(k, v):
      dims = [None] * np.ndim(v)
      if k in class_sharded:
        dims[class_sharded[k]] = class_axis
      if k in _BATCH_ARGUMENTS:
        dims[0] = batch_axis
      return P(*dims)

    names = list(arrays)
    operands = [arrays[k] for k in names] + ([] if sample_key is None else [sample_key])
    in_specs = [spec(k, v) for k, v in arrays.items()] + ([] if sample_key is None else [P()])
    # Place each operand as its spec says (a no-op when it already is).
    operands = [jax.device_put(v, NamedSharding(mesh, s)) for v, s in zip(operands, in_specs)]

    def body(*operands):
      local = dict(zip(names, operands))
      ids = lax.axis_index(class_axis) * local_count + jnp.arange(local_count)
      valid = ids < num_classes
      shard = sharding.ClassShard(class_axis, valid, num_classes, batch_axis)
      if sample_rate is not None:
        local, shard = sample(local, shard, operands[-1])
      elif local_count * num_shards == num_classes:
        shard = sharding.ClassShard(class_axis, None, num_classes, batch_axis)
      return loss_fn(**static, **local, shard=shard)

    def sample(local, shard, key):
      """The class arguments cut to this shard's kept classes, the labels renumbered."""
      classes, labels, shard = sample_shard(
        key, local["labels"], shard, local_count, sample_rate=sample_rate, where=local.get("where")
      )
      return take_classes(dict(local, labels=labels), classes), shard

    out_spec = P(batch_axis) if out.ndim == 1 else P()
    return jax.shard_map(body, mesh=mesh, in_specs=tuple(in_specs), out_specs=out_spec)(*operands)

  return sharded
