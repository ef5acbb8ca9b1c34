"""Data-parallel training and evaluation, in the style of flax examples/imagenet.

``train_and_evaluate(config, workdir)`` trains a :class:`MarginNet` with the
loss named by ``config.loss`` under ``jax.pmap`` (axis ``"data"``) or, with
``config.mesh_shape = (data, model)``, under ``jit`` + ``shard_map`` on a
device mesh with the head's classes split over ``"model"`` (`devices`; one
step function for both): gradients
and metrics averaged with ``lax.pmean``, batch norm statistics synchronised,
PRNG keys folded per step and per device, checkpoints every
``checkpoint_every_steps`` and at the end, metrics to ``workdir/metrics.jsonl``.
"""

from __future__ import annotations

import functools
import math
import pathlib
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
from flax import struct
from flax.training import train_state
from jax.sharding import PartitionSpec

from margin_jax import data
from margin_jax import models
from margin_jax import sharding
from margin_jax.data import faces
from margin_jax.data import transforms
from margin_jax.training import devices
from margin_jax.training import logs
from margin_jax.training import objectives
from margin_jax.training import verification
from margin_jax.training import optim
from margin_jax.training.checkpoint import Checkpointer


class TrainState(train_state.TrainState):
  """Params, optimiser state, the ``batch_stats`` collection (batch norm
  running statistics and, for ``center``, the class centers) and the loss's
  training state (AdaFace's norm statistics, CurricularFace's t; else ``{}``);
  ``learning_rate`` is the optimiser's schedule (static, not checkpointed), for
  the metrics."""

  batch_stats: Any
  loss_state: Any = struct.field(default_factory=dict)
  learning_rate: Callable[[Any], Any] = struct.field(pytree_node=False, default=None)


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
  """Training was stopped (Ctrl-C or SIGTERM); its message names the checkpoint to resume from."""


def create_model(config, num_classes: int, *, objective) -> models.MarginNet:
  """The config's network; class centers kept for a loss that takes them."""
  return models.margin_net(
    config.model,
    num_classes=num_classes,
    width=config.width,
    feature_dim=config.feature_dim or None,
    num_classifiers=config.num_classifiers,
    use_bias=config.use_bias,
    center_alpha=config.center_alpha if objective.takes_centers else 0.0,
    axis_name=sharding.DATA_AXIS,
    class_axis=sharding.MODEL_AXIS if config.mesh_shape else None,
  )


def new_train_state(config, model, variables, *, objective) -> TrainState:
  """The state of a run starting from the model's ``variables``: the config's
  SGD (`margin_jax.training.optim`) with its learning-rate schedule and the
  initial training state of the ``objective``'s loss."""
  learning_rate = optim.learning_rate_schedule(config)
  return TrainState.create(
    apply_fn=model.apply,
    params=variables["params"],
    tx=optim.create_optimizer(config, learning_rate),
    batch_stats=variables.get("batch_stats", {}),
    loss_state=objective.initial_state,
    learning_rate=learning_rate,
  )


def initial_state(config, model, image_shape, key, *, objective) -> TrainState:
  """The train state at step 0, the model initialised on ``[1, *image_shape]``
  inputs, still boxed by ``nn.with_partitioning`` (traceable: under ``jit``
  or ``jax.eval_shape``)."""
  variables = model.init(key, jnp.zeros((1, *image_shape)), train=False)
  return new_train_state(config, model, variables, objective=objective)


def create_train_state(config, model, image_shape, key, *, objective) -> tuple[TrainState, Any]:
  """`initial_state` on the host (one jit) and a PartitionSpec per leaf (`state_specs`)."""
  init = functools.partial(initial_state, config, model, image_shape, objective=objective)
  state = jax.device_get(jax.jit(init)(key))
  return nn.meta.unbox(state), state_specs(state)


def state_specs(boxed_state) -> Any:
  """A PartitionSpec per leaf of a train state still boxed by
  ``nn.with_partitioning`` (concrete or from ``jax.eval_shape``): the head's
  class weights and their optimiser state on their class axis, everything
  else replicated."""
  return jax.tree.map(
    lambda s: s if isinstance(s, PartitionSpec) else PartitionSpec(),  # None for scalars
    nn.get_partition_spec(boxed_state),
    is_leaf=lambda s: s is None or isinstance(s, PartitionSpec),
  )


def is_logged_step(config, step):
  """Whether the trainer logs ``step`` (1-based): every ``log_every_steps``,
  every evaluation and checkpoint, and the last step. ``step`` may be traced."""
  return (
    (step == config.num_train_steps)
    | (step % config.log_every_steps == 0)
    | (step % config.eval_every_steps == 0)
    | (step % config.checkpoint_every_steps == 0)
  )


def placed_initial_state(
  config, model, image_shape, num_classes: int, key, *, objective, allocate: bool = True
):
  """The trainer's placement for ``config`` and its train state at step 0.

  The specs come from the abstract state, then the state is computed where it
  lives (on a mesh: W split over ``"model"`` from the start, never on the
  host). ``allocate=False`` returns the abstract state (nothing allocated).
  """
  init = functools.partial(initial_state, config, model, image_shape, objective=objective)
  boxed = jax.eval_shape(init, key)
  place = placement(config, state_specs(boxed), num_classes)
  state = nn.meta.unbox(boxed)
  if allocate:
    state = place.init_state(lambda key: nn.meta.unbox(init(key)), key, state)
  return place, state


def training_step(config, *, objective, preprocess, key):
  """`train_step` as the trainer runs it for ``config``: its statistics only
  on the steps it logs (`is_logged_step`); for a placement's ``parallelize``."""
  return functools.partial(
    train_step,
    objective=objective,
    preprocess=preprocess,
    key=key,
    logged=functools.partial(is_logged_step, config),
  )


def train_step(state, batch, *, objective, preprocess, key, shard=None, logged=None):
  """One SGD step on one device's shard; collectives over axis ``"data"``.

  Args:
    state: this device's replica of the :class:`TrainState`.
    batch: ``{"image": uint8 [b, H, W, C], "label": int [b]}``.
    objective: a :class:`~margin_jax.training.objectives.Objective`.
    preprocess: ``(key, images, train) -> float images``.
    key: the run's base PRNG key; folded with the step and the device index,
      so augmentation and loss noise differ across devices yet are
      reproducible.
    shard: the class shard of a class-sharded step
      (`margin_jax.training.devices.MeshParallel` passes it), else ``None``.
    logged: ``step -> bool`` (traced, the 1-based step this one completes):
      the training accuracy and the diagnostics are computed only when true
      (zeros otherwise: with 10^6 classes they cost as much as a sampled
      loss); ``None``: every step.

  Returns:
    The new state and the device-averaged metrics.
  """
  key = jax.random.fold_in(
    jax.random.fold_in(key, state.step), jax.lax.axis_index(sharding.DATA_AXIS)
  )
  aug_key, loss_key = jax.random.split(key)
  labels = batch["label"]
  images = preprocess(aug_key, batch["image"], train=True)

  def loss_fn(params):
    outputs, new_model_state = state.apply_fn(
      {"params": params, "batch_stats": state.batch_stats},
      images,
      labels,
      train=True,
      shard=shard,
      mutable=["batch_stats"],
    )
    # The loss's state first (over the whole batch of all devices), then the loss with it.
    loss_state = objective.update_state(
      outputs, labels, state.loss_state, axis_name=sharding.DATA_AXIS, shard=shard
    )
    loss = objective.loss(
      outputs, labels, step=state.step, key=loss_key, state=loss_state, shard=shard
    )
    return loss.mean(), (outputs, new_model_state, loss_state)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  # Each device's own gradient, then their mean. Params replicated by a mesh
  # step are typed device-invariant, and autodiff would already sum their
  # gradients over the devices; cast to per-device (a no-op under pmap).
  params = jax.lax.pcast(state.params, sharding.DATA_AXIS, to="varying")
  (loss, (outputs, new_model_state, loss_state)), grads = grad_fn(params)
  grads = jax.lax.pmean(grads, sharding.DATA_AXIS)

  def statistics():
    return {
      "accuracy": (objective.predicted_class(outputs, shard=shard) == labels).mean(),
      **objective.diagnostics(outputs, labels, state.step, shard=shard),
    }

  if logged is None:
    extra = statistics()
  else:
    skipped = lambda: jax.tree.map(jnp.zeros_like, jax.eval_shape(statistics))  # noqa: E731
    extra = jax.lax.cond(logged(state.step + 1), statistics, skipped)
  metrics = {"loss": loss, "learning_rate": state.learning_rate(state.step), **extra}
  metrics = {**jax.lax.pmean(metrics, sharding.DATA_AXIS), **loss_state}
  state = state.apply_gradients(
    grads=grads, batch_stats=new_model_state["batch_stats"], loss_state=loss_state
  )
  return state, metrics


def eval_step(state, batch, *, objective, preprocess, shard=None):
  """Counts correct test predictions (``mask`` drops padding), summed over
  all devices."""
  images = preprocess(None, batch["image"], train=False)
  outputs = state.apply_fn(
    {"params": state.params, "batch_stats": state.batch_stats}, images, train=False, shard=shard
  )
  correct = objective.predicted_class(outputs, shard=shard) == batch["label"]
  counts = {"correct": (correct * batch["mask"]).sum(), "count": batch["mask"].sum()}
  return jax.lax.psum(counts, sharding.DATA_AXIS)


def load_dataset(config) -> dict:
  """`margin_jax.data.load_dataset` with the config's dataset, data directory,
  training fraction, label noise and seed; for ``"many_classes"``
  `margin_jax.data.many_classes` with the config's ``num_classes``,
  ``num_examples``, ``num_test_examples`` and ``noise_std``."""
  if config.dataset == "many_classes":
    return data.many_classes(
      num_classes=config.num_classes,
      num_train=config.num_examples,
      num_test=config.num_test_examples,
      noise_std=config.noise_std,
      seed=config.seed,
    )
  return data.load_dataset(
    config.dataset,
    data_dir=config.data_dir or None,
    train_fraction=config.train_fraction,
    label_noise=config.label_noise,
    seed=config.seed,
  )


class TrainingData(NamedTuple):
  """What a run trains and evaluates on.

  Attributes:
    num_classes: the classes (identities) of the training set.
    sample: uint8 ``[1, H, W, C]``, a training image as the model takes it.
    mean: the per-pixel training mean its recipe subtracts (``None`` for the
      ``"none"`` and ``"face"`` recipes).
    test: ``(images, labels)`` scored for test error, or ``None``.
    batches: ``(start_step, num_devices) -> iterator`` of the training
      batches from ``start_step`` on (`margin_jax.data` batch dicts).
    arrays: `load_dataset`'s dict for an in-memory dataset, else ``None``.
    described: what was read, e.g. ``train_data: 490,623 images, 10,575
      identities`` (face data; the trainer prints it).
  """

  num_classes: int
  sample: np.ndarray
  mean: np.ndarray | None
  test: tuple | None
  batches: Callable
  arrays: dict | None
  described: str = ""


def training_data(config) -> TrainingData:
  """The config's data: ``config.train_data`` (face data, read as it trains:
  `margin_jax.data.faces.open_source`, `margin_jax.data.source_train_batches`)
  if set, else ``config.dataset`` in memory (`load_dataset`)."""
  common = dict(
    batch_size=config.batch_size,
    seed=config.seed,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  if config.preprocess == "face" and not config.get("train_data"):
    raise ValueError("the face protocol trains on face data: set --config.train_data=PATH.")
  if config.get("train_data"):
    source = faces.open_source(config.train_data)
    crop = input_crop(config)
    sample = transforms.center_crop(source[0][0][None], crop) if crop else source[0][0][None]
    batches = functools.partial(
      data.source_train_batches, source, num_steps=config.num_train_steps, crop_to=crop, **common
    )
    return TrainingData(
      num_classes=source.num_classes,
      sample=sample,
      mean=None,
      test=None,
      batches=lambda start, n: batches(start_step=start, num_devices=n),
      arrays=None,
      described=f"train_data: {source.num_images:,} images, {source.num_classes:,} identities",
    )
  dataset = load_dataset(config)
  images, labels = dataset["train"]
  mean = None if config.preprocess == "none" else np.asarray(transforms.pixel_mean(images))
  batches = functools.partial(data.endless_train_batches, images, labels, **common)
  return TrainingData(
    num_classes=dataset["num_classes"],
    sample=images[:1],
    mean=mean,
    test=dataset["test"],
    batches=lambda start, n: batches(start_step=start, num_devices=n),
    arrays=dataset,
  )


# The input a face network takes when it is not its data's (SphereFace-20:
# 112x96, the central crop of a 112x112 face).
FACE_INPUT = {"sphereface20": (112, 96)}


def input_crop(config) -> tuple[int, int] | None:
  """The central crop ``(h, w)`` face images take for ``config.model``, or None."""
  return FACE_INPUT.get(config.model) if config.get("train_data") else None


def placement(config, specs, num_classes: int):
  """`devices.MeshParallel` for a ``config.mesh_shape``, else `devices.DataParallel`."""
  if config.mesh_shape:
    return devices.MeshParallel(config.mesh_shape, specs, num_classes)
  return devices.DataParallel()


def evaluate(p_eval, state, config, images, labels, place) -> float:
  """Test error (fraction) over the whole split, every example once."""
  correct = count = 0
  for batch in data.eval_batches(
    images,
    labels,
    batch_size=config.eval_batch_size,
    num_devices=place.batch_devices(),
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  ):
    counts = place.to_host(p_eval(state, place.put_batch(batch)))
    correct, count = correct + counts["correct"], count + counts["count"]
  return 1.0 - float(correct) / float(count)


class _StopRequests:
  """Notes Ctrl-C (SIGINT) and SIGTERM while it is open (main thread only):
  the loop acts on them between steps, since a step's input state is donated
  to it and cannot be saved half-way through."""

  def __init__(self):
    self.requested = False
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for number in (signal.SIGINT, signal.SIGTERM):
        self._previous[number] = signal.signal(number, self._note)

  def _note(self, number, frame):
    self.requested = True

  def close(self) -> None:
    for number, handler in self._previous.items():
      signal.signal(number, handler)


def _stop(step, state, checkpointer, place, workdir):
  """Saves ``step`` (unless it is the latest checkpoint) and raises
  `TrainingInterrupted`. One process only: several save collectively, which
  a signal to one of them cannot start; they stop at their last checkpoint."""
  if jax.process_count() == 1 and step != checkpointer.latest_step():
    checkpointer.save(step, place.for_checkpoint(state))
  raise TrainingInterrupted(
    f"interrupted after step {step}; the latest checkpoint is step "
    f"{checkpointer.latest_step()} in {workdir}/checkpoints: continue with --resume"
  )


def train_and_evaluate(config, workdir: str, *, resume: bool = False):
  """Trains ``config`` in ``workdir`` and returns the final host train state.

  Args:
    config: a ``ConfigDict`` as in ``experiments/configs/default.py``.
    workdir: checkpoints (``workdir/checkpoints``) and ``metrics.jsonl``.
    resume: continue from the latest checkpoint in ``workdir``. Without it a
      workdir holding checkpoints is an error, so no run is overwritten.

  Raises:
    NonFiniteLossError: the loss became NaN/inf; the last good checkpoint is
      kept.
    ConfigMismatchError: resuming with a config other than the checkpoint's.
    TrainingInterrupted: Ctrl-C (SIGINT) or SIGTERM during training; the
      step in progress completes and is saved first (one process), so
      ``resume=True`` continues there.
  """
  dataset = training_data(config)
  if dataset.described and jax.process_index() == 0:
    print(dataset.described, flush=True)
  objective = objectives.get_objective(config)
  preprocess = functools.partial(transforms.preprocess, recipe=config.preprocess, mean=dataset.mean)

  model = create_model(config, dataset.num_classes, objective=objective)
  init_key, train_key = jax.random.split(jax.random.key(config.seed))
  image_shape = jax.eval_shape(
    lambda: preprocess(jax.random.key(0), dataset.sample, train=True)
  ).shape[1:]
  place, state = placed_initial_state(
    config, model, image_shape, dataset.num_classes, init_key, objective=objective
  )

  checkpointer = Checkpointer(f"{workdir}/checkpoints", config)
  if checkpointer.latest_step() is not None:
    if not resume:
      raise FileExistsError(
        f"{workdir} already holds checkpoints (latest step "
        f"{checkpointer.latest_step()}); pass resume=True (--resume) to "
        "continue that run or use a new workdir"
      )
    state = checkpointer.restore(place.restore_target(state))
    if jax.process_index() == 0:
      print(
        f"resuming from step {int(state.step)} of {config.num_train_steps} "
        f"({workdir}/checkpoints/{checkpointer.latest_step()})",
        flush=True,
      )
  start_step = int(state.step)

  p_train = place.parallelize(
    training_step(config, objective=objective, preprocess=preprocess, key=train_key),
    returns_state=True,
  )
  p_eval = place.parallelize(
    functools.partial(eval_step, objective=objective, preprocess=preprocess), returns_state=False
  )

  writer = logs.MetricWriter(workdir, start_step)
  progress = logs.Progress(config.num_train_steps, start_step)
  state = place.put_state(state)
  batches = dataset.batches(start_step, place.batch_devices())
  pair_files = [path for path in config.get("val_pairs", "").split(",") if path]
  pairs = [faces.load_pairs(path) for path in pair_files]
  pair_names = [pathlib.Path(path).stem for path in pair_files]
  embed = verification.embedder(model, preprocess, crop_to=input_crop(config))
  # XLA:CPU's in-process collectives can deadlock when steps with collectives
  # queue back to back on a busy machine (a device thread missing the
  # all-reduce's 40 s rendezvous): on the CPU each step runs to its end.
  on_cpu = jax.default_backend() == "cpu"
  start_time = time.time()
  stop = _StopRequests()
  try:
    for step in range(start_step + 1, config.num_train_steps + 1):
      state, metrics = p_train(state, place.put_batch(next(batches)))
      if on_cpu:
        jax.block_until_ready(metrics)
      if stop.requested:
        _stop(step, state, checkpointer, place, workdir)
      if not is_logged_step(config, step):
        continue
      final = step == config.num_train_steps
      save = final or step % config.checkpoint_every_steps == 0
      evaluate_now = final or step % config.eval_every_steps == 0
      scalars = {k: float(v) for k, v in place.to_host(metrics).items()}
      if not math.isfinite(scalars["loss"]):
        raise NonFiniteLossError(
          f"loss is {scalars['loss']} at step {step} ({config.loss}); "
          f"stopping. The last good checkpoint is step "
          f"{checkpointer.latest_step()} in {workdir}/checkpoints."
        )
      if evaluate_now and dataset.test is not None:
        scalars["test_error"] = evaluate(p_eval, state, config, *dataset.test, place)
      if evaluate_now and pairs:
        host = place.to_host(state)
        variables = {"params": host.params, "batch_stats": host.batch_stats}
        for name, (images, same, folds) in zip(pair_names, pairs):
          numbers = verification.report(embed(variables, images), same, folds)
          scalars.update({f"{name}_{k}": v for k, v in numbers.items()})
      scalars["wall_time"] = time.time() - start_time
      writer.write(step, scalars)
      progress.update(step, scalars)
      if save:
        checkpointer.save(step, place.for_checkpoint(state))
  finally:
    stop.close()
    progress.close()
    writer.close()
    checkpointer.close()
  return place.to_host(state)
