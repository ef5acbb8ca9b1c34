"""Runs tests/parallel_mesh_cases.py (`margin_jax.parallel`) in a subprocess
with 8 forced CPU devices: meshes (8, 1), (2, 4) and (1, 8) need more devices
than the suite's other tests use."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_class_sharded_losses_on_8_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "pytest",
      "-q",
      "-p",
      "no:cacheprovider",
      "tests/parallel_mesh_cases.py",
      "tests/sharded_head_cases.py",
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
  assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
