r"""Trains an MLP with a class-sharded margin head: W [d, C] split over a mesh's "model" axis.

  .venv/bin/python -m experiments.sharded_head --config experiments/configs/sharded_head.py

The MLP is replicated; the head's class weights W [d, C] (a ``jax.Array`` with
``NamedSharding(mesh, P(None, "model"))``) and their SGD momentum live split
over "model"; the batch is split over "data". The loss is
``parallel.shard_classes(loss)``: every device computes the logits of its C/n
classes only. Data are synthetic and class-conditional (see `synthetic_batch`).
Run as a script it sets 8 CPU devices (XLA_FLAGS) when no device count is set;
that flag reaches only XLA's CPU client, so on GPUs the mesh is made of the GPUs.

`make_train_step` is the one place the step is built; the benchmark
`experiments/benchmarks/sharded_memory.py` and `tests/sharded_head_cases.py`
use it too.
"""

import os

if __name__ == "__main__" and "device_count" not in os.environ.get("XLA_FLAGS", ""):
  # Before jax is imported: 8 simulated devices on a CPU-only machine.
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  ).strip()

import functools  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable, NamedTuple  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from margin_jax import losses  # noqa: E402
from margin_jax import models  # noqa: E402
from margin_jax import parallel  # noqa: E402
from margin_jax import sharding  # noqa: E402
from margin_jax.training import objectives  # noqa: E402


class ShardedHeadNet(nn.Module):
  """Input -> Dense(hidden) -> ReLU -> Dense(feature_dim) = x, then the
  library's `models.ClassifierHead` with its classes split over "model".

  Returns ``(features [B, d], weights)``: W ``[d, C]`` (stacked ``[V, d, C]``
  when ``num_classifiers`` > 0), parameter ``head/kernel``.
  """

  hidden_dim: int
  feature_dim: int
  num_classes: int
  num_classifiers: int = 0

  @nn.compact
  def __call__(self, inputs):
    hidden = nn.relu(nn.Dense(self.hidden_dim)(inputs))
    features = nn.Dense(self.feature_dim)(hidden)
    head = models.ClassifierHead(
      num_classes=self.num_classes,
      num_classifiers=self.num_classifiers,
      class_axis="model",
      name="head",
    )
    return features, head(features)["weights"]


class Trainer(NamedTuple):
  """What `make_train_step` builds (all jitted, placed on ``mesh``)."""

  init: Callable[[int], tuple[Any, Any]]  # seed -> (params, opt_state)
  step: Callable[..., tuple[Any, Any, jax.Array]]  # (params, opt_state, inputs, labels, t)
  accuracy: Callable[..., jax.Array]  # (params, inputs, labels) -> top-1 over all C
  batch: Callable[[int], tuple[jax.Array, jax.Array]]  # t -> (inputs, labels)
  param_shardings: Any
  opt_shardings: Any


def make_mesh(config) -> jax.sharding.Mesh:
  """The ("data", "model") mesh of ``config.mesh_shape`` (`margin_jax.sharding.make_mesh`)."""
  try:
    return sharding.make_mesh(config.mesh_shape or ())
  except ValueError as err:
    raise ValueError(f"config.mesh_shape={config.mesh_shape!r}: {err}") from None


def head_loss(config) -> losses.BoundLoss:
  """The loss of ``config.loss`` with the config's hyperparameters
  (`margin_jax.training.objectives.bound_loss`); logit losses form their
  [B, C/n] logits inside each shard."""
  loss = objectives.bound_loss(config)
  if loss.spec.inputs == "centers" or loss.spec.needs_key or loss.spec.state:
    raise ValueError(f"config.loss={config.loss!r} is not supported by this example.")
  return loss


def _check(config, mesh):
  data, model = mesh.shape["data"], mesh.shape["model"]
  for name in (
    "num_classes",
    "batch_size",
    "num_examples",
    "input_dim",
    "hidden_dim",
    "feature_dim",
  ):
    if config[name] < 1:
      raise ValueError(f"config.{name}={config[name]} must be >= 1.")
  if config.batch_size % data:
    raise ValueError(f"config.batch_size={config.batch_size} must divide by data={data}.")
  if config.num_classes % model:
    raise ValueError(f"config.num_classes={config.num_classes} must divide by model={model}.")
  if config.sample_rate is not None and not 0.0 < config.sample_rate <= 1.0:
    raise ValueError(f"config.sample_rate={config.sample_rate} must be in (0, 1] or None.")
  if config.noise_std < 0:
    raise ValueError(f"config.noise_std={config.noise_std} must be >= 0.")
  if config.get("class_chunk_size", 0) < 0:
    raise ValueError(f"config.class_chunk_size={config.class_chunk_size} must be >= 0.")


def synthetic_batch(config, t):
  """Batch ``t`` of a fixed synthetic training set: ``(inputs [B, input_dim], labels [B])``.

  Example ``i`` (of ``num_examples``, cycled in order) has a label drawn from
  ``fold_in(key, i)``; its input is its class mean plus ``noise_std`` times
  fixed Gaussian noise. Class c's mean is a standard Gaussian vector drawn
  from ``fold_in(key, c)``: computed per example, no [C, input_dim] table.
  """
  label_key, mean_key, noise_key = jax.random.split(jax.random.key(config.seed + 1), 3)
  index = (t * config.batch_size + jnp.arange(config.batch_size)) % config.num_examples

  def example(i):
    label = jax.random.randint(jax.random.fold_in(label_key, i), (), 0, config.num_classes)
    mean = jax.random.normal(jax.random.fold_in(mean_key, label), (config.input_dim,))
    noise = jax.random.normal(jax.random.fold_in(noise_key, i), (config.input_dim,))
    return mean + config.noise_std * noise, label

  return jax.vmap(example)(index)


def make_train_step(config, mesh) -> Trainer:
  """The model, optimizer, sharded loss and jitted step of ``config`` on ``mesh``.

  The step is forward, backward (w.r.t. every parameter) and optax SGD with
  momentum; ``config.class_chunk_size`` > 0 (optional, default 0) streams the
  head over blocks of that many local classes (`margin_jax.losses.chunked`);
  W and its momentum keep ``P(None, "model")``, everything else is
  replicated, the batch is split over "data". It returns the batch-mean loss.
  """
  _check(config, mesh)
  # Auto axes: jit's shardings and XLA's propagation place everything (an
  # Explicit mesh, jax.make_mesh's default, would need jax.set_mesh).
  mesh = sharding.auto_axes(mesh)
  loss = head_loss(config)
  if config.get("class_chunk_size", 0):
    loss = loss.streamed(chunk_size=config.class_chunk_size)
  sharded = parallel.shard_classes(
    loss, mesh, class_axis="model", batch_axis="data", sample_rate=config.sample_rate
  )
  model = ShardedHeadNet(
    config.hidden_dim, config.feature_dim, config.num_classes, config.num_classifiers
  )
  optimizer = optax.sgd(config.learning_rate, momentum=config.momentum)
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))

  example = jax.ShapeDtypeStruct((config.batch_size, config.input_dim), jnp.float32)
  abstract = jax.eval_shape(model.init, jax.random.key(0), example)["params"]
  param_shardings = jax.tree.map(
    lambda spec: NamedSharding(mesh, spec), nn.get_partition_spec(abstract)
  )
  abstract_params = nn.unbox(abstract)
  opt_shardings = optax.tree_map_params(
    optimizer,
    lambda _, sharding: sharding,
    jax.eval_shape(optimizer.init, abstract_params),
    param_shardings,
    transform_non_params=lambda _: replicated,
  )

  @functools.partial(jax.jit, out_shardings=param_shardings)
  def init_params(key):
    return nn.unbox(model.init(key, jnp.zeros(example.shape, example.dtype))["params"])

  init_opt = jax.jit(optimizer.init, out_shardings=opt_shardings)

  def init(seed):
    params = init_params(jax.random.key(seed))
    return params, init_opt(params)

  def train_step(params, opt_state, inputs, labels, t):
    sample = {}
    if config.sample_rate is not None:
      sample = {"sample_key": jax.random.fold_in(jax.random.key(config.seed + 2), t)}

    def mean_loss(params):
      features, weights = model.apply({"params": params}, inputs)
      return sharded(features, weights, labels, step=t, **sample).mean()

    loss, grads = jax.value_and_grad(mean_loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(
    train_step,
    in_shardings=(param_shardings, opt_shardings, batch_sharding, batch_sharding, replicated),
    out_shardings=(param_shardings, opt_shardings, replicated),
    donate_argnums=(0, 1),
  )

  # Each shard's best classes (over blocks when streamed), merged: no [B, C] logits.
  predicted_class = parallel.shard_classes(
    loss.predicted_class, mesh, class_axis="model", batch_axis="data"
  )

  @jax.jit
  def accuracy(params, inputs, labels):
    features, weights = model.apply({"params": params}, inputs)
    return jnp.mean(predicted_class(features, weights) == labels)

  batch = jax.jit(
    lambda t: synthetic_batch(config, t), out_shardings=(batch_sharding, batch_sharding)
  )
  return Trainer(init, step, accuracy, batch, param_shardings, opt_shardings)


def train(config, *, print_fn=print) -> list[dict]:
  """Trains ``config`` and prints loss (mean since the last line) and training accuracy.

  The accuracy is top-1 over all C classes on the step's batch before its
  update (after the first pass over ``num_examples``, examples seen before).
  """
  mesh = make_mesh(config)
  trainer = make_train_step(config, mesh)
  params, opt_state = trainer.init(config.seed)
  w = params["head"]["kernel"]
  print_fn(
    f"{jax.device_count()} {jax.devices()[0].platform} devices, mesh {dict(mesh.shape)}; "
    f"{config.loss}, C={config.num_classes:,}, W {w.shape} {w.sharding.spec}: "
    f"{w.addressable_shards[0].data.nbytes / 2**20:.1f} MiB of W per device; "
    f"sample_rate {config.sample_rate}"
  )
  on_cpu = jax.default_backend() == "cpu"
  history, pending, start = [], [], time.perf_counter()
  for t in range(config.num_train_steps):
    inputs, labels = trainer.batch(t)
    last = t == config.num_train_steps - 1
    log = (t + 1) % config.log_every_steps == 0 or last
    if log:
      accuracy = jax.block_until_ready(trainer.accuracy(params, inputs, labels))
    params, opt_state, loss = trainer.step(params, opt_state, inputs, labels, t)
    # On CPU one program at a time: on a 2-core CPU simulating 8 devices,
    # programs with collectives queued back to back aborted in XLA's rendezvous.
    pending.append(jax.block_until_ready(loss) if on_cpu else loss)
    if log:
      row = {
        "step": t + 1,
        "loss": float(np.mean(jax.device_get(pending))),
        "accuracy": float(accuracy),
        "seconds": time.perf_counter() - start,
      }
      if not math.isfinite(row["loss"]):
        raise FloatingPointError(f"non-finite loss at step {t + 1}")
      history.append(row)
      pending = []
      print_fn(
        f"step {row['step']:5d}  loss {row['loss']:8.4f}  train accuracy "
        f"{row['accuracy']:.3f}  {row['seconds']:6.1f} s"
      )
  return history


def main(argv):
  from absl import app

  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  train(_CONFIG.value)


if __name__ == "__main__":
  from absl import app
  from ml_collections import config_flags

  _CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/sharded_head.py", "Path to the config file.", lock_config=True
  )
  app.run(main)
