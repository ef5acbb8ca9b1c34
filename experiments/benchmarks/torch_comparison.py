"""Benchmark 2: margin_jax against pytorch-metric-learning, forward + backward.

Each pair computes the same batch-mean loss and its gradients with respect to
the features and the class weights W [d, C] (pytorch-metric-learning keeps W
in the same [embedding_size, num_classes] layout): the script copies the
random inputs into both, checks that the two losses agree, then times
jitted ``value_and_grad`` against ``loss(...).backward()`` round-robin in one
process with the same thread count (``torch.set_num_threads(cores)``; XLA's
CPU client runs one worker per core).

Needs the ``bench`` extra: ``pip install -e .[bench]`` (torch 2.13.0 CPU and
pytorch-metric-learning; never imported by the library or its tests).

  .venv/bin/python -m experiments.benchmarks.torch_comparison --json results/torch_comparison.json
"""

from __future__ import annotations

import argparse
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml

from margin_jax import losses
from experiments.benchmarks import _cases
from experiments.benchmarks import _harness


def _pml(factory):
  def loss(x, w, y, classes, dim):
    module = factory(num_classes=classes, embedding_size=dim)
    with torch.no_grad():
      module.W.copy_(w)
    module.W.requires_grad_(True)
    return module, (lambda x: module(x, y))

  return loss


def _torch_ce(x, w, y, classes, dim):
  w = w.clone().requires_grad_(True)
  holder = torch.nn.Module()
  holder.W = torch.nn.Parameter(w)
  return holder, (lambda x: F.cross_entropy(x @ holder.W, y))


def _typical(name, key):
  return losses.TABLE[name].typical[key]


# Benchmark case of margin_jax (`_cases`, the table's typical hyperparameters)
# -> the PyTorch module computing the same loss with the same settings.
PAIRS = {
  "softmax": _torch_ce,
  "l_softmax_m2": _pml(lambda **kw: pml.LargeMarginSoftmaxLoss(margin=2, scale=1, **kw)),
  "l_softmax_m4": _pml(lambda **kw: pml.LargeMarginSoftmaxLoss(margin=4, scale=1, **kw)),
  "a_softmax_m4": _pml(lambda **kw: pml.SphereFaceLoss(margin=4, scale=1, **kw)),
  "cosface": _pml(
    lambda **kw: pml.CosFaceLoss(
      margin=_typical("cosface", "margin"), scale=_typical("cosface", "scale"), **kw
    )
  ),
  "arcface": _pml(  # pytorch-metric-learning takes the margin in degrees.
    lambda **kw: pml.ArcFaceLoss(
      margin=math.degrees(_typical("arcface", "margin")), scale=_typical("arcface", "scale"), **kw
    )
  ),
  "normface": _pml(
    lambda **kw: pml.NormalizedSoftmaxLoss(temperature=1 / _typical("normface", "scale"), **kw)
  ),
}
CASES = {case.name: case for case in _cases.CASES}


def run_one(batch, dim, classes, threads, budget_s, max_reps, names, min_reps=5):
  rng = np.random.default_rng(0)
  x_np = rng.standard_normal((batch, dim), dtype=np.float32)
  w_np = rng.standard_normal((dim, classes), dtype=np.float32) / math.sqrt(dim)
  y_np = rng.integers(0, classes, batch)
  x_j, w_j, y_j = jnp.asarray(x_np), jnp.asarray(w_np), jnp.asarray(y_np, jnp.int32)
  x_t, y_t = torch.from_numpy(x_np).requires_grad_(True), torch.from_numpy(y_np)
  w_t = torch.from_numpy(w_np)
  fns, values = {}, {}
  for name, torch_builder in PAIRS.items():
    if name not in names:
      continue
    step = jax.jit(
      jax.value_and_grad(
        lambda x, w, y, f=CASES[name].fn: jnp.mean(f(x, w, y, None)), argnums=(0, 1)
      )
    )
    module, torch_loss = torch_builder(x_t, w_t, y_t, classes, dim)

    def torch_step(module=module, torch_loss=torch_loss):
      x_t.grad = None
      module.W.grad = None
      loss = torch_loss(x_t)
      loss.backward()
      return loss

    fns[f"jax:{name}"] = lambda step=step: jax.block_until_ready(step(x_j, w_j, y_j))
    fns[f"torch:{name}"] = torch_step
    jax_value = float(step(x_j, w_j, y_j)[0])
    torch_value = float(torch_step().detach())
    values[name] = (jax_value, torch_value)
  cpu: dict[str, list[float]] = {}
  times = _harness.interleaved(
    fns, budget_s=budget_s, max_reps=max_reps, min_reps=min_reps, cpu_times=cpu
  )
  result = {"classes": classes, "reps": len(next(iter(times.values()))), "pairs": {}}
  for name, (jv, tv) in values.items():
    tj, tt = times[f"jax:{name}"], times[f"torch:{name}"]
    result["pairs"][name] = {
      "jax_ms": 1e3 * _harness.median(tj),
      "torch_ms": 1e3 * _harness.median(tt),
      "ratio": _harness.paired_ratio(tj, tt),
      "cpu_ratio": _harness.paired_ratio(cpu[f"jax:{name}"], cpu[f"torch:{name}"]),
      "jax_loss": jv,
      "torch_loss": tv,
    }
  return result


def main(argv=None):
  _harness.pin_allocator()
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  _harness.add_loss_timing_args(parser, max_reps=40)
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  parser.add_argument("--losses", nargs="+", default=list(PAIRS))
  args = parser.parse_args(argv)

  torch.set_num_threads(args.threads)
  info = _harness.machine_info()
  info["torch_threads"] = torch.get_num_threads()
  print(
    f"# margin_jax vs pytorch-metric-learning, B={args.batch} d={args.dim}, "
    f"torch threads {torch.get_num_threads()}; {info.get('cpu')}, load {info['loadavg_start']}"
  )
  results = []
  for classes in args.classes:
    results.append(
      run_one(
        args.batch,
        args.dim,
        classes,
        args.threads,
        args.budget,
        args.max_reps,
        set(args.losses),
        args.min_reps,
      )
    )
    print(f"C={classes}: {results[-1]['reps']} rounds", flush=True)

  names = [n for n in PAIRS if n in args.losses]
  header = ["loss (margin_jax / torch time)"] + [f"C={r['classes']}" for r in results]
  print(
    "\nmargin_jax time / PyTorch time, forward+backward (median of paired rounds; "
    "< 0.4 is the 2.5x target)"
  )
  print(
    _harness.format_table(header, [[n] + [r["pairs"][n]["ratio"] for r in results] for n in names])
  )
  print("\nsame, from process CPU time")
  print(
    _harness.format_table(
      header, [[n] + [r["pairs"][n]["cpu_ratio"] for r in results] for n in names]
    )
  )
  rows = []
  for r in results:
    for n in names:
      p = r["pairs"][n]
      rows.append(
        [
          r["classes"],
          n,
          p["jax_ms"],
          p["torch_ms"],
          p["torch_ms"] / p["jax_ms"],
          p["jax_loss"],
          p["torch_loss"],
        ]
      )
  print("\nmedian ms and the two losses' values on the same inputs")
  print(
    _harness.format_table(
      ["C", "loss", "margin_jax ms", "torch ms", "speed-up", "margin_jax loss", "torch loss"], rows
    )
  )
  _harness.write_json(
    args.json,
    {
      "benchmark": "torch_comparison",
      "batch": args.batch,
      "dim": args.dim,
      "machine": info,
      "results": results,
    },
  )


if __name__ == "__main__":
  main()
