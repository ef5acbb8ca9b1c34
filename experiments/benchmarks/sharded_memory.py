"""Benchmark 5: per-device memory of class-sharded losses, and a 10^6-class training step.

1. Memory (compile only, nothing large allocated): for each loss, C and shard
   count n, the jitted ``value_and_grad`` (w.r.t. features and W) of the batch
   mean of ``parallel.shard_classes(loss)`` on the mesh (1, n) is lowered from
   ``jax.ShapeDtypeStruct`` inputs carrying their shardings (W split over
   "model") and compiled; XLA's ``memory_analysis()`` gives the bytes per
   device (arguments, outputs, temporaries). A least-squares line
   ``bytes/device = a + k * C/n`` per loss gives the per-class cost k and the
   largest C that fits a memory M on n devices: ``C_max = n (M - a) / k``.
   The same is done for the trainer's whole class-sharded step on the
   many-class task (`mesh_step`: `margin_jax.training.train.train_step` under
   `devices.MeshParallel`, as `experiments.train` runs
   ``experiments/configs/sharded_head.py``: params, momentum, gradient).
2. Step: that training step at C = 10^6, d = 512, B = 256 on 8
   devices, with and without PartialFC sampling, each in a fresh subprocess:
   W initialised, a few steps run (each blocked), the median time after a
   warm-up step, the compiled memory analysis and the process's peak RSS.

  .venv/bin/python -m experiments.benchmarks.sharded_memory \
      --json experiments/benchmarks/results/sharded_memory.json

Needs 8 devices: run as a module it sets
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (and turns XLA:CPU's
intra-op threading off) unless a device count is already set.
"""

from __future__ import annotations

import os

if __name__ == "__main__" and "device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8 --xla_cpu_multi_thread_eigen=false"
  ).strip()

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

LOSSES = ["softmax", "l_softmax", "cosface", "arcface", "em_softmax"]
MEMORY_FIELDS = (
  "argument_size_in_bytes",
  "output_size_in_bytes",
  "temp_size_in_bytes",
  "alias_size_in_bytes",
  "generated_code_size_in_bytes",
)


def example_config(loss: str, classes: int, dim: int, batch: int, mesh_shape, sample_rate=None):
  """The example's config (experiments/configs/sharded_head.py) at this size."""
  from experiments.configs import sharded_head as configs

  config = configs.get_config()
  config.loss = loss
  config.num_classifiers = 2 if loss in ("em_softmax", "e_softmax") else 0  # EM-Softmax V = 2
  config.num_classes = classes
  config.feature_dim = dim
  config.batch_size = batch
  config.mesh_shape = tuple(mesh_shape)
  config.sample_rate = sample_rate
  return config


def compiled_memory(compiled) -> dict:
  """XLA's memory analysis of a compiled program, with the bytes live at once."""
  analysis = compiled.memory_analysis()
  mem = {k: int(getattr(analysis, k)) for k in MEMORY_FIELDS}
  # Live at once on a device: inputs, outputs not aliased to an input, temporaries.
  mem["total_bytes"] = (
    mem["argument_size_in_bytes"]
    + mem["output_size_in_bytes"]
    - mem["alias_size_in_bytes"]
    + mem["temp_size_in_bytes"]
  )
  return mem


def loss_memory(loss: str, classes: int, shards: int, dim: int, batch: int) -> dict:
  """Compiled per-device memory of value_and_grad of the sharded loss on mesh (1, shards)."""
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  from margin_jax import parallel
  from margin_jax import sharding
  from margin_jax.training import objectives

  config = example_config(loss, classes, dim, batch, (1, shards))
  mesh = sharding.make_mesh(config.mesh_shape)
  sharded = parallel.shard_classes(
    objectives.bound_loss(config), mesh, class_axis="model", batch_axis="data"
  )

  def mean_loss(features, weights, labels):
    return sharded(features, weights, labels, step=0).mean()

  step = jax.jit(jax.value_and_grad(mean_loss, argnums=(0, 1)))
  w_shape = (dim, classes) if not config.num_classifiers else (2, dim, classes)
  w_spec = P(*([None] * (len(w_shape) - 1)), "model")
  x = jax.ShapeDtypeStruct((batch, dim), jnp.float32, sharding=NamedSharding(mesh, P("data")))
  w = jax.ShapeDtypeStruct(w_shape, jnp.float32, sharding=NamedSharding(mesh, w_spec))
  y = jax.ShapeDtypeStruct((batch,), jnp.int32, sharding=NamedSharding(mesh, P("data")))
  t0 = time.perf_counter()
  compiled = step.lower(x, w, y).compile()
  return {
    "loss": loss,
    "classes": classes,
    "shards": shards,
    "compile_s": time.perf_counter() - t0,
    **compiled_memory(compiled),
  }


def abstract_arrays(tree, shardings):
  """``tree`` as ShapeDtypeStructs carrying ``shardings`` (compile without allocating)."""
  import jax

  return jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings
  )


def mesh_step(config, *, allocate: bool = False):
  """The trainer's class-sharded training step for ``config`` as
  `margin_jax.training.train_and_evaluate` builds it
  (`train.placed_initial_state`, `train.training_step` under
  `devices.MeshParallel`, the state donated) on
  `margin_jax.data.many_classes`' 8x8 inputs: ``(step, place, state)``, the
  state initialised on the mesh (``allocate``) or abstract (nothing
  allocated)."""
  import functools

  import jax
  import numpy as np

  from margin_jax.data import transforms
  from margin_jax.training import objectives
  from margin_jax.training import train

  objective = objectives.get_objective(config)
  model = train.create_model(config, config.num_classes, objective=objective)
  preprocess = functools.partial(
    transforms.preprocess, recipe=config.preprocess, mean=np.zeros(IMAGE_SHAPE, np.float32)
  )
  place, state = train.placed_initial_state(
    config,
    model,
    IMAGE_SHAPE,
    config.num_classes,
    jax.random.key(config.seed),
    objective=objective,
    allocate=allocate,
  )
  step = place.parallelize(
    # the timed steps are not logged, as in the trainer
    train.training_step(config, objective=objective, preprocess=preprocess, key=jax.random.key(0)),
    returns_state=True,
  )
  return step, place, state


IMAGE_SHAPE = (8, 8, 1)  # margin_jax.data.many_classes' examples


def step_memory(loss, classes, mesh_shape, dim, batch, sample_rate=None) -> dict:
  """Compiled per-device memory of the trainer's step on the many-class task (compile only)."""
  config = example_config(loss, classes, dim, batch, mesh_shape, sample_rate)
  return {
    "loss": loss,
    "classes": classes,
    "shards": mesh_shape[1],
    "mesh": list(mesh_shape),
    "sample_rate": sample_rate,
    **compiled_memory(compile_step(config)),
  }


def compile_step(config):
  """The trainer's step for ``config`` lowered from abstract arguments and compiled."""
  import jax
  import numpy as np
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  step, place, state = mesh_step(config)
  data = NamedSharding(place.mesh, P("data"))
  batch = {
    "image": jax.ShapeDtypeStruct((config.batch_size, *IMAGE_SHAPE), np.uint8, sharding=data),
    "label": jax.ShapeDtypeStruct((config.batch_size,), np.int32, sharding=data),
  }
  shardings = jax.tree.map(lambda spec: NamedSharding(place.mesh, spec), place.specs)
  return step.lower(abstract_arrays(state, shardings), batch).compile()


def time_steps(config, steps: int, print_fn=None) -> dict:
  """The trainer's step for ``config``: state init, compile, one warm-up step
  and ``steps`` timed steps (each blocked) on batches of
  `margin_jax.data.many_classes`; times, losses, peak RSS, shardings, memory."""
  import jax

  from experiments.benchmarks import _harness
  from margin_jax import data

  t0 = time.perf_counter()
  step, place, state = mesh_step(config, allocate=True)
  state = jax.block_until_ready(state)
  init_s = time.perf_counter() - t0
  rss_after_init = _harness.peak_rss_mib()
  images, labels = data.many_classes(
    num_classes=config.num_classes, num_train=config.batch_size * (steps + 1), num_test=1
  )["train"]

  def batch(t):
    rows = slice(t * config.batch_size, (t + 1) * config.batch_size)
    return place.put_batch({"image": images[None, rows], "label": labels[None, rows]})

  t0 = time.perf_counter()
  compiled = step.lower(state, batch(0)).compile()
  compile_s = time.perf_counter() - t0
  times, step_losses = [], []
  for t in range(steps + 1):  # the first is the warm-up
    inputs = jax.block_until_ready(batch(t))
    t0 = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(state, inputs))
    times.append(time.perf_counter() - t0)
    step_losses.append(float(metrics["loss"]))
    if print_fn is not None:
      print_fn(f"  step {t}: {times[-1]:.2f} s, loss {step_losses[-1]:.4f}")
  w = state.params["head"]["kernel"]
  return {
    "init_s": init_s,
    "compile_s": compile_s,
    "warmup_s": times[0],
    "step_s": times[1:],
    "median_step_s": float(np.median(times[1:])) if steps else None,
    "step_losses": step_losses,
    "peak_rss_after_init_mib": rss_after_init,
    "peak_rss_mib": _harness.peak_rss_mib(),
    "w_sharding": str(w.sharding.spec),
    "momentum_sharding": str(state.opt_state[1][0].trace["head"]["kernel"].sharding.spec),
    **compiled_memory(compiled),
  }


def run_steps(loss, classes, mesh_shape, dim, batch, sample_rate, steps) -> dict:
  """Runs in a subprocess: init, ``steps`` training steps, times and peak RSS."""
  config = example_config(loss, classes, dim, batch, mesh_shape, sample_rate)
  return {
    "loss": loss,
    "classes": classes,
    "dim": dim,
    "batch": batch,
    "mesh": list(mesh_shape),
    "sample_rate": sample_rate,
    **time_steps(config, steps),
  }


def fit_line(xs, ys) -> tuple[float, float]:
  """Least-squares ``y = a + k x``; returns (a, k)."""
  k, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
  return float(a), float(k)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--dim", type=int, default=512)
  parser.add_argument("--classes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
  parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4, 8])
  parser.add_argument("--losses", nargs="+", default=LOSSES)
  parser.add_argument("--step-loss", default="cosface", help="loss of the training step runs")
  parser.add_argument("--step-classes", type=int, default=1_000_000)
  parser.add_argument("--step-mesh", type=int, nargs=2, default=[1, 8], metavar=("DATA", "MODEL"))
  parser.add_argument("--step-sample-rates", type=float, nargs="*", default=[0.0, 0.1])
  parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
  parser.add_argument("--memory-gib", type=float, default=16.0, help="M for the C_max column")
  parser.add_argument("--json", default=None)
  parser.add_argument("--single-step", type=float, help=argparse.SUPPRESS)
  parser.add_argument("--out", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)

  if args.single_step is not None:
    rate = args.single_step or None
    result = run_steps(
      args.step_loss, args.step_classes, args.step_mesh, args.dim, args.batch, rate, args.steps
    )
    with open(args.out, "w") as f:
      json.dump(result, f)
    return

  import jax

  from experiments.benchmarks import _harness

  info = _harness.machine_info()
  info["devices"] = jax.device_count()
  print(
    f"# sharded memory, B={args.batch} d={args.dim}; {info.get('cpu')}, {info['cores']} cores, "
    f"{info.get('memory_gib')} GiB, {info['devices']} devices, load {info['loadavg_start']}",
    flush=True,
  )
  # 1. Loss memory per device.
  rows = []
  for loss in args.losses:
    for classes in args.classes:
      for shards in args.shards:
        rows.append(loss_memory(loss, classes, shards, args.dim, args.batch))
        r = rows[-1]
        print(
          f"{loss} C={classes} n={shards}: args {r['argument_size_in_bytes'] / 2**20:.1f} MiB, "
          f"temp {r['temp_size_in_bytes'] / 2**20:.1f} MiB, out "
          f"{r['output_size_in_bytes'] / 2**20:.1f} MiB ({r['compile_s']:.1f} s)",
          flush=True,
        )
  fits = {}
  for loss in args.losses:
    mine = [r for r in rows if r["loss"] == loss]
    xs = [r["classes"] / r["shards"] for r in mine]
    a, k = fit_line(xs, [r["total_bytes"] for r in mine])
    residual = max(abs(a + k * x - r["total_bytes"]) / r["total_bytes"] for x, r in zip(xs, mine))
    _, k_temp = fit_line(xs, [r["temp_size_in_bytes"] for r in mine])
    fits[loss] = {
      "a_bytes": a,
      "k_bytes_per_class": k,
      "k_temp_bytes_per_class": k_temp,
      "temp_in_B_floats_per_class": k_temp / (4 * args.batch),
      "max_relative_residual": residual,
    }
  # The example's whole training step (compile only), n = 8 class shards.
  step_rows = [
    step_memory(args.step_loss, classes, args.step_mesh, args.dim, args.batch)
    for classes in args.classes
  ]
  for r in step_rows:
    print(f"train step C={r['classes']}: total {r['total_bytes'] / 2**20:.1f} MiB/device")
  xs = [r["classes"] / r["shards"] for r in step_rows]
  a, k = fit_line(xs, [r["total_bytes"] for r in step_rows])
  fits["train_step_" + args.step_loss] = {"a_bytes": a, "k_bytes_per_class": k}

  # 2. The training step at 10^6 classes, each sampling rate in a fresh process.
  runs = []
  for rate in args.step_sample_rates:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
      out = tmp.name
    cmd = [sys.executable, "-m", "experiments.benchmarks.sharded_memory", "--single-step"]
    cmd += [str(rate), "--out", out, "--steps", str(args.steps), "--step-loss", args.step_loss]
    cmd += ["--step-classes", str(args.step_classes), "--dim", str(args.dim)]
    cmd += ["--batch", str(args.batch), "--step-mesh", *map(str, args.step_mesh)]
    loadavg = os.getloadavg()
    subprocess.run(cmd, check=True)
    with open(out) as f:
      runs.append({**json.load(f), "loadavg_before": loadavg, "loadavg_after": os.getloadavg()})
    os.unlink(out)
    r = runs[-1]
    print(
      f"step C={r['classes']} sample_rate={r['sample_rate']}: median {r['median_step_s']:.2f} s "
      f"(steps {[round(s, 2) for s in r['step_s']]}), XLA total "
      f"{r['total_bytes'] / 2**20:.0f} MiB/device, peak RSS {r['peak_rss_mib']:.0f} MiB",
      flush=True,
    )

  print(f"\nper-device MiB (compiled memory_analysis), B={args.batch}, d={args.dim}")
  table = [
    [
      r["loss"],
      r["classes"],
      r["shards"],
      r["argument_size_in_bytes"] / 2**20,
      r["output_size_in_bytes"] / 2**20,
      r["temp_size_in_bytes"] / 2**20,
      r["total_bytes"] / 2**20,
    ]
    for r in rows
  ]
  print(_harness.format_table(["loss", "C", "n", "args", "out", "temp", "total"], table))
  memory = args.memory_gib * 2**30
  print(f"\nfit bytes/device = a + k C/n; C_max = n (M - a) / k at M = {args.memory_gib} GiB")
  print(
    _harness.format_table(
      ["loss", "a MiB", "k B/class", "temp [B]-floats/class", "max resid", "C_max n=1", "n=8"],
      [
        [
          name,
          f["a_bytes"] / 2**20,
          f["k_bytes_per_class"],
          f.get("temp_in_B_floats_per_class", float("nan")),
          f.get("max_relative_residual", float("nan")),
          int((memory - f["a_bytes"]) / f["k_bytes_per_class"]),
          int(8 * (memory - f["a_bytes"]) / f["k_bytes_per_class"]),
        ]
        for name, f in fits.items()
      ],
    )
  )
  _harness.write_json(
    args.json,
    {
      "benchmark": "sharded_memory",
      "batch": args.batch,
      "dim": args.dim,
      "machine": info,
      "loss_memory": rows,
      "step_memory": step_rows,
      "fits": fits,
      "step_runs": runs,
    },
  )


if __name__ == "__main__":
  main()
