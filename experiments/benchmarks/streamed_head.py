"""Benchmark 7: the streamed head (`margin_jax.losses.chunked`, issue 25): memory, time, scale.

Four parts, each runnable alone (``--parts``; the default runs the first
three); each part's results carry their own machine line (commit, load
average at start and end):

1. ``memory`` (compile only, nothing allocated): XLA's compiled
   ``memory_analysis()`` of the jitted ``value_and_grad`` (w.r.t. features and
   W) of the batch mean, float32, for softmax (materialised:
   ``softmax_loss(x @ W, y)``), L-Softmax (m=4, lam=0), CosFace (s=64,
   m=0.35) and ArcFace (s=64, m=0.5): materialised against
   ``chunked(loss, chunk_size)``, inputs as ``jax.ShapeDtypeStruct``s.
2. ``time``: softmax and ArcFace, streamed against materialised
   ``value_and_grad`` wall time at each C (jitted, blocked, warm-up excluded),
   in the same process in randomly ordered paired rounds
   (`_harness.interleaved`, allocator pinned); the median per-round ratio.
   ``--variants`` adds two softmax-only comparisons written here (not library
   code): a minimal 2-D class-chunked softmax (the design's floor) and a
   Liger-Kernel-style row-chunked mean loss whose gradient is formed in the
   forward pass.
3. ``scale`` (compile only): the trainer's class-sharded step on the
   many-class task (`sharded_memory.mesh_step`: the 2-layer MLP + CosFace head
   of ``experiments/configs/sharded_head.py``, SGD momentum) on 8 simulated CPU devices:
   per-device memory at a few C for the materialised head, the streamed head
   (``class_chunk_size``) and the streamed head with ``sample_rate``, a line
   ``bytes/device = a + k C/n`` per row, the largest C that fits, the streamed
   temporaries against the chunk, and the predictions at ``--step-classes``.
4. ``steps`` (only when named): the streamed step at ``--run-classes`` on
   ``--run-mesh``, each in a fresh subprocess: time per step and peak RSS.

Parts 3 and 4 run in subprocesses with ``XLA_FLAGS=
--xla_force_host_platform_device_count=8 --xla_cpu_multi_thread_eigen=false``
(as benchmark 5).

  .venv/bin/python -m experiments.benchmarks.streamed_head \\
      --json experiments/benchmarks/results/streamed_head.json
  .venv/bin/python -m experiments.benchmarks.streamed_head --parts steps --run-mesh 1,8 \\
      --run-classes 10000000 --json experiments/benchmarks/results/streamed_head.json

With ``--json`` an existing file's other parts are kept (each part replaces its own key).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from experiments.benchmarks import sharded_memory

PARTS = ("memory", "time", "scale", "steps")
BASE = ("materialised", "streamed")
VARIANTS = ("reference", "liger")
EIGHT_DEVICES = "--xla_force_host_platform_device_count=8 --xla_cpu_multi_thread_eigen=false"
MIB = 2**20


def loss_cases():
  """name -> (materialised fn(x, W, y), the loss to stream, its keywords)."""
  from margin_jax import losses

  def softmax(x, w, y):
    return losses.softmax_loss(x @ w, y)

  return {
    "softmax": (softmax, losses.softmax_loss, {}),
    "l_softmax_m4": (None, losses.large_margin_softmax_loss, {"margin": 4, "lam": 0.0}),
    "cosface": (None, losses.cosface_loss, {"scale": 64.0, "margin": 0.35}),
    "arcface": (None, losses.arcface_loss, {"scale": 64.0, "margin": 0.5}),
    # Streamed since issue 33 (time part: --time-losses adaface ...).
    "adaface": (None, losses.adaface_loss, dict(losses.TABLE["adaface"].typical)),
    "magface": (None, losses.magface_loss, dict(losses.TABLE["magface"].typical)),
    "curricularface": (None, losses.curricularface_loss, {"scale": 64.0, "margin": 0.5, "t": 0.3}),
  }


def value_and_grad(name: str, streamed: bool, chunk: int):
  """jit(value_and_grad of the batch mean w.r.t. features and weights)."""
  import jax
  import jax.numpy as jnp

  from margin_jax import losses

  materialised, fn, kwargs = loss_cases()[name]
  if streamed:
    loss = functools.partial(losses.chunked(fn, chunk_size=chunk), **kwargs)
  else:
    loss = materialised or functools.partial(fn, **kwargs)

  def mean_loss(x, w, y):
    return jnp.mean(loss(x, w, y))

  return jax.jit(jax.value_and_grad(mean_loss, argnums=(0, 1)))


# Softmax-only comparison variants (not in the library), each value_and_grad-able
# (x, W, y) -> mean loss: where the streamed head's time goes.


def reference_streamed_softmax(chunk: int):
  """A minimal 2-D class-chunked softmax (batch mean): forward an online
  log-sum-exp over column blocks of W, backward (custom VJP) recomputes each
  block's logits and writes its columns of dW: the class-chunked design's
  floor (4 matmuls per block), with none of `chunked`'s generality (no
  [K, d, C] sub-centres, masks, bias or moments). The C % chunk tail is one
  static block after the loop."""
  import jax
  import jax.numpy as jnp
  from jax import lax

  def blocks(num_classes):
    full, tail = divmod(num_classes, chunk)
    return full, tail

  @jax.custom_vjp
  def per_example(x, w, y):
    return _forward(x, w, y)[0]

  def _forward(x, w, y):
    full, tail = blocks(w.shape[1])

    def step(start, size, carry):
      peak, total = carry
      z = x @ lax.dynamic_slice_in_dim(w, start, size, axis=1)
      new = jnp.maximum(peak, jnp.max(z, axis=1))
      total = total * jnp.exp(peak - new) + jnp.sum(jnp.exp(z - new[:, None]), axis=1)
      return new, total

    init = (jnp.full(x.shape[:1], -jnp.inf, x.dtype), jnp.zeros(x.shape[:1], x.dtype))
    carry = lax.fori_loop(0, full, lambda i, c: step(i * chunk, chunk, c), init)
    if tail:
      carry = step(full * chunk, tail, carry)
    lse = carry[0] + jnp.log(carry[1])
    target = jnp.sum(x * jnp.take(w, y, axis=1).T, axis=1)
    return lse - target, (x, w, y, lse)

  def _backward(residuals, g):
    x, w, y, lse = residuals
    full, tail = blocks(w.shape[1])

    def step(start, size, carry):
      d_x, d_w = carry
      block = lax.dynamic_slice_in_dim(w, start, size, axis=1)
      z = x @ block
      ids = start + jnp.arange(size)
      d_z = (jnp.exp(z - lse[:, None]) - (ids[None, :] == y[:, None])) * g[:, None]
      d_w = lax.dynamic_update_slice_in_dim(d_w, x.T @ d_z, start, axis=1)
      return d_x + d_z @ block.T, d_w

    carry = (jnp.zeros_like(x), jnp.zeros_like(w))
    carry = lax.fori_loop(0, full, lambda i, c: step(i * chunk, chunk, c), carry)
    if tail:
      carry = step(full * chunk, tail, carry)
    return carry[0], carry[1], None

  per_example.defvjp(_forward, _backward)
  return lambda x, w, y: jnp.mean(per_example(x, w, y))


def liger_softmax_mean(rows: int):
  """Liger-Kernel style: the batch-mean softmax over blocks of ``rows``
  examples with all C classes each ([rows, C] logits), its gradient formed in
  the forward pass (one pass, 3 matmuls; the backward scales it by g)."""
  import jax
  import jax.numpy as jnp
  from jax import lax

  @jax.custom_vjp
  def mean_loss(x, w, y):
    return _forward(x, w, y)[0]

  def _forward(x, w, y):
    batch, num_classes = x.shape[0], w.shape[1]
    if batch % rows:
      raise ValueError(f"rows={rows} must divide the batch {batch}.")

    def body(i, carry):
      total, d_x, d_w = carry
      xs = lax.dynamic_slice_in_dim(x, i * rows, rows)
      ys = lax.dynamic_slice_in_dim(y, i * rows, rows)
      z = xs @ w
      peak = jnp.max(z, axis=1)
      e = jnp.exp(z - peak[:, None])
      sums = jnp.sum(e, axis=1)
      hot = jnp.arange(num_classes)[None, :] == ys[:, None]
      target = jnp.sum(jnp.where(hot, z, 0.0), axis=1)
      d_z = (e / sums[:, None] - hot) / batch
      d_x = lax.dynamic_update_slice_in_dim(d_x, d_z @ w.T, i * rows, axis=0)
      return total + jnp.sum(peak + jnp.log(sums) - target), d_x, d_w + xs.T @ d_z

    init = (jnp.zeros((), x.dtype), jnp.zeros_like(x), jnp.zeros_like(w))
    total, d_x, d_w = lax.fori_loop(0, batch // rows, body, init)
    return total / batch, (d_x, d_w)

  def _backward(residuals, g):
    d_x, d_w = residuals
    return g * d_x, g * d_w, None

  mean_loss.defvjp(_forward, _backward)
  return mean_loss


def variant_value_and_grad(variant: str, chunk: int, rows: int):
  import jax

  fn = reference_streamed_softmax(chunk) if variant == "reference" else liger_softmax_mean(rows)
  return jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))


def git_commit() -> dict:
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  run = lambda *a: subprocess.run(
    ["git", "-C", root, *a], capture_output=True, text=True, check=False
  ).stdout.strip()
  return {"commit": run("rev-parse", "--short", "HEAD"), "dirty": bool(run("status", "--short"))}


def machine() -> dict:
  from experiments.benchmarks import _harness

  return {**_harness.machine_info(), **git_commit()}


# 1. Memory of the loss alone (compile only).


def part_memory(args) -> dict:
  import jax
  import jax.numpy as jnp

  info = machine()
  b, d, c = args.batch, args.dim, args.memory_classes
  x = jax.ShapeDtypeStruct((b, d), jnp.float32)
  w = jax.ShapeDtypeStruct((d, c), jnp.float32)
  y = jax.ShapeDtypeStruct((b,), jnp.int32)
  bc = 4 * b * c
  rows = []
  for name in loss_cases():
    for streamed in (False, True):
      compiled = value_and_grad(name, streamed, args.chunk).lower(x, w, y).compile()
      mem = sharded_memory.compiled_memory(compiled)
      rows.append(
        {
          "loss": name,
          "streamed": streamed,
          **mem,
          "temp_mib": mem["temp_size_in_bytes"] / MIB,
          "temp_in_bc_arrays": mem["temp_size_in_bytes"] / bc,
        }
      )
  for variant in args.variants:
    compiled = variant_value_and_grad(variant, args.chunk, args.liger_rows).lower(x, w, y)
    mem = sharded_memory.compiled_memory(compiled.compile())
    rows.append(
      {
        "loss": f"softmax ({variant})",
        "streamed": True,
        **mem,
        "temp_mib": mem["temp_size_in_bytes"] / MIB,
        "temp_in_bc_arrays": mem["temp_size_in_bytes"] / bc,
      }
    )
  from experiments.benchmarks import _harness

  table = []
  for name in loss_cases():
    m, s = (next(r for r in rows if r["loss"] == name and r["streamed"] == k) for k in (0, 1))
    table.append(
      [
        name,
        m["temp_mib"],
        m["temp_in_bc_arrays"],
        s["temp_mib"],
        s["temp_in_bc_arrays"],
        "yes" if s["temp_in_bc_arrays"] <= 0.10 else "NO",
      ]
    )
  for r in rows[2 * len(loss_cases()) :]:
    table.append([r["loss"], "", "", r["temp_mib"], r["temp_in_bc_arrays"], ""])
  text = (
    f"# temporaries of value_and_grad, float32 B={b} d={d} C={c} chunk={args.chunk}; "
    f"one [B, C] float32 = {bc / MIB:.1f} MiB\n"
    + _harness.format_table(
      [
        "loss",
        "materialised MiB",
        "x [B,C]",
        "streamed MiB",
        "x [B,C]",
        "streamed <= 0.10 [B,C]",
      ],
      table,
    )
  )
  print(text, flush=True)
  info["loadavg_end"] = os.getloadavg()
  return {
    "machine": info,
    "batch": b,
    "dim": d,
    "classes": c,
    "chunk": args.chunk,
    "rows": rows,
    "text": text,
  }


# 2. Time of the loss alone.


def _numpy_inputs(batch, dim, classes, seed=0):
  """x, W, y built in float32 NumPy in place (W / sqrt(d) as benchmark 4)."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch, dim), dtype=np.float32)
  w = rng.standard_normal((dim, classes), dtype=np.float32)
  w *= np.float32(1 / np.sqrt(dim))
  y = rng.integers(0, classes, (batch,)).astype(np.int32)
  return x, w, y


def part_time(args) -> dict:
  import jax

  from experiments.benchmarks import _harness

  pinned = _harness.pin_allocator()
  info = machine()
  results = []
  lines = []
  for classes in args.time_classes:
    x, w, y = (jax.device_put(v) for v in _numpy_inputs(args.batch, args.dim, classes))
    big = classes >= 1_000_000
    for name in args.time_losses:
      fns = {}
      steps = {k: value_and_grad(name, k == "streamed", args.chunk) for k in BASE}
      if name == "softmax":
        for variant in args.variants:
          steps[variant] = variant_value_and_grad(variant, args.chunk, args.liger_rows)
      for key, step in steps.items():
        fns[key] = lambda step=step, x=x, w=w, y=y: jax.block_until_ready(step(x, w, y))
      loadavg = os.getloadavg()
      cpu: dict[str, list[float]] = {}
      times = _harness.interleaved(
        fns,
        warmup=1 if big else 2,
        min_reps=args.big_reps if big else 5,
        max_reps=args.big_reps if big else args.max_reps,
        budget_s=args.budget,
        cpu_times=cpu,
      )
      row = {
        "loss": name,
        "classes": classes,
        "rounds": len(times["streamed"]),
        "times_s": times,
        "cpu_s": cpu,
        "median_ms": {k: 1e3 * _harness.median(v) for k, v in times.items()},
        "ratio_wall": _harness.paired_ratio(times["streamed"], times["materialised"]),
        "ratio_cpu": _harness.paired_ratio(cpu["streamed"], cpu["materialised"]),
        "variant_ratios_wall": {
          k: _harness.paired_ratio(times[k], times["materialised"]) for k in fns if k not in BASE
        },
        "loadavg_before": loadavg,
        "loadavg_after": os.getloadavg(),
      }
      results.append(row)
      line = (
        f"{name} C={classes}: materialised {row['median_ms']['materialised']:.1f} ms, "
        f"streamed {row['median_ms']['streamed']:.1f} ms, streamed / materialised "
        f"{row['ratio_wall']:.3f} wall, {row['ratio_cpu']:.3f} CPU ({row['rounds']} rounds, "
        f"load {loadavg[0]:.1f} -> {row['loadavg_after'][0]:.1f})"
      )
      for k, ratio in row["variant_ratios_wall"].items():
        line += f"; {k} {row['median_ms'][k]:.1f} ms, {ratio:.3f} x materialised"
      lines.append(line)
      print(line, flush=True)
    del x, w, y, fns
  info["loadavg_end"] = os.getloadavg()
  return {
    "machine": info,
    "allocator_pinned": pinned,
    "batch": args.batch,
    "dim": args.dim,
    "chunk": args.chunk,
    "rows": results,
    "text": "\n".join(lines),
  }


# 3. The training step at scale (subprocesses with 8 devices).


def example_config(classes, mesh_shape, chunk, sample_rate, dim, batch):
  """The many-class config with a CosFace head streamed over blocks of ``chunk`` (0: materialised)."""
  config = sharded_memory.example_config("cosface", classes, dim, batch, mesh_shape, sample_rate)
  config.class_chunk_size = chunk
  return config


def worker_step_memory(classes, mesh_shape, chunk, sample_rate, dim, batch) -> dict:
  """Compiled per-device memory of the training step (compile only)."""
  config = example_config(classes, mesh_shape, chunk, sample_rate, dim, batch)
  t0 = time.perf_counter()
  compiled = sharded_memory.compile_step(config)
  return {
    "classes": classes,
    "mesh": list(mesh_shape),
    "shards": mesh_shape[1],
    "chunk": chunk,
    "sample_rate": sample_rate,
    "compile_s": time.perf_counter() - t0,
    **sharded_memory.compiled_memory(compiled),
  }


def worker_run_steps(classes, mesh_shape, chunk, sample_rate, dim, batch, steps) -> dict:
  """Init, one warm-up step and ``steps`` timed steps (each blocked); peak RSS."""
  config = example_config(classes, mesh_shape, chunk, sample_rate, dim, batch)
  timed = sharded_memory.time_steps(config, steps, print_fn=functools.partial(print, flush=True))
  return {
    "classes": classes,
    "mesh": list(mesh_shape),
    "chunk": chunk,
    "sample_rate": sample_rate,
    "dim": dim,
    "batch": batch,
    **timed,
  }


def _subprocess(worker: str, spec: dict) -> dict:
  """Runs a worker in a fresh process with 8 simulated devices; returns its JSON."""
  with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
    out = tmp.name
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + EIGHT_DEVICES).strip()
  cmd = [sys.executable, "-m", "experiments.benchmarks.streamed_head", "--worker", worker]
  cmd += ["--worker-spec", json.dumps(spec), "--out", out]
  try:
    subprocess.run(cmd, check=True, env=env)
    with open(out) as f:
      return json.load(f)
  finally:
    os.unlink(out)


def part_scale(args) -> dict:
  from experiments.benchmarks import _harness

  info = machine()
  info["XLA_FLAGS_workers"] = EIGHT_DEVICES
  base = {"mesh_shape": args.step_mesh, "dim": args.step_dim, "batch": args.batch}
  variants = {
    "materialised": {"chunk": 0, "sample_rate": None},
    "streamed": {"chunk": args.step_chunk, "sample_rate": None},
    f"streamed, sample_rate={args.sample_rate}": {
      "chunk": args.step_chunk,
      "sample_rate": args.sample_rate,
    },
  }
  rows, fits = [], {}
  for label, variant in variants.items():
    for classes in args.fit_classes:
      r = _subprocess("step-memory", {**base, **variant, "classes": classes})
      r["variant"] = label
      rows.append(r)
      print(
        f"{label} C={classes}: per device args {r['argument_size_in_bytes'] / MIB:.1f} MiB, "
        f"temp {r['temp_size_in_bytes'] / MIB:.1f} MiB, total {r['total_bytes'] / MIB:.1f} MiB "
        f"(x 8 devices {8 * r['total_bytes'] / 2**30:.2f} GiB)",
        flush=True,
      )
    mine = [r for r in rows if r["variant"] == label]
    xs = [r["classes"] / r["shards"] for r in mine]
    a, k = sharded_memory.fit_line(xs, [r["total_bytes"] for r in mine])
    _, k_temp = sharded_memory.fit_line(xs, [r["temp_size_in_bytes"] for r in mine])
    resid = max(abs(a + k * x - r["total_bytes"]) / r["total_bytes"] for x, r in zip(xs, mine))
    fits[label] = {
      "a_bytes": a,
      "k_bytes_per_class": k,
      "k_temp_bytes_per_class": k_temp,
      "max_relative_residual": resid,
    }
  # The streamed temporaries against the chunk (at the middle C).
  chunk_rows = []
  for chunk in args.chunk_sweep:
    r = _subprocess(
      "step-memory", {**base, "chunk": chunk, "sample_rate": None, "classes": args.fit_classes[1]}
    )
    chunk_rows.append(r)
    print(
      f"streamed chunk={chunk} C={args.fit_classes[1]}: temp "
      f"{r['temp_size_in_bytes'] / MIB:.2f} MiB/device",
      flush=True,
    )
  shards = args.step_mesh[1]
  devices = args.step_mesh[0] * args.step_mesh[1]
  host = args.host_gib * 2**30
  device_m = args.device_gib * 2**30
  table = []
  for label, f in fits.items():
    f["c_max_host"] = int(shards * (host / devices - f["a_bytes"]) / f["k_bytes_per_class"])
    f["c_max_per_device_memory"] = int(shards * (device_m - f["a_bytes"]) / f["k_bytes_per_class"])
    table.append(
      [
        label,
        f["a_bytes"] / MIB,
        f["k_bytes_per_class"],
        f["k_temp_bytes_per_class"],
        f["max_relative_residual"],
        f"{f['c_max_host']:,}",
        f"{f['c_max_per_device_memory']:,}",
      ]
    )
  text = (
    f"# training step, mesh {tuple(args.step_mesh)} (n = {shards} class shards, {devices} "
    f"devices), B={args.batch}, d={args.step_dim}; bytes/device = a + k C/n\n"
    + _harness.format_table(
      [
        "head",
        "a MiB",
        "k B/class",
        "k temp B/class",
        "max resid",
        f"C_max, {args.host_gib:g} GiB host / {devices} devices",
        f"C_max, {args.device_gib:g} GiB per device",
      ],
      table,
    )
  )
  print(text, flush=True)
  # Predictions at the step's C, and (optionally) the step itself.
  predictions = []
  for mesh in (args.step_mesh, [1, devices]):
    for label in ("materialised", "streamed"):
      variant = variants[label]
      r = _subprocess(
        "step-memory",
        {**base, **variant, "mesh_shape": mesh, "classes": args.step_classes},
      )
      r["variant"] = label
      predictions.append(r)
      print(
        f"prediction {label} C={args.step_classes} mesh {tuple(mesh)}: "
        f"{r['total_bytes'] / MIB:.0f} MiB/device, x {devices} = "
        f"{devices * r['total_bytes'] / 2**30:.2f} GiB",
        flush=True,
      )
  info["loadavg_end"] = os.getloadavg()
  return {
    "machine": info,
    "batch": args.batch,
    "dim": args.step_dim,
    "mesh": args.step_mesh,
    "chunk": args.step_chunk,
    "memory_rows": rows,
    "chunk_sweep": chunk_rows,
    "fits": fits,
    "predictions": predictions,
    "text": text,
  }


def part_steps(args) -> dict:
  """The streamed training step at each ``--run-classes`` on ``--run-mesh``, each
  in a fresh subprocess (run it with nothing else on the machine: BENCHMARKS 7)."""
  info = machine()
  info["XLA_FLAGS_workers"] = EIGHT_DEVICES
  base = {"dim": args.step_dim, "batch": args.batch}
  runs = []
  for mesh, classes, chunk in itertools.product(args.run_mesh, args.run_classes, args.run_chunks):
    data, model = (int(v) for v in mesh.split(","))
    spec = {**base, "chunk": chunk, "sample_rate": None, "mesh_shape": [data, model]}
    spec["classes"] = classes
    spec["steps"] = args.steps
    loadavg = os.getloadavg()
    t0 = time.perf_counter()
    r = _subprocess("run-steps", spec)
    r["wall_s"] = time.perf_counter() - t0
    r["loadavg_before"], r["loadavg_after"] = loadavg, os.getloadavg()
    runs.append(r)
    print(
      f"step C={classes} mesh ({data}, {model}) chunk {chunk} (0 = materialised): median "
      f"{r['median_step_s']:.2f} s/step (steps {[round(t, 2) for t in r['step_s']]}, warm-up "
      f"{r['warmup_s']:.1f} s, init {r['init_s']:.1f} s, compile {r['compile_s']:.1f} s), "
      f"XLA {r['total_bytes'] / MIB:.0f} MiB/device, peak RSS {r['peak_rss_mib']:.0f} MiB "
      f"(after init {r['peak_rss_after_init_mib']:.0f})",
      flush=True,
    )
  info["loadavg_end"] = os.getloadavg()
  return {"machine": info, "step_runs": runs}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--parts", nargs="+", choices=PARTS, default=list(PARTS[:3]), help="'steps' runs only if named"
  )
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--dim", type=int, default=512, help="d of the memory and time parts")
  parser.add_argument("--chunk", type=int, default=8192, help="chunk of the memory/time parts")
  parser.add_argument("--memory-classes", type=int, default=1_000_000)
  parser.add_argument("--time-classes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
  parser.add_argument("--time-losses", nargs="+", default=["softmax", "arcface"])
  parser.add_argument("--budget", type=float, default=60.0, help="timed seconds per (loss, C)")
  parser.add_argument("--max-reps", type=int, default=30)
  parser.add_argument(
    "--variants",
    nargs="*",
    choices=VARIANTS,
    default=[],
    help="softmax only: also time a minimal 2-D class-chunked reference and/or a Liger-style"
    " row-chunked mean loss (gradient formed in the forward pass)",
  )
  parser.add_argument("--liger-rows", type=int, default=32, help="rows per block of 'liger'")
  parser.add_argument("--big-reps", type=int, default=3, help="rounds at C >= 10^6")
  parser.add_argument("--step-dim", type=int, default=128)
  parser.add_argument("--step-mesh", type=int, nargs=2, default=[2, 4], metavar=("DATA", "MODEL"))
  parser.add_argument("--step-chunk", type=int, default=8192)
  parser.add_argument("--sample-rate", type=float, default=0.1)
  parser.add_argument(
    "--fit-classes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000]
  )
  parser.add_argument("--chunk-sweep", type=int, nargs="*", default=[2048, 8192, 32768])
  parser.add_argument("--step-classes", type=int, default=10_000_000)
  parser.add_argument("--host-gib", type=float, default=24.0)
  parser.add_argument("--device-gib", type=float, default=24.0)
  parser.add_argument(
    "--run-mesh", nargs="+", default=["2,4"], help="meshes of the 'steps' part, as DATA,MODEL"
  )
  parser.add_argument("--run-classes", type=int, nargs="+", default=[10_000_000])
  parser.add_argument(
    "--run-chunks", type=int, nargs="+", default=[8192], help="0 runs the materialised head"
  )
  parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up")
  parser.add_argument("--json", default=None)
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  parser.add_argument("--worker-spec", help=argparse.SUPPRESS)
  parser.add_argument("--out", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)

  if args.worker:
    spec = json.loads(args.worker_spec)
    common = (spec["classes"], spec["mesh_shape"], spec["chunk"], spec["sample_rate"])
    common += (spec["dim"], spec["batch"])
    if args.worker == "step-memory":
      result = worker_step_memory(*common)
    else:
      result = worker_run_steps(*common, spec["steps"])
    with open(args.out, "w") as f:
      json.dump(result, f)
    return

  payload = {"benchmark": "streamed_head"}
  if args.json and os.path.exists(args.json):
    with open(args.json) as f:
      payload = json.load(f)
  run = {"memory": part_memory, "time": part_time, "scale": part_scale, "steps": part_steps}
  for part in args.parts:
    command = "python -m experiments.benchmarks.streamed_head " + " ".join(
      sys.argv[1:] if argv is None else argv
    )
    payload[part] = {"command": command, **run[part](args)}
    if args.json:
      os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
      with open(args.json, "w") as f:
        json.dump(payload, f, indent=1)
      print(f"wrote {args.json}", flush=True)


if __name__ == "__main__":
  main()
