"""Every loss of the table at two versions of margin_jax, interleaved in one process.

Another version's ``margin_jax`` (``--base``: a directory holding it, e.g. an
export of an older commit) is copied to a temporary directory and imported as
``margin_jax_base``; each loss's jitted ``value_and_grad`` (w.r.t. features and
weights, as in `loss_overhead`) runs at both versions in the same randomly
ordered rounds, and the script reports the median over rounds of this tree's
time over the base's (wall clock and process CPU time), plus each version's
ratio to its own softmax. A paired ratio within one process resolves a few
percent where two `loss_overhead` runs minutes apart on a loaded machine do not.

  git archive ff441df margin_jax | tar -x -C /tmp/base
  .venv/bin/python -m experiments.benchmarks.loss_ab --base /tmp/base --classes 10000

``--equal-float64`` times nothing: it checks that every case's value and
gradients (the batch mean's, w.r.t. features and weights) are equal at both
versions in float64, up to ``--rtol``, prints each case's largest relative
difference and exits 1 if one exceeds it (a refactoring's before/after check).
``--same-program`` times nothing either: it compiles every case, materialised
and streamed (``chunk_size`` 2048), at both versions and compares XLA's
optimised programs, instruction by instruction up to the names of values;
equal programs cost the same, so earlier timings carry over.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import importlib
import os
import re
import shutil
import sys
import tempfile

import jax

from experiments.benchmarks import _cases
from experiments.benchmarks import _harness
from margin_jax import losses


def import_base(directory: str):
  """``directory``/margin_jax imported as ``margin_jax_base`` (its imports renamed)."""
  copy = tempfile.mkdtemp(prefix="margin_jax_base_")
  atexit.register(shutil.rmtree, copy, ignore_errors=True)
  target = os.path.join(copy, "margin_jax_base")
  shutil.copytree(os.path.join(directory, "margin_jax"), target)
  for root, _, files in os.walk(target):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        with open(path) as f:
          text = re.sub(r"\bmargin_jax\b", "margin_jax_base", f.read())
        with open(path, "w") as f:
          f.write(text)
  sys.path.insert(0, os.path.dirname(target))
  return importlib.import_module("margin_jax_base.losses")


def step(case: _cases.Case, module, chunk_size=None):
  """`_cases.value_and_grad` of ``case`` with its loss taken from ``module``
  (streamed over ``chunk_size`` classes if given)."""
  spec = module.TABLE[case.spec_name]
  if spec.inputs == "centers":
    fn = lambda x, w, y, key: spec.fn(x, w, y)
  else:
    loss = module.by_name(spec.name, **case.overrides)
    if chunk_size:
      loss = loss.streamed(chunk_size=chunk_size)
    fn = lambda x, w, y, key: loss(x, w, y, key=key)
  return _cases.value_and_grad(case._replace(fn=fn))


def equal_in_float64(base, classes, batch, dim, rtol) -> bool:
  """Every case's float64 value and gradients at both versions, compared."""
  equal = True
  with jax.enable_x64(True):
    for case in _cases.CASES:
      if case.spec_name not in base.TABLE:
        continue
      inputs = _cases.make_inputs(case, batch, dim, classes, dtype="float64")
      (want, want_grads), (got, got_grads) = (step(case, m)(*inputs) for m in (base, losses))
      worst = 0.0
      for a, b in zip(jax.tree.leaves((got, got_grads)), jax.tree.leaves((want, want_grads))):
        scale = max(float(abs(b).max()), 1e-300)
        worst = max(worst, float(abs(a - b).max()) / scale)
      equal &= worst <= rtol
      print(f"{case.name:20s} C={classes}: largest difference / largest value {worst:.1e}")
  return equal


def _instructions(compiled_text: str) -> str:
  """An optimised HLO module's instructions up to value names: no metadata,
  no debug tables (file and function names, stack frames)."""
  debug_table = re.compile(r"^(\d+ |FileNames|FunctionNames|FileLocations|StackFrames)")
  kept = "\n".join(line for line in compiled_text.splitlines() if not debug_table.match(line))
  kept = re.sub(r", *(metadata=\{[^}]*\}|stack_frame_id=\d+)", "", kept)
  kept = re.sub(r"(%[\w-]+?)\.\d+\b", r"\1", kept)
  return re.sub(r"%region_\d+", "%region", kept)  # reducers' names


def same_programs(base, classes, batch, dim) -> bool:
  """Whether every case compiles to the same program at both versions,
  materialised and streamed; prints each case's answer."""
  same = True
  for case in _cases.CASES:
    if case.spec_name not in base.TABLE:
      continue
    inputs = _cases.make_inputs(case, batch, dim, classes)
    engines = [("materialised", step)]
    if case.weights != "centers":
      engines.append(("streamed", functools.partial(step, chunk_size=2048)))
    for engine, make in engines:
      old, new = (
        _instructions(make(case, m).lower(*inputs).compile().as_text()) for m in (base, losses)
      )
      same &= old == new
      print(f"{case.name:20s} {engine:12s} C={classes}: {'same' if old == new else 'DIFFERENT'}")
  return same


def main(argv=None):
  _harness.pin_allocator()
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--base", required=True, help="a directory holding the other margin_jax")
  _harness.add_loss_timing_args(parser, max_reps=30)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--equal-float64", action="store_true", help="check equality, no timing")
  parser.add_argument("--rtol", type=float, default=1e-12, help="of --equal-float64")
  parser.add_argument("--same-program", action="store_true", help="compare programs, no timing")
  args = parser.parse_args(argv)
  base = import_base(args.base)
  if args.equal_float64:
    ok = all(equal_in_float64(base, c, args.batch, args.dim, args.rtol) for c in args.classes)
    sys.exit(0 if ok else 1)
  if args.same_program:
    sys.exit(0 if all(same_programs(base, c, args.batch, args.dim) for c in args.classes) else 1)
  info = _harness.machine_info()
  results = []
  for classes in args.classes:
    fns = {}
    for case in _cases.CASES:
      if case.spec_name not in base.TABLE:
        continue
      inputs = _cases.make_inputs(case, args.batch, args.dim, classes, dtype=args.dtype)
      for tag, module in (("base", base), ("this", losses)):
        f = step(case, module)
        fns[tag, case.name] = lambda f=f, inputs=inputs: jax.block_until_ready(f(*inputs))
    cpu: dict = {}
    times = _harness.interleaved(
      fns, budget_s=args.budget, max_reps=args.max_reps, min_reps=args.min_reps, cpu_times=cpu
    )
    names = [name for tag, name in fns if tag == "this"]
    result = {"classes": classes, "reps": len(times["this", "softmax"]), "losses": {}}
    for name in names:
      this, old = ("this", name), ("base", name)
      result["losses"][name] = {
        "base_ms": 1e3 * _harness.median(times[old]),
        "this_ms": 1e3 * _harness.median(times[this]),
        "wall": _harness.paired_ratio(times[this], times[old]),
        "cpu": _harness.paired_ratio(cpu[this], cpu[old]),
        "base_to_softmax": _harness.paired_ratio(times[old], times["base", "softmax"]),
        "this_to_softmax": _harness.paired_ratio(times[this], times["this", "softmax"]),
      }
    results.append(result)
    print(
      f"# C={classes} {args.dtype}, {result['reps']} rounds; {info.get('cpu')}, "
      f"{info['cores']} cores, load {info['loadavg_start']}"
    )
    header = ["loss", "base ms", "this ms", "this/base wall", "this/base cpu"]
    header += ["base/softmax", "this/softmax"]
    rows = [[name, *r.values()] for name, r in result["losses"].items()]
    print(_harness.format_table(header, rows), flush=True)
  _harness.write_json(
    args.json,
    {
      "benchmark": "loss_ab",
      "base": os.path.abspath(args.base),
      "batch": args.batch,
      "dim": args.dim,
      "dtype": args.dtype,
      "machine": info,
      "results": results,
    },
  )


if __name__ == "__main__":
  main()
