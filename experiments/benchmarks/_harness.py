"""Shared timing, machine description and table/JSON output for the benchmarks.

Timing protocol (used by every script): the compared functions are called
round-robin in the same process, each call blocked until its result is ready,
after a warm-up that includes compilation. Each round runs them in a fresh
random order (seeded), so no function always runs right after the same
neighbour: a call made right after a large one (EM-Softmax, Sub-center
ArcFace) was measured up to 50% slower, and a fixed order charged that to the
same function every round. A benchmark reports the median time of each
function and, against a baseline, the median of the per-round ratios (a ratio
of two calls made seconds apart is robust to the slow drift in load from other
processes on a shared machine).

The timing scripts first pin glibc's allocator (``pin_allocator``), so every
function's temporaries are reused from the heap rather than faulted in afresh
on every call, whichever functions ran before.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from typing import Any, Callable, Mapping, Sequence


# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_allocator_pinned = False  # set by pin_allocator, recorded by machine_info


def pin_allocator() -> bool:
  """Makes glibc's malloc keep freed memory and serve every size from one heap.

  XLA:CPU allocates each call's temporaries anew. By default glibc returns
  large freed blocks to the OS (its mmap and trim thresholds adapt to the
  process's history, and allocations above a thread arena's 64 MiB heap are
  always mmapped), so a function can pay a page fault per 4 KiB of its
  temporaries on every call, or not, depending on what ran before it: measured
  here, 2,500-35,000 faults per call for some losses, ~0.75 us each (EM-Softmax
  V=2 at C = 10^4: 124 -> 95 ms). Fixed thresholds and one arena remove that.
  Call it before the first JAX computation (XLA's worker threads take their
  arenas then). Returns False where glibc is not the C library (nothing is
  changed).
  """
  global _allocator_pinned
  try:
    libc = ctypes.CDLL("libc.so.6")
    settings = ((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, (1 << 31) - 1), (_M_ARENA_MAX, 1))
    _allocator_pinned = all(libc.mallopt(param, value) == 1 for param, value in settings)
  except (OSError, AttributeError):
    _allocator_pinned = False
  return _allocator_pinned


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
  info["allocator_pinned"] = _allocator_pinned
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
  seed: int = 0,
) -> dict[str, list[float]]:
  """Times each zero-argument ``fn`` (which must block on its result) round-robin.

  Runs ``warmup`` untimed rounds, then as many timed rounds as fit in
  ``budget_s`` (between ``min_reps`` and ``max_reps``), each round in a random
  order drawn from ``seed``. Returns the seconds of every timed call, per
  name, in round order. If ``cpu_times`` is given, it is
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
  rng = random.Random(seed)
  start = time.perf_counter()
  reps = 0
  while reps < max_reps:
    for name in rng.sample(names, len(names)):
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
