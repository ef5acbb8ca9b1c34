"""The sharding vocabulary: mesh axis names, the one way to build a mesh, and
the class shard a loss runs on inside `margin_jax.parallel.shard_classes`.

Every mesh of margin_jax has the axes ``("data", "model")``: the batch is split
over ``"data"``, the classes of the classifier over ``"model"``. Every loss
and helper of `margin_jax.losses` takes the class shard it runs on as an
argument, ``shard=`` (a `ClassShard`, which `margin_jax.parallel.shard_classes`
and the mesh trainer pass inside ``shard_map``): its class-axis reductions
then use collectives; with ``shard=None`` they are plain reductions. This
module imports nothing of margin_jax, so both `margin_jax.losses` and
`margin_jax.parallel` build on it.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
MODEL_AXIS = "model"
AXES = (DATA_AXIS, MODEL_AXIS)


def make_mesh(shape, *, devices=None) -> Mesh:
  """The ``("data", "model")`` mesh of ``shape`` on ``devices`` (default: the
  first ``data * model`` devices), with Auto axes, so arrays placed on it keep
  no sharding in their types and work outside ``jax.set_mesh``.

  Example:
    >>> dict(make_mesh((1, 1)).shape)
    {'data': 1, 'model': 1}
  """
  shape = tuple(shape)
  if len(shape) != 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
    raise ValueError(f"mesh shape {shape!r} must be (data, model), two positive ints.")
  count = math.prod(shape)
  if devices is None:
    if count > jax.device_count():
      raise ValueError(
        f"mesh shape {shape} needs {count} devices, {jax.device_count()} present; on a CPU "
        f"set XLA_FLAGS=--xla_force_host_platform_device_count={count} before importing jax."
      )
    devices = jax.devices()[:count]
  return jax.make_mesh(shape, AXES, devices=devices, axis_types=(AxisType.Auto,) * 2)


def auto_axes(mesh: Mesh) -> Mesh:
  """``mesh`` with Auto axes (the same devices and names)."""
  return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class ClassShard:
  """The slice of the class axis a loss sees inside `margin_jax.parallel.shard_classes`.

  Local column j is class ``axis_index(axis_name) * C_local + j`` of all
  shards' columns taken together; labels count in that numbering. A pytree:
  the axis names and a static class count are its structure, the padding
  mask and a traced class count its leaves, so it passes through ``jit`` and
  custom derivative rules as an operand.

  Attributes:
    axis_name: the mesh axis the classes are split over.
    valid: ``[C_local]`` bool, False on padding (and unsampled filler); ``None``: all valid.
    num_classes: the real classes over all shards (a Python int, or traced
      when classes are sampled).
    batch_axis: the mesh axis the batch is split over, or ``None``.
  """

  axis_name: str
  valid: jax.Array | None
  num_classes: int | jax.Array
  batch_axis: str | None = None

  def tree_flatten(self):
    static = self.num_classes if isinstance(self.num_classes, int) else None
    traced = None if static is not None else self.num_classes
    return (self.valid, traced), (self.axis_name, self.batch_axis, static)

  @classmethod
  def tree_unflatten(cls, aux, leaves):
    axis_name, batch_axis, static = aux
    valid, traced = leaves
    return cls(axis_name, valid, traced if static is None else static, batch_axis)


def class_count(local_count: int, shard: ClassShard | None) -> int | jax.Array:
  """The number of classes a loss runs over: ``local_count`` unless sharded."""
  return local_count if shard is None else shard.num_classes


def class_ids(shard: ClassShard, local_count: int) -> jax.Array:
  """The (global) class ids of the shard's ``local_count`` columns."""
  return lax.axis_index(shard.axis_name) * local_count + jnp.arange(local_count)


def is_array(value) -> bool:
  return isinstance(value, (jax.Array, np.ndarray))


def unplaced(tree):
  """``tree`` with every array as a ShapeDtypeStruct without sharding: what a
  loss's shape checks run on (a gather on an array typed with Explicit mesh
  axes would have to name its out_sharding)."""
  return jax.tree.map(
    lambda v: jax.ShapeDtypeStruct(np.shape(v), v.dtype) if is_array(v) else v, tree
  )


def _explicit_mesh(values):
  """The (abstract) mesh of the first array typed as sharded over an Explicit
  mesh axis (`jax.make_mesh`'s default), else ``None``."""
  for value in values:
    if not isinstance(value, jax.Array):
      continue
    sharding = jax.typeof(value).sharding
    explicit = {
      name
      for name, kind in zip(sharding.mesh.axis_names, sharding.mesh.axis_types)
      if kind == AxisType.Explicit
    }
    used = {
      n
      for entry in sharding.spec
      if entry
      for n in (entry if isinstance(entry, tuple) else (entry,))
    }
    if explicit & used:
      return sharding.mesh
  return None


def gathered(value):
  """``value`` replicated over every mesh axis when its type splits it over an
  Explicit one (`jax.make_mesh`'s default), else as it is: what an operation
  over a whole axis (a sort, an SVD) needs, eagerly and under ``jit``."""
  if _explicit_mesh((value,)) is None:
    return value
  return jax.sharding.reshard(value, NamedSharding(jax.typeof(value).sharding.mesh, P()))


def accepts_explicit_axes(fn):
  """``fn`` (a function whose first argument is batch-major) callable on
  arrays sharded over Explicit mesh axes, as `jax.make_mesh` builds them: its
  body then runs with those axes Auto (XLA places the gathers); each result
  whose leading axis is the batch is split as the first argument's batch
  axis, any other (a scalar, a class-indexed array) replicated. Arrays
  without Explicit axes take the plain call. As for any JAX code on Explicit
  axes, ``jax.grad`` outside ``jit`` needs ``jax.set_mesh(mesh)``."""

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    mesh = _explicit_mesh(jax.tree.leaves((args, kwargs)))
    if mesh is None:
      return fn(*args, **kwargs)
    batch_spec = jax.typeof(args[0]).sharding.spec
    batch_axis = batch_spec[0] if batch_spec else None
    batch = np.shape(args[0])[0]
    # Array keywords (``where``, ``bias``) enter as operands, so they too run Auto.
    arrays = {k: v for k, v in kwargs.items() if is_array(v)}
    static = {k: v for k, v in kwargs.items() if k not in arrays}

    def body(args, arrays):
      return fn(*args, **arrays, **static)

    shapes = jax.eval_shape(body, unplaced(args), unplaced(arrays))
    out_sharding = jax.tree.map(
      lambda v: P(batch_axis) if v.ndim and v.shape[0] == batch else P(), shapes
    )
    with jax.sharding.use_abstract_mesh(mesh):
      return jax.sharding.auto_axes(body, out_sharding=out_sharding)(args, arrays)

  return wrapped
