"""Every config of experiments/configs builds its objective and model and
documents its command and target."""

import importlib
import pathlib
import re

import pytest

from experiments import train
from margin_jax import models
from margin_jax.training import objectives


@pytest.mark.parametrize(
  "path",
  sorted(pathlib.Path(__file__).parents[1].glob("experiments/configs/*.py")),
  ids=lambda p: p.stem,
)
def test_config_files_build_an_objective_and_model(path):
  module = importlib.import_module(f"experiments.configs.{path.stem}")
  config = module.get_config()
  objectives.get_objective(config)
  assert not set(config) & set(train._OLD_FIELDS), "a loss keyword outside config.loss_kwargs"
  models.conv_net(config.model, width=config.width)  # a network of models
  assert "Command:" in module.__doc__ and "Target:" in module.__doc__
  for flag in re.findall(r"--config\.([\w.]+)=", module.__doc__):  # the documented flags exist
    node = config
    for field in flag.split("."):
      assert field in node, f"{path.name}: --config.{flag}: no field {field!r}"
      node = node[field]
