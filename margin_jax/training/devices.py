"""Device placement, in one place: data-parallel ``pmap`` over local devices.

Everything that knows how arrays map onto devices lives here, so a
``jit``/``shard_map`` path can replace this module without touching the
training loop: the axis name, replicating and un-replicating the train state,
putting host batches ``[local_devices, per_device, ...]`` on the devices, and
multi-host start-up.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import jax_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS_NAME = "batch"


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
  """Joins a multi-process run (``jax.distributed.initialize``).

  Must run before any other JAX call. On CPU, cross-process collectives use
  gloo.
  """
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )


def local_device_count() -> int:
  return jax.local_device_count()


def parallelize(fn, *, donate_state: bool = False):
  """``pmap`` over all devices with axis ``"batch"``; arg 0 may be donated."""
  return jax.pmap(fn, axis_name=AXIS_NAME, donate_argnums=(0,) if donate_state else ())


def _local_sharding() -> NamedSharding:
  """Leading axis split over this process's devices, in pmap's order."""
  mesh = Mesh(np.array(jax.local_devices()), (AXIS_NAME,))
  return NamedSharding(mesh, PartitionSpec(AXIS_NAME))


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
