"""Temporaries of every loss's ``value_and_grad``, from XLA's compiled memory analysis.

Compiles (never runs) the jitted ``value_and_grad`` w.r.t. features and
weights of the batch-mean of each case of `_cases` on abstract inputs, and
reports ``temp_size_in_bytes`` in units of one float32 [B, C] array (the
logits' size). Arguments and outputs (x, W, their gradients) are not
temporaries.

  .venv/bin/python -m experiments.benchmarks.loss_memory --classes 10000 100000 \
      --json experiments/benchmarks/results/loss_memory.json
"""

from __future__ import annotations

import argparse

import jax

from experiments.benchmarks import _cases
from experiments.benchmarks import _harness


def temporaries(case: _cases.Case, batch: int, dim: int, classes: int) -> int:
  """Bytes of temporaries XLA assigns to the compiled step."""
  x, w, y, key = jax.eval_shape(lambda: _cases.make_inputs(case, batch, dim, classes))
  step = _cases.value_and_grad(case).lower(x, w, y, key).compile()
  return step.memory_analysis().temp_size_in_bytes


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--classes", type=int, nargs="+", default=[10_000, 100_000])
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--dim", type=int, default=512)
  parser.add_argument("--json", default=None)
  args = parser.parse_args(argv)
  results = {
    case.name: {c: temporaries(case, args.batch, args.dim, c) for c in args.classes}
    for case in _cases.CASES
  }
  header = ["loss (temporaries / [B, C] float32)"] + [f"C={c}" for c in args.classes]
  rows = [
    [name] + [t / (4 * args.batch * c) for c, t in by_c.items()] for name, by_c in results.items()
  ]
  print(f"# B={args.batch} d={args.dim}")
  print(_harness.format_table(header, rows))
  _harness.write_json(
    args.json,
    {
      "benchmark": "loss_memory",
      "batch": args.batch,
      "dim": args.dim,
      "machine": _harness.machine_info(),
      "temp_bytes": results,
    },
  )


if __name__ == "__main__":
  main()
