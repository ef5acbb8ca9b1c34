"""The code is formatted by the pyproject's ruff settings (ruff format --check)."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_code_is_formatted():
  result = subprocess.run(
    [sys.executable, "-m", "ruff", "format", "--check", "."],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stdout + result.stderr
