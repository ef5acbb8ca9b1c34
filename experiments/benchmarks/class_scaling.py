"""Benchmark 4: time and memory of loss + gradient from 1,000 to 1,000,000 classes.

For each C and loss, a fresh subprocess builds x [B, d], W [d, C], y, compiles
the jitted ``value_and_grad`` of the batch-mean loss with respect to x and W,
reads XLA's compiled memory analysis (argument, output and temporary bytes),
times a few calls and reports the process's peak RSS (``getrusage``), so each
row's peak belongs to that loss at that C alone. The inputs are built in place in
float32 NumPy so that the generator does not set the high-water mark; "step
peak - before" is the peak RSS minus the resident size just before compiling.

Checks: the temporaries XLA allocates beyond the inputs and outputs stay at or
below two [B, C] float32 arrays (``temp / (4*B*C) <= 2``), and time and
memory grow linearly in C (the per-class columns are constant).

  .venv/bin/python -m experiments.benchmarks.class_scaling --json results/class_scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

DEFAULT_LOSSES = ["softmax", "l_softmax_m4", "a_softmax_m4", "cosface", "uniformity"]


def measure(loss: str, batch: int, dim: int, classes: int, reps: int) -> dict:
  """Runs in the subprocess: memory analysis, timing and peak RSS of one loss at one C."""
  import jax

  from experiments.benchmarks import _cases
  from experiments.benchmarks import _harness

  case = {c.name: c for c in _cases.CASES}[loss]
  args = _numpy_inputs(case, batch, dim, classes)
  rss_inputs = _harness.peak_rss_mib()
  rss_before = current_rss_mib()
  step = _cases.value_and_grad(case)
  t0 = time.perf_counter()
  compiled = step.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  jax.block_until_ready(compiled(*args))  # warm-up
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
  bc_bytes = 4 * batch * classes
  return {
    "loss": loss,
    "classes": classes,
    "reps": reps,
    "compile_s": compile_s,
    "ms": 1e3 * _harness.median(times),
    "ms_min": 1e3 * min(times),
    "argument_bytes": mem.argument_size_in_bytes,
    "output_bytes": mem.output_size_in_bytes,
    "temp_bytes": mem.temp_size_in_bytes,
    "alias_bytes": mem.alias_size_in_bytes,
    "temp_in_bc_arrays": mem.temp_size_in_bytes / bc_bytes,
    "peak_rss_mib": _harness.peak_rss_mib(),
    "rss_after_inputs_mib": rss_inputs,
    "rss_before_step_mib": rss_before,
    "step_peak_rss_mib": _harness.peak_rss_mib() - rss_before,
  }


def current_rss_mib() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _numpy_inputs(case, batch, dim, classes):
  """Random inputs built in place in float32 NumPy (no float64 or PRNG-bit
  temporaries), so the process's peak RSS is the step's, not the generator's."""
  import jax
  import numpy as np

  rng = np.random.default_rng(0)
  shape = {"classifier": (dim, classes), "stacked": (2, dim, classes), "centers": (classes, dim)}[
    case.weights
  ]
  w = np.empty(shape, np.float32)
  flat = w.reshape(-1)
  chunk = 1 << 24
  for i in range(0, flat.size, chunk):
    flat[i : i + chunk] = rng.standard_normal(min(chunk, flat.size - i), dtype=np.float32)
  w *= np.float32(1 / np.sqrt(dim))
  x = rng.standard_normal((batch, dim), dtype=np.float32)
  y = rng.integers(0, classes, batch).astype(np.int32)
  w = jax.device_put(w)  # may alias the NumPy buffer on CPU
  return jax.device_put(x), w, jax.device_put(y), jax.random.key(1)


def within_budget(r: dict, batch: int, dim: int) -> bool:
  """temp <= two [B, C] f32 arrays, plus O(B*d + B + C) vectors (norms, a [B, d] grad)."""
  slack = 4 * (batch * dim + 8 * batch + 8 * r["classes"])
  return r["temp_bytes"] <= 2 * 4 * batch * r["classes"] + slack


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--dim", type=int, default=512)
  parser.add_argument("--classes", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
  parser.add_argument("--losses", nargs="+", default=DEFAULT_LOSSES)
  parser.add_argument(
    "--reps",
    type=int,
    default=0,
    help="timed calls per point (0: 10 below 100k classes, 3 at 100k, 1 above)",
  )
  parser.add_argument("--json", default=None)
  parser.add_argument("--single", nargs=2, metavar=("LOSS", "C"), help=argparse.SUPPRESS)
  parser.add_argument("--out", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)

  if args.single:
    loss, classes = args.single[0], int(args.single[1])
    reps = args.reps or (10 if classes < 100_000 else 3 if classes == 100_000 else 1)
    with open(args.out, "w") as f:
      json.dump(measure(loss, args.batch, args.dim, classes, reps), f)
    return

  from experiments.benchmarks import _harness

  info = _harness.machine_info()
  import jax, jaxlib  # noqa: E401  (versions for the record only)

  info.update(jax=jax.__version__, jaxlib=jaxlib.__version__)
  print(
    f"# class scaling, B={args.batch} d={args.dim}; {info.get('cpu')}, "
    f"{info['cores']} cores, {info.get('memory_gib')} GiB, load {info['loadavg_start']}"
  )
  rows = []
  for classes in args.classes:
    for loss in args.losses:
      with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = tmp.name
      cmd = [
        sys.executable,
        "-m",
        "experiments.benchmarks.class_scaling",
        "--single",
        loss,
        str(classes),
        "--out",
        out,
        "--batch",
        str(args.batch),
        "--dim",
        str(args.dim),
        "--reps",
        str(args.reps),
      ]
      subprocess.run(cmd, check=True)
      with open(out) as f:
        rows.append(json.load(f))
      os.unlink(out)
      r = rows[-1]
      print(
        f"C={classes} {loss}: {r['ms']:.1f} ms, temp {r['temp_in_bc_arrays']:.2f} [B,C], "
        f"peak RSS {r['peak_rss_mib']:.0f} MiB",
        flush=True,
      )

  table = []
  for r in rows:
    per_class_us = 1e3 * r["ms"] / r["classes"]
    table.append(
      [
        r["classes"],
        r["loss"],
        r["ms"],
        per_class_us,
        r["argument_bytes"] / 2**20,
        r["output_bytes"] / 2**20,
        r["temp_bytes"] / 2**20,
        r["temp_in_bc_arrays"],
        r["rss_before_step_mib"],
        r["peak_rss_mib"],
        r["step_peak_rss_mib"],
        "ok" if within_budget(r, args.batch, args.dim) else "OVER",
      ]
    )
  print(
    "\nms: median of a few calls in a fresh process each (not interleaved; for ratios "
    "to softmax see loss_overhead)"
  )
  print(
    _harness.format_table(
      [
        "C",
        "loss",
        "ms",
        "us per class",
        "args MiB",
        "outputs MiB",
        "temp MiB",
        "temp / [B,C] f32",
        "RSS before MiB",
        "peak RSS MiB",
        "step peak - before MiB",
        "<= 2 [B,C]",
      ],
      table,
    )
  )
  _harness.write_json(
    args.json,
    {
      "benchmark": "class_scaling",
      "batch": args.batch,
      "dim": args.dim,
      "machine": info,
      "results": rows,
    },
  )


if __name__ == "__main__":
  main()
