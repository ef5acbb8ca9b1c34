"""The guides' commands (docs/guides/training.md, data.md), run as a user types them: ``python -m ...`` in a
fresh process from the repository root. MNIST's raw files are tiny_mnist's,
so no command reads ``../shared`` or the network."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_m(*args, env=None) -> str:
  """Runs ``python -m ARGS`` in the repository root; returns its standard output."""
  result = subprocess.run(
    [sys.executable, "-m", *args], check=False, cwd=ROOT, env=env, capture_output=True, text=True
  )
  assert result.returncode == 0, result.stderr[-4000:]
  return result.stdout


@pytest.fixture(scope="module")
def prepared(tiny_mnist, tmp_path_factory):
  """``python -m margin_jax.data.prepare`` into a fresh tfds directory: its
  output and the environment of a user whose ``$TFDS_DATA_DIR`` it is."""
  data_dir = tmp_path_factory.mktemp("tfds")
  output = python_m("margin_jax.data.prepare", "--source", tiny_mnist[0], "--data-dir", data_dir)
  env = {k: v for k, v in os.environ.items() if k != "MARGIN_JAX_DATA"}
  return output, {**env, "TFDS_DATA_DIR": str(data_dir)}


@pytest.fixture(scope="module")
def workdir(prepared, tmp_path_factory):
  """A smoke run of ``python -m experiments.train`` on the prepared MNIST."""
  workdir = tmp_path_factory.mktemp("smoke")
  config = "experiments/configs/smoke.py"
  python_m("experiments.train", "--config", config, "--workdir", workdir, env=prepared[1])
  return workdir


def test_prepare_command(prepared):
  output, env = prepared
  path = pathlib.Path(env["TFDS_DATA_DIR"]) / "mnist" / "3.0.1"
  assert output.splitlines()[-1] == f"mnist: {path}"
  assert (path / "dataset_info.json").is_file()


def test_train_and_evaluate_commands(workdir, prepared):
  with open(workdir / "metrics.jsonl") as f:
    final = [json.loads(line) for line in f if "test_error" in line][-1]
  assert final["step"] == 6
  result = json.loads(python_m("experiments.evaluate", "--workdir", workdir, env=prepared[1]))
  assert result["step"] == 6 and result["dataset"] == "mnist"
  assert result["test_error"] == pytest.approx(final["test_error"])
  assert 0 <= result["mean_average_precision_at_r"] <= 1


def test_campaign_help():
  output = python_m("experiments.campaign", "--help")
  assert output.startswith("usage: python -m experiments.campaign") and "{run,list}" in output


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_a_stopped_run_saves_and_resume_says_where(prepared, tmp_path, stop):
  """Ctrl-C or SIGTERM during training saves the last completed step and
  exits 0 with one line saying where; --resume then says which step it
  continues from."""
  workdir = tmp_path / "stopped"
  run_control = ["--config.num_train_steps=100000", "--config.checkpoint_every_steps=100000"]
  command = [sys.executable, "-m", "experiments.train", "--config", "experiments/configs/smoke.py"]
  process = subprocess.Popen(
    [*command, "--workdir", str(workdir), *run_control, "--config.eval_every_steps=100000"],
    cwd=ROOT,
    env=prepared[1],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  for line in process.stdout:  # train until the third logged step, then stop it
    if line.startswith("step 3/"):
      process.send_signal(stop)
      break
  stdout, stderr = process.communicate(timeout=120)
  assert process.returncode == 0, stderr[-4000:]
  (last,) = stdout.splitlines()[-1:]
  saved = int(re.fullmatch(r"interrupted after step (\d+); .*: continue with --resume", last)[1])
  assert saved >= 3 and (workdir / "checkpoints" / str(saved)).is_dir()
  assert f"the latest checkpoint is step {saved} in {workdir}/checkpoints" in last
  output = python_m(
    "experiments.train",
    "--config",
    "experiments/configs/smoke.py",
    "--workdir",
    workdir,
    f"--config.num_train_steps={saved + 1}",
    "--resume",
    env=prepared[1],
  )
  assert output.startswith(f"resuming from step {saved} of {saved + 1} ")
