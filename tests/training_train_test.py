"""In-process training tests: mock data, compile-once, determinism, errors."""

import json
import shutil
from typing import Any

import chex
import jax
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import PartitionSpec
import pytest
import tensorflow_datasets as tfds

from experiments.configs import smoke
from margin_jax import losses
from margin_jax import models
from margin_jax import training
from margin_jax.training import objectives
from margin_jax.training import train as train_lib
from margin_jax.training.checkpoint import Checkpointer


def read_metrics(workdir):
  with open(f"{workdir}/metrics.jsonl") as f:
    return [json.loads(line) for line in f]


def tiny_config(data_dir, **overrides):
  config = smoke.get_config()
  config.data_dir = data_dir
  config.update(overrides)
  return config


class _PerItemSource:
  """A data source read item by item (the mock's ``__getitems__`` is broken)."""

  def __init__(self, source):
    self._source = source

  def __len__(self):
    return len(self._source)

  def __getitems__(self, keys):
    return [self._source[k] for k in keys]


@pytest.fixture
def mock_mnist(monkeypatch):
  """``tfds.testing.mock_data`` for MNIST, worked around for tfds 4.9.10.

  The mocked source's ``__getitems__`` raises a TypeError; read items one by
  one instead. The mock stands for a prepared dataset, so loading neither
  prepares the real one (from ``$MARGIN_JAX_DATA``) nor downloads it.
  """
  monkeypatch.delenv("MARGIN_JAX_DATA", raising=False)
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
  real = tfds.data_source
  monkeypatch.setattr(tfds, "data_source", lambda *a, **kw: _PerItemSource(real(*a, **kw)))
  with tfds.testing.mock_data(num_examples=64):
    yield


def test_one_step_under_mock_data(mock_mnist, tmp_path):
  config = tiny_config("", num_train_steps=1)
  state = training.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 1
  (line,) = read_metrics(tmp_path)
  assert line["step"] == 1 and np.isfinite(line["loss"])
  assert 0.0 <= line["test_error"] <= 1.0
  for key in ("accuracy", "learning_rate", "theta_y", "p_target", "saturated", "rho_hat"):
    assert key in line


def test_train_step_compiles_once(tiny_mnist, tmp_path, monkeypatch):
  chex.clear_trace_counter()
  monkeypatch.setattr(train_lib, "train_step", chex.assert_max_traces(train_lib.train_step, n=1))
  config = tiny_config(
    tiny_mnist[1], loss="l_softmax", num_train_steps=4, checkpoint_every_steps=2, eval_every_steps=2
  )
  training.train_and_evaluate(config, str(tmp_path))
  lambdas = [m["lambda"] for m in read_metrics(tmp_path)]
  assert len(lambdas) == 4 and lambdas[0] > lambdas[-1]  # schedule, traced


def test_same_seed_same_result_and_resume_rules(tiny_mnist, tmp_path):
  config = tiny_config(
    tiny_mnist[1], loss="noisy_softmax", num_train_steps=2, preprocess="cifar_plus"
  )
  a = training.train_and_evaluate(config, str(tmp_path / "a"))
  b = training.train_and_evaluate(config, str(tmp_path / "b"))
  chex.assert_trees_all_equal(a.params, b.params)
  chex.assert_trees_all_equal(a.batch_stats, b.batch_stats)

  with pytest.raises(FileExistsError, match="--resume"):
    training.train_and_evaluate(config, str(tmp_path / "a"))
  changed = tiny_config(
    tiny_mnist[1], loss="virtual_softmax", num_train_steps=2, preprocess="cifar_plus", width=0.25
  )
  with pytest.raises(training.ConfigMismatchError) as e:
    training.train_and_evaluate(changed, str(tmp_path / "a"), resume=True)
  assert "loss: checkpoint 'noisy_softmax', now 'virtual_softmax'" in str(e.value)
  assert "width" in str(e.value)


def test_interrupted_runs_log_every_step_once(tiny_mnist, tmp_path):
  """A run killed after logging steps past its last checkpoint logs them again
  when resumed, and a fresh run in a workdir holding an earlier attempt's
  metrics (and no checkpoint) starts them over: each step is logged once."""
  config = tiny_config(
    tiny_mnist[1], num_train_steps=4, checkpoint_every_steps=2, log_every_steps=1
  )
  training.train_and_evaluate(config, str(tmp_path))
  complete = read_metrics(tmp_path)
  assert [m["step"] for m in complete] == [1, 2, 3, 4]
  # Killed after logging step 4 (and half of a line) but before checkpointing it.
  shutil.rmtree(tmp_path / "checkpoints" / "4")
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 5, "lo')
  training.train_and_evaluate(config, str(tmp_path), resume=True)
  resumed = read_metrics(tmp_path)
  assert [m["step"] for m in resumed] == [1, 2, 3, 4]
  assert resumed[:2] == complete[:2]
  # No checkpoint at all: a fresh start, not a continuation of the old log.
  shutil.rmtree(tmp_path / "checkpoints")
  training.train_and_evaluate(config, str(tmp_path))
  assert [m["step"] for m in read_metrics(tmp_path)] == [1, 2, 3, 4]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_mnist, tmp_path):
  config = tiny_config(
    tiny_mnist[1],
    learning_rate=1e30,
    num_train_steps=20,
    checkpoint_every_steps=1,
    lr_boundaries=(),
  )
  with pytest.raises(training.NonFiniteLossError, match="last good checkpoint"):
    training.train_and_evaluate(config, str(tmp_path))
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert steps, "no checkpoint was kept"
  # Resuming loads the last good (finite) state.
  config.num_train_steps = steps[-1]
  state = training.train_and_evaluate(config, str(tmp_path), resume=True)
  assert int(state.step) == steps[-1]
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


@pytest.mark.parametrize("loss", objectives.LOSSES)
def test_every_objective_gives_per_example_loss(loss):
  config = smoke.get_config()
  config.loss = loss
  config.num_classifiers = 2 if losses.TABLE[loss].inputs == "stacked" else 0
  objective = objectives.get_objective(config)
  k = jax.random.split(jax.random.key(0), 3)
  weights_shape = (2, 8, 5) if config.num_classifiers else (8, 5)
  outputs = {
    "features": jax.random.normal(k[0], (6, 8)),
    "weights": jax.random.normal(k[1], weights_shape),
    "centers": jax.random.normal(k[2], (5, 8)),
  }
  labels = np.arange(6) % 5
  per_example = objective.loss(outputs, labels, step=0, key=k[0])
  assert per_example.shape == (6,)
  assert np.isfinite(per_example).all()
  predicted = objective.predicted_class(outputs)
  np.testing.assert_array_equal(predicted, models.test_logits(outputs, loss).argmax(-1))
  diagnostics = objective.diagnostics(outputs, labels, 0)
  assert 0 <= float(diagnostics["theta_y"]) <= 180
  assert ("hsic" in diagnostics) == (losses.TABLE[loss].classify == "averaged")
  assert ("lambda" in diagnostics) == (loss in ("l_softmax", "a_softmax"))
  config.class_chunk_size = 2  # streamed over blocks of 2 of the 5 classes
  try:
    streamed = objectives.get_objective(config)
  except ValueError as err:
    assert "cannot be streamed" in str(err) and "config.class_chunk_size=2" in str(err)
    return
  np.testing.assert_allclose(
    streamed.loss(outputs, labels, step=0, key=k[0]), per_example, rtol=1e-5, atol=1e-6
  )
  np.testing.assert_array_equal(streamed.predicted_class(outputs), predicted)
  got = streamed.diagnostics(outputs, labels, 0)
  np.testing.assert_allclose(got["p_target"], diagnostics["p_target"], rtol=1e-5)
  assert "rho_hat" not in got


def test_mesh_state_specs_split_the_head_and_its_momentum():
  """On a mesh the head's W and its SGD momentum are split over "model";
  the backbone and its momentum are replicated."""
  config = smoke.get_config()
  config.mesh_shape = (2, 2)
  objective = objectives.get_objective(config)
  model = train_lib.create_model(config, 10, objective=objective)
  _, specs = train_lib.create_train_state(
    config, model, (28, 28, 1), jax.random.key(0), objective=objective
  )
  is_trace = lambda s: isinstance(s, optax.TraceState)
  (trace,) = [s.trace for s in jax.tree.leaves(specs.opt_state, is_leaf=is_trace) if is_trace(s)]
  for tree in (specs.params, trace):
    assert tree["head"]["kernel"] == PartitionSpec(None, "model")
    assert all(s == PartitionSpec() for s in jax.tree.leaves(tree["backbone"]))


def test_mesh_config_errors(tiny_mnist, tmp_path):
  config = tiny_config(tiny_mnist[1], mesh_shape=(1, 4))
  with pytest.raises(ValueError, match="10 classes do not split evenly over 4 class shards"):
    training.train_and_evaluate(config, str(tmp_path / "a"))
  config = tiny_config(tiny_mnist[1], mesh_shape=(4, 4))
  with pytest.raises(ValueError, match=r"needs 16 devices, there are 4"):
    training.train_and_evaluate(config, str(tmp_path / "b"))


def test_center_loss_trains_on_the_mesh_as_with_pmap(tiny_mnist, tmp_path):
  """The centres [C, d] split over "model" like W: the mesh step equals pmap's."""
  states = [
    training.train_and_evaluate(
      tiny_config(tiny_mnist[1], loss="center", num_train_steps=3, mesh_shape=shape),
      str(tmp_path / str(shape)),
    )
    for shape in ((), (2, 2))
  ]
  trees = [jax.device_get((s.params, s.batch_stats)) for s in states]
  chex.assert_trees_all_close(*trees, rtol=1e-4, atol=1e-5)
  assert np.abs(trees[0][1]["head"]["centers"]).max() > 0  # the centres moved


def test_streamed_head_trains_as_the_materialised_one(tiny_mnist, tmp_path):
  """class_chunk_size streams the head (blocks of 3 of the 5 classes per shard
  on a (2, 2) mesh): the same steps and test error as the materialised head with pmap."""
  runs = [((), 0), ((2, 2), 3)]  # (pmap's streamed loss: test_every_objective_gives_...)
  states = [
    training.train_and_evaluate(
      tiny_config(
        tiny_mnist[1], loss="cosface", num_train_steps=3, mesh_shape=shape, class_chunk_size=chunk
      ),
      str(tmp_path / f"{shape}-{chunk}"),
    )
    for shape, chunk in runs
  ]
  trees = [jax.device_get(s.params) for s in states]
  chex.assert_trees_all_close(trees[0], trees[1], rtol=1e-4, atol=1e-5)
  logs = [read_metrics(tmp_path / f"{shape}-{chunk}") for shape, chunk in runs]
  errors = [[r["test_error"] for r in log if "test_error" in r] for log in logs]
  assert errors[0] == errors[1] and errors[0]


def test_every_loss_takes_its_keywords_from_its_sub_config():
  config = smoke.get_config()
  assert set(config.loss_kwargs) == set(losses.TABLE)
  for name, spec in losses.TABLE.items():
    config.loss = name
    config.num_classifiers = 2 if spec.inputs == "stacked" else 0
    assert set(objectives.bound_loss(config).hyperparameters) >= set(spec.typical), name
  config.loss, config.num_classifiers = "arcface", 0
  config.loss_kwargs.arcface.margin = 0.3
  assert objectives.bound_loss(config).hyperparameters["margin"] == 0.3
  # L-Softmax's lam: its published schedule's settings, over this run's length.
  config.loss = "l_softmax"
  config.loss_kwargs.l_softmax.lam.lambda_min = 0.5
  lam = objectives.get_objective(config).lam
  assert float(lam(0)) == 1000.0 and float(lam(config.num_train_steps)) == 0.5


def test_objective_config_errors():
  config = smoke.get_config()
  config.loss = "large_margin"
  with pytest.raises(ValueError, match="unknown config.loss"):
    objectives.get_objective(config)
  config.loss = "em_softmax"
  with pytest.raises(ValueError, match="num_classifiers"):
    objectives.get_objective(config)


@pytest.mark.parametrize(
  "loss,mesh_shape",
  [("arcface", ()), ("arcface", (2, 2)), ("l_softmax", ())],
  ids=["pmap", "mesh", "lambda-schedule"],
)
def test_restore_a_workdir_and_use_the_model(tiny_mnist, tmp_path, loss, mesh_shape):
  """A run trained data-parallel or on a class-sharded mesh restores onto one
  device and classifies its test set as its last evaluation did; so does a
  run whose loss has a schedule over the run's length (L-Softmax's lambda)."""
  config = tiny_config(tiny_mnist[1], loss=loss, num_train_steps=4, mesh_shape=mesh_shape)
  training.train_and_evaluate(config, str(tmp_path))
  run = training.restore(str(tmp_path), data_dir=tiny_mnist[1])
  assert run.step == 4 and run.config.loss == loss and run.config.num_train_steps == 4
  images, labels = run.dataset["test"]
  predictions = np.asarray(run.logits(images, batch_size=24)).argmax(-1)
  (final,) = [m for m in read_metrics(tmp_path) if "test_error" in m][-1:]
  assert float(np.mean(predictions != labels)) == pytest.approx(final["test_error"])
  embeddings = run.embed(images)
  assert embeddings.shape == (len(images), 16)
  np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
  # insightface's flip test: an image and its mirror embed alike, summed.
  mirrored = images[:, :, ::-1]
  features = run.outputs(images)["features"] + run.outputs(mirrored)["features"]
  want = features / np.linalg.norm(features, axis=1, keepdims=True)
  np.testing.assert_allclose(run.embed(images, flip=True), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    run.embed(images, flip=True), run.embed(mirrored, flip=True), atol=1e-5
  )
  with pytest.raises(FileNotFoundError, match="No checkpoint"):
    training.restore(str(tmp_path / "empty"))


def test_loss_state_is_global_checkpointed_and_restored(tiny_mnist, tmp_path):
  """CurricularFace's t (a loss's training state) moves every step; 2 steps on
  a (2, 2) mesh (classes split, batch over "data"), checkpointed and resumed
  to 4, equal 4 uninterrupted pmap steps over 4 devices: the state is the
  whole batch's and restored with the rest. (AdaFace's norm statistics take
  the same path; `tests/parallel_mesh_cases.py` checks both helpers' global means.)"""
  loss = "curricularface"
  config = tiny_config(tiny_mnist[1], loss=loss, num_train_steps=4, checkpoint_every_steps=2)
  full = training.train_and_evaluate(config, str(tmp_path / "pmap"))
  logged = [{k: m[k] for k in full.loss_state} for m in read_metrics(tmp_path / "pmap")]
  initial = objectives.get_objective(config).initial_state
  assert all(a != b for a, b in zip([initial, *logged], logged)), logged
  chex.assert_trees_all_close(logged[-1], full.loss_state)
  mesh = tiny_config(tiny_mnist[1], loss=loss, num_train_steps=2, mesh_shape=(2, 2))
  training.train_and_evaluate(mesh, str(tmp_path / "mesh"))
  mesh.num_train_steps = 4
  resumed = training.train_and_evaluate(mesh, str(tmp_path / "mesh"), resume=True)
  chex.assert_trees_all_close(resumed.loss_state, full.loss_state, rtol=1e-5)


class _TrainStateBeforeLossState(train_state.TrainState):
  batch_stats: Any


def test_a_checkpoint_written_before_the_loss_state_restores(tiny_mnist, tmp_path):
  """A checkpoint without ``loss_state`` (written before the trainer carried
  one) restores its parameters (the train state's empty loss state kept)."""
  config = tiny_config(tiny_mnist[1], loss="arcface")
  objective = objectives.get_objective(config)
  model = train_lib.create_model(config, 10, objective=objective)
  state, _ = train_lib.create_train_state(
    config, model, (28, 28, 1), jax.random.key(0), objective=objective
  )
  fields = ("step", "apply_fn", "params", "tx", "opt_state", "batch_stats")
  old = _TrainStateBeforeLossState(**{k: getattr(state, k) for k in fields})
  checkpointer = Checkpointer(str(tmp_path / "checkpoints"), config)
  checkpointer.save(0, old)
  checkpointer.close()
  run = training.restore(str(tmp_path), data_dir=tiny_mnist[1])
  chex.assert_trees_all_equal(run.variables["params"], state.params)
