"""Metrics to JSONL (and TensorBoard when tensorboardX is installed), progress."""

from __future__ import annotations

import json
import os
import sys
import time

import jax


class MetricWriter:
  """Appends ``{"step": s, **scalars}`` lines to ``workdir/metrics.jsonl``.

  A run starting at ``start_step`` (0, or the checkpoint it resumes from)
  first drops the lines past that step: an earlier attempt logged them after
  its last checkpoint and this run logs them again, so every step appears
  once. Only process 0 writes; other processes get a no-op writer.
  """

  def __init__(self, workdir: str, start_step: int = 0):
    self._active = jax.process_index() == 0
    self._file = self._tb = None
    if self._active:
      os.makedirs(workdir, exist_ok=True)
      path = os.path.join(workdir, "metrics.jsonl")
      _truncate_after(path, start_step)
      self._file = open(path, "a")
      try:
        from tensorboardX import SummaryWriter  # optional dependency

        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      except ImportError:
        pass

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self._active:
      return
    self._file.write(json.dumps({"step": step, **scalars}) + "\n")
    self._file.flush()
    if self._tb is not None:
      for name, value in scalars.items():
        self._tb.add_scalar(name, value, step)

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
    if self._tb is not None:
      self._tb.close()


def _truncate_after(path: str, step: int) -> None:
  """Rewrites the JSONL file ``path`` (if any) without its lines past ``step``,
  atomically (a temporary file renamed over it)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    # A line without its newline is one an interrupted run left half-written.
    kept = [line for line in f if line.endswith("\n") and json.loads(line)["step"] <= step]
  with open(path + ".tmp", "w") as f:
    f.writelines(kept)
  os.replace(path + ".tmp", path)


class Progress:
  """A tqdm bar with ETA on a terminal, plain log lines otherwise (process 0)."""

  def __init__(self, total: int, initial: int):
    self._active = jax.process_index() == 0
    self._bar = None
    self._start, self._initial, self._total = time.time(), initial, total
    if self._active and sys.stderr.isatty():
      from tqdm import tqdm

      self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

  def update(self, step: int, scalars: dict[str, float]) -> None:
    if not self._active:
      return
    shown = {k: scalars[k] for k in ("loss", "accuracy", "test_error") if k in scalars}
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
      self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()})
      return
    elapsed = time.time() - self._start
    done = step - self._initial
    eta = elapsed / done * (self._total - step) if done else float("nan")
    values = " ".join(f"{k}={v:.4g}" for k, v in shown.items())
    print(f"step {step}/{self._total} {values} ({elapsed:.1f}s, eta {eta:.0f}s)", flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
