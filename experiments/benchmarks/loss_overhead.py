"""Benchmark 1: cost of every margin_jax loss relative to the softmax baseline.

For each number of classes C, times the jitted ``value_and_grad`` (with respect
to features and weights) of the batch-mean of every loss at B=256, d=512,
interleaved round-robin with ``softmax_loss(x @ W, y)`` and with the bare
classifier matmuls, and reports each loss's median time over the softmax
baseline's. The floor: the softmax baseline needs the classifier matmul
forward (2*B*d*C flops) and its two backward matmuls (4*B*d*C); the bare
matmul rows show what this machine achieves on exactly those.

  .venv/bin/python -m experiments.benchmarks.loss_overhead --json results/loss_overhead.json
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from experiments.benchmarks import _cases
from experiments.benchmarks import _harness

BASELINE = "softmax"


def bare_matmuls(x, w):
  """The classifier matmul forward only, and forward + both backward products."""
  fwd = jax.jit(lambda x, w: x @ w)
  g = jnp.ones((x.shape[0], w.shape[1]), x.dtype) / w.shape[1]

  @jax.jit
  def fwd_bwd(x, w, g):
    return x @ w, g @ w.T, x.T @ g

  return (lambda: jax.block_until_ready(fwd(x, w)), lambda: jax.block_until_ready(fwd_bwd(x, w, g)))


def run_one(
  batch: int,
  dim: int,
  classes: int,
  budget_s: float,
  max_reps: int,
  min_reps: int = 5,
  names=None,
  dtype="float32",
):
  fns = {}
  for case in _cases.CASES:
    if names is not None and case.name not in names and case.name != BASELINE:
      continue
    args = _cases.make_inputs(case, batch, dim, classes, dtype=dtype)
    step = _cases.value_and_grad(case)
    fns[case.name] = lambda step=step, args=args: jax.block_until_ready(step(*args))
  x, w, _, _ = _cases.make_inputs(_cases.CASES[0], batch, dim, classes, dtype=dtype)
  fns["matmul_fwd"], fns["matmul_fwd_bwd"] = bare_matmuls(x, w)
  cpu: dict[str, list[float]] = {}
  times = _harness.interleaved(
    fns,
    budget_s=budget_s,
    max_reps=max_reps,
    min_reps=min_reps,
    warmup=1 if classes >= 100_000 else 2,
    cpu_times=cpu,
  )
  base = times[BASELINE]
  flops_fwd = 2.0 * batch * dim * classes
  result = {"classes": classes, "reps": len(base), "ms": {}, "ratio": {}, "cpu_ratio": {}}
  for name, ts in times.items():
    result["ms"][name] = 1e3 * _harness.median(ts)
    result["ratio"][name] = _harness.paired_ratio(ts, base)
    result["cpu_ratio"][name] = _harness.paired_ratio(cpu[name], cpu[BASELINE])
  result["gflops"] = {
    "softmax_fwd_bwd": 3 * flops_fwd / _harness.median(base) / 1e9,
    "matmul_fwd_bwd": 3 * flops_fwd / _harness.median(times["matmul_fwd_bwd"]) / 1e9,
    "matmul_fwd": flops_fwd / _harness.median(times["matmul_fwd"]) / 1e9,
  }
  return result


def main(argv=None):
  _harness.pin_allocator()
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  _harness.add_loss_timing_args(parser, max_reps=60)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="x and W")
  parser.add_argument(
    "--losses", nargs="+", default=None, help="a subset of the cases (softmax is always run)"
  )
  args = parser.parse_args(argv)

  info = _harness.machine_info()
  print(
    f"# loss overhead, B={args.batch} d={args.dim} {args.dtype}; {info.get('cpu')}, "
    f"{info['cores']} cores, load {info['loadavg_start']}"
  )
  results = []
  for classes in args.classes:
    results.append(
      run_one(
        args.batch,
        args.dim,
        classes,
        args.budget,
        args.max_reps,
        args.min_reps,
        args.losses,
        args.dtype,
      )
    )
    r = results[-1]
    print(f"C={classes}: {r['reps']} rounds, softmax {r['ms'][BASELINE]:.3f} ms", flush=True)

  names = [c.name for c in _cases.CASES if c.name in results[0]["ms"]]
  names += ["matmul_fwd_bwd", "matmul_fwd"]
  header = ["loss (ratio to softmax)"] + [f"C={r['classes']}" for r in results]
  rows = [[name] + [r["ratio"][name] for r in results] for name in names]
  print("\nvalue_and_grad time / softmax value_and_grad time (median of paired rounds)")
  print(_harness.format_table(header, rows))
  rows = [[name] + [r["cpu_ratio"][name] for r in results] for name in names]
  print("\nsame, from process CPU time (robust to waiting for a core on a loaded machine)")
  print(_harness.format_table(header, rows))
  rows = [[name] + [r["ms"][name] for r in results] for name in names]
  print("\nmedian ms")
  print(_harness.format_table(["loss (ms)"] + header[1:], rows))
  rows = [
    [
      r["classes"],
      r["ms"][BASELINE],
      r["gflops"]["softmax_fwd_bwd"],
      r["ms"]["matmul_fwd_bwd"],
      r["gflops"]["matmul_fwd_bwd"],
      r["gflops"]["matmul_fwd"],
    ]
    for r in results
  ]
  print("\nfloor: achieved GFLOP/s (softmax counts its 3 matmuls only, 6*B*d*C)")
  print(
    _harness.format_table(
      [
        "C",
        "softmax ms",
        "softmax GFLOP/s",
        "matmul fwd+bwd ms",
        "matmul fwd+bwd GFLOP/s",
        "matmul fwd GFLOP/s",
      ],
      rows,
    )
  )
  _harness.write_json(
    args.json,
    {
      "benchmark": "loss_overhead",
      "batch": args.batch,
      "dim": args.dim,
      "dtype": args.dtype,
      "machine": info,
      "results": results,
    },
  )


if __name__ == "__main__":
  main()
