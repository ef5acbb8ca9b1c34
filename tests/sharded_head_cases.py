"""The many-class task (`experiments/configs/sharded_head.py`: the trainer's
mesh path on `margin_jax.data.many_classes`) on 8 devices; run by
tests/parallel_test.py in a subprocess with
``--xla_force_host_platform_device_count=8``.

At 1,000 classes the trainer lowers the loss and raises the training accuracy
in 30 steps, with W and its momentum split over "model", for the full,
PartialFC-sampled and streamed heads.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from experiments.configs import sharded_head as configs
from margin_jax import training
from margin_jax.training import objectives
from margin_jax.training import train as train_lib

assert jax.device_count() == 8, "run through tests/parallel_test.py (8 CPU devices)"
ROOT = pathlib.Path(__file__).resolve().parents[1]
# The task at 1,000 classes, 2 steps a pass (examples recur from step 3 on),
# every step logged (the first row: the untrained net on batch 0).
SMALL = {
  "num_classes": 1000,
  "num_examples": 512,
  "num_test_examples": 256,
  "num_train_steps": 30,
  "log_every_steps": 1,
  "eval_every_steps": 30,
  "checkpoint_every_steps": 30,
}


def small_config(**overrides):
  config = configs.get_config()
  config.update({**SMALL, **overrides})
  return config


def metrics(workdir) -> list[dict]:
  with open(f"{workdir}/metrics.jsonl") as f:
    return [json.loads(line) for line in f]


def assert_learns(rows):
  first, last = rows[0], rows[-1]
  assert last["loss"] < 0.5 * first["loss"], rows
  assert first["accuracy"] < 0.05 and last["accuracy"] > 0.9, rows


def test_the_documented_command_learns_the_task(tmp_path):
  """The command of the config's docstring (and docs/guides/millions_of_classes.md)."""
  flags = [f"--config.{k}={v}" for k, v in SMALL.items()]
  result = subprocess.run(
    [sys.executable, "-m", "experiments.train", "--config", "experiments/configs/sharded_head.py"]
    + ["--workdir", str(tmp_path), *flags],
    cwd=ROOT,
    env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8"),
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert_learns(metrics(tmp_path))
  assert metrics(tmp_path)[-1]["test_error"] < 0.5


def test_partialfc_sampling_learns_the_task(tmp_path):
  training.train_and_evaluate(small_config(sample_rate=0.5), str(tmp_path))
  assert_learns(metrics(tmp_path))


def test_w_and_its_momentum_are_split_over_model():
  config = small_config()
  objective = objectives.get_objective(config)
  model = train_lib.create_model(config, config.num_classes, objective=objective)
  state, specs = train_lib.create_train_state(
    config, model, (8, 8, 1), jax.random.key(0), objective=objective
  )
  state = train_lib.placement(config, specs, config.num_classes).put_state(state)
  momentum = state.opt_state[1][0].trace  # (weight decay, SGD momentum)
  for w in (state.params["head"]["kernel"], momentum["head"]["kernel"]):
    assert w.sharding.spec == P(None, "model")
    assert w.addressable_shards[0].data.shape == (config.feature_dim, 1000 // 4)
  for name in ("Dense_0", "Dense_1"):
    assert state.params["backbone"][name]["kernel"].sharding.is_fully_replicated


def test_bad_config_values_are_refused(tmp_path):
  bad = [
    ({"mesh_shape": (4, 4)}, "mesh_shape"),
    ({"num_classes": 1001}, "1001"),
    ({"sample_rate": 1.5}, "sample_rate"),
    ({"sample_rate": 0.5, "mesh_shape": ()}, "mesh_shape"),
    ({"loss": "cosfase"}, "unknown config.loss"),
    ({"loss": "em_softmax"}, "num_classifiers"),
  ]
  for overrides, message in bad:
    with pytest.raises(ValueError, match=message):
      training.train_and_evaluate(small_config(**overrides), str(tmp_path / message))


@pytest.mark.parametrize(
  "overrides",
  [
    {"loss": "em_softmax", "num_classifiers": 2, "num_train_steps": 20},  # HSIC: slower start
    {"loss": "m_softmax", "num_train_steps": 5},
    {"loss": "hinge", "num_train_steps": 5},
  ],
  ids=["em_softmax", "m_softmax", "hinge"],
)
def test_stacked_and_logit_losses_train(tmp_path, overrides):
  training.train_and_evaluate(small_config(**overrides), str(tmp_path))
  rows = metrics(tmp_path)
  assert np.isfinite(rows[-1]["loss"]) and rows[-1]["loss"] < rows[0]["loss"], rows


def test_streamed_and_fully_sampled_heads_train_as_the_materialised_one(tmp_path):
  # 1,000 classes, 250 per shard in blocks of 96 (the last one smaller); a
  # sample of every class (rate 1.0) is the full loss.
  variants = [{}, {"class_chunk_size": 96}, {"sample_rate": 1.0}]
  runs = []
  for i, variant in enumerate(variants):
    training.train_and_evaluate(small_config(num_train_steps=6, **variant), str(tmp_path / str(i)))
    runs.append(metrics(tmp_path / str(i)))
  for run in runs[1:]:
    for key in ("loss", "accuracy", "test_error"):
      np.testing.assert_allclose(
        [row[key] for row in run if key in row],
        [row[key] for row in runs[0] if key in row],
        rtol=1e-4,
      )
