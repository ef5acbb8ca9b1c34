"""Shared timing, machine description and table/JSON output for the benchmarks.

Timing protocol (used by every script): the compared functions are called
round-robin in the same process, each call blocked until its result is ready,
after a warm-up that includes compilation. The start of the round rotates so
no function always runs right after the same neighbour. A benchmark reports
the median time of each function and, against a baseline, the median of the
per-round ratios (a ratio of two calls made seconds apart is robust to the
slow drift in load from other processes on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Mapping, Sequence


def machine_info() -> dict[str, Any]:
  """CPU model, cores, memory, load and library versions."""
  info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          info["cpu"] = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  info["cores"] = os.cpu_count()
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemTotal"):
          info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
          break
  except OSError:
    pass
  info["loadavg_start"] = os.getloadavg()
  for name in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "pytorch_metric_learning"):
    module = sys.modules.get(name)
    if module is not None:
      info[name] = getattr(module, "__version__", "?")
  info["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
  return info


def peak_rss_mib() -> float:
  """Peak resident set size of this process so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def interleaved(
  fns: Mapping[str, Callable[[], Any]],
  *,
  warmup: int = 2,
  min_reps: int = 5,
  max_reps: int = 50,
  budget_s: float = 60.0,
  cpu_times: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
  """Times each zero-argument ``fn`` (which must block on its result) round-robin.

  Runs ``warmup`` untimed rounds, then as many timed rounds as fit in
  ``budget_s`` (between ``min_reps`` and ``max_reps``). Returns the seconds of
  every timed call, per name, in round order. If ``cpu_times`` is given, it is
  filled the same way with the process CPU seconds (all threads) of each call:
  on a machine shared with other jobs, CPU time is not inflated by waiting for
  a core, so its ratios are a second, load-robust view of the same runs.
  """
  names = list(fns)
  for _ in range(warmup):
    for name in names:
      fns[name]()
  times: dict[str, list[float]] = {name: [] for name in names}
  if cpu_times is not None:
    cpu_times.update({name: [] for name in names})
  start = time.perf_counter()
  reps = 0
  while reps < max_reps:
    shift = reps % len(names)
    for name in names[shift:] + names[:shift]:
      c0, t0 = time.process_time(), time.perf_counter()
      fns[name]()
      times[name].append(time.perf_counter() - t0)
      if cpu_times is not None:
        cpu_times[name].append(time.process_time() - c0)
    reps += 1
    if reps >= min_reps and time.perf_counter() - start > budget_s:
      break
  return times


def median(xs: Sequence[float]) -> float:
  return statistics.median(xs)


def paired_ratio(times: Sequence[float], baseline: Sequence[float]) -> float:
  """Median over rounds of time / baseline time in the same round."""
  return statistics.median(t / b for t, b in zip(times, baseline))


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub-markdown table (readable as plain text too)."""

  def fmt(v):
    if isinstance(v, float):
      if v == 0 or 0.01 <= abs(v) < 1e5:
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
      return f"{v:.3g}"
    return str(v)

  cells = [[fmt(v) for v in row] for row in rows]
  widths = [
    max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)
  ]
  lines = [
    "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
    "|" + "|".join("-" * (w + 2) for w in widths) + "|",
  ]
  lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(row, widths)) + " |" for row in cells]
  return "\n".join(lines)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
  if not path:
    return
  payload = dict(payload)
  payload.setdefault("machine", {})["loadavg_end"] = os.getloadavg()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(payload, f, indent=1)
  print(f"wrote {path}")


def add_loss_timing_args(parser: argparse.ArgumentParser, *, max_reps: int) -> None:
  """The shape (B, d, C list) and timing-budget flags of the loss benchmarks."""
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--dim", type=int, default=512)
  parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000, 10000, 100000])
  parser.add_argument("--budget", type=float, default=60.0, help="timed seconds per C")
  parser.add_argument("--max-reps", type=int, default=max_reps)
  parser.add_argument("--min-reps", type=int, default=5)
  parser.add_argument("--json", default=None, help="write the results here")
