"""Device placement, in one place: how arrays map onto devices.

Two placements with one interface, chosen by ``config.mesh_shape``:

* :class:`DataParallel` (``mesh_shape=None``): ``pmap`` over the local
  devices; state replicated, host batches ``[local_devices, per_device, ...]``.
* :class:`MeshParallel` (``mesh_shape=(data, model)``): ``jit`` of a
  ``shard_map`` over a ``("data", "model")`` mesh of all devices (every
  process's, `margin_jax.sharding.make_mesh`); the head's class weights (and
  their optimiser state) split over ``"model"`` as their
  ``nn.with_partitioning`` annotation says, everything else replicated, the
  batch split over ``"data"``. The step function gets its class shard as
  ``shard=`` (a `margin_jax.sharding.ClassShard`) and passes it on to the
  model's head and the loss.

Both run the same per-shard step function; its collectives over ``"data"``
(`margin_jax.sharding.DATA_AXIS`) average gradients, metrics and batch norm
statistics.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import jax_utils
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from margin_jax import sharding
from margin_jax.sharding import DATA_AXIS
from margin_jax.sharding import MODEL_AXIS


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
  """Joins a multi-process run (``jax.distributed.initialize``).

  Must run before any other JAX call. Collectives go over each platform's own
  transport: NCCL on GPUs, gloo (JAX's default) on CPUs.
  """
  jax.distributed.initialize(
    coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )


def local_device_count() -> int:
  return jax.local_device_count()


def parallelize(fn, *, donate_state: bool = False):
  """``pmap`` over all devices with axis ``"data"``; arg 0 may be donated."""
  return jax.pmap(fn, axis_name=DATA_AXIS, donate_argnums=(0,) if donate_state else ())


def _local_sharding() -> NamedSharding:
  """Leading axis split over this process's devices, in pmap's order."""
  mesh = Mesh(np.array(jax.local_devices()), (DATA_AXIS,))
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree):
  """Copies a host pytree onto every local device (leading axis = devices).

  Uses the same sharding as ``pmap``'s outputs, so the first step and later
  steps see identical input shardings (one compilation).
  """
  n = jax.local_device_count()
  return jax.device_put(
    jax.tree.map(lambda x: np.stack([np.asarray(x)] * n), tree), _local_sharding()
  )


def unreplicate(tree):
  """This process's first replica as host numpy arrays."""
  return jax.device_get(jax_utils.unreplicate(tree))


def put_batch(batch):
  """Host batch ``{k: [local_devices, per_device, ...]}`` onto the devices."""
  n = jax.local_device_count()
  for x in jax.tree.leaves(batch):
    if x.shape[0] != n:
      raise ValueError(f"batch leading axis {x.shape[0]} != local device count {n}")
  return jax.device_put(batch, _local_sharding())


class DataParallel:
  """``pmap`` data parallelism over this process's devices (the functions above)."""

  def batch_devices(self) -> int:
    """The leading axis of host batches (``data.train_batches(num_devices=...)``)."""
    return local_device_count()

  def parallelize(self, fn, *, returns_state: bool):
    return parallelize(fn, donate_state=returns_state)

  def init_state(self, init, key, like):
    """``init(key)``, a train state, computed on a device and brought to the host."""
    del like
    return jax.device_get(jax.jit(init)(key))

  def put_state(self, state):
    return replicate(state)

  def put_batch(self, batch):
    return put_batch(batch)

  def to_host(self, tree):
    """Metrics or the whole state as host numpy arrays."""
    return unreplicate(tree)

  def for_checkpoint(self, state):
    return unreplicate(state)

  def restore_target(self, host_state):
    return host_state


class MeshParallel:
  """``jit`` + ``shard_map`` on a ``(data, model)`` mesh of all devices.

  Args:
    mesh_shape: ``(data, model)``; their product is the global device count.
    specs: a PartitionSpec per leaf of the train state (``nn.get_partition_spec``
      of a state whose head was initialised with ``class_axis="model"``).
    num_classes: C; ``model`` must divide it.
  """

  def __init__(self, mesh_shape, specs, num_classes: int):
    data, model = mesh_shape
    if data * model != jax.device_count():
      raise ValueError(
        f"config.mesh_shape={tuple(mesh_shape)} needs {data * model} devices, "
        f"there are {jax.device_count()}."
      )
    if num_classes % model:
      raise ValueError(
        f"config.mesh_shape={tuple(mesh_shape)}: {num_classes} classes do not split "
        f"evenly over {model} class shards."
      )
    self.mesh = sharding.make_mesh((data, model))
    self.specs = specs
    self.num_classes = num_classes
    self._state_sharding = jax.tree.map(lambda s: NamedSharding(self.mesh, s), specs)
    self._batch_sharding = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

  def batch_devices(self) -> int:
    return 1  # this process's part of the global batch, split by put_batch

  def parallelize(self, fn, *, returns_state: bool):
    shard = sharding.ClassShard(MODEL_AXIS, None, self.num_classes, DATA_AXIS)

    def body(state, batch):
      return fn(state, batch, shard=shard)

    batch_spec = PartitionSpec(DATA_AXIS)
    out_specs = (self.specs, PartitionSpec()) if returns_state else PartitionSpec()
    mapped = jax.shard_map(
      body, mesh=self.mesh, in_specs=(self.specs, batch_spec), out_specs=out_specs
    )
    return jax.jit(mapped, donate_argnums=(0,) if returns_state else ())

  def init_state(self, init, key, like):
    """``init(key)``, a train state of ``like``'s structure, computed onto this
    mesh's shardings: a head of 10^7 classes never passes through the host.

    In two programs, so that W's random initialisation and the optimiser's
    W-sized state are never live together: the parameters, then the rest
    around them (the parameters donated; XLA drops the second program's
    unused initialisation).
    """
    params = jax.jit(lambda key: init(key).params, out_shardings=self._state_sharding.params)(key)
    leaves = jax.jit(
      lambda key, params: jax.tree.leaves(init(key).replace(params=params)),
      out_shardings=jax.tree.leaves(self._state_sharding),
      donate_argnums=1,
    )(key, params)
    return jax.tree.unflatten(jax.tree.structure(like), leaves)

  def put_state(self, state):
    return jax.device_put(state, self._state_sharding)

  def put_batch(self, batch):
    """This process's ``{k: [1, b, ...]}`` as the global batch split over ``"data"``."""
    return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(self._batch_sharding, x[0]), batch
    )

  def to_host(self, tree):
    return jax.device_get(multihost_utils.process_allgather(tree, tiled=True))

  def for_checkpoint(self, state):
    return state  # orbax writes each shard from the process that holds it

  def restore_target(self, state):
    """Abstract arrays with this mesh's shardings: orbax restores onto them,
    whatever mesh or device count wrote the checkpoint."""
    return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(
        np.shape(x), np.dtype(getattr(x, "dtype", type(x))), sharding=s
      ),
      state,
      self._state_sharding,
    )
