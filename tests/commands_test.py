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


def _train_until(command, env, step, stop):
  """Runs ``command`` until it logs ``step``, then sends it the signal ``stop``;
  returns its standard output (the lines read and the rest) and exit status."""
  process = subprocess.Popen(
    command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  lines = []
  for line in process.stdout:
    lines.append(line)
    if re.match(rf"step {step}/", line):
      process.send_signal(stop)
      break
  stdout, stderr = process.communicate(timeout=120)
  assert process.returncode == 0, stderr[-4000:]
  return "".join(lines) + stdout


def test_a_stopped_run_saves_and_resume_says_where(prepared, tmp_path):
  """Ctrl-C, then SIGTERM after --resume: each saves the last completed step
  and exits 0 with one line saying where; --resume says where it continues."""
  workdir = tmp_path / "stopped"
  command = [
    *(sys.executable, "-m", "experiments.train", "--config", "experiments/configs/smoke.py"),
    *("--workdir", str(workdir), "--config.num_train_steps=100000"),
    *("--config.checkpoint_every_steps=100000", "--config.eval_every_steps=100000"),
  ]
  said = r"interrupted after step (\d+); the latest checkpoint is step \1 in (.*): continue with --resume"
  first = _train_until(command, prepared[1], 3, signal.SIGINT)
  saved = re.fullmatch(said, first.splitlines()[-1])
  assert saved and saved[2] == f"{workdir}/checkpoints", first[-2000:]
  assert int(saved[1]) >= 3 and (workdir / "checkpoints" / saved[1]).is_dir()
  second = _train_until([*command, "--resume"], prepared[1], int(saved[1]) + 2, signal.SIGTERM)
  assert second.startswith(f"resuming from step {saved[1]} of 100000 "), second[:2000]
  again = re.fullmatch(said, second.splitlines()[-1])
  assert again and int(again[1]) >= int(saved[1]) + 2
  assert (workdir / "checkpoints" / again[1]).is_dir()
