"""Benchmark 3: images/s of the full train step, per loss, and the input pipeline.

Uses the training code as is: ``margin_jax.training.train.create_model``,
``create_train_state``, ``train_step`` under ``devices.parallelize`` (pmap,
donated state) and ``objectives.get_objective``; nothing here re-implements
the step. The step includes the on-device preprocessing (``cifar_plus``: mean
subtraction, pad-4 random crop, flip), forward, loss, backward and the SGD
(momentum, weight decay) update, for the L-Softmax CIFAR-10 architecture
(Table 1) at batch 256.

Three measurements:
  * compile time of each loss's step (lower + compile);
  * images/s of each loss's step on one fixed device batch, all losses timed
    round-robin in the same process, with the ratio to softmax's step;
  * with ``--pipeline``: softmax's step fed by the real pipeline
    (``data.train_batches`` over CIFAR-10, host shuffling + ``put_batch``)
    against the same step on a fixed batch, interleaved block by block.

  .venv/bin/python -m experiments.benchmarks.train_step --width 0.25 --pipeline --json results/train_step_cpu.json
  .venv/bin/python -m experiments.benchmarks.train_step --width 1.0 --losses softmax l_softmax noisy_softmax --json results/train_step_paper.json
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import numpy as np

from experiments.benchmarks import _harness
from experiments.configs import cifar10_cpu
from experiments.configs import lsoftmax_cifar10
from margin_jax import data
from margin_jax import losses
from margin_jax.data import transforms
from margin_jax.training import devices
from margin_jax.training import objectives
from margin_jax.training import train

ARCHITECTURE = "lsoftmax_cifar10"
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
# The seed losses of the five papers plus the baselines the papers compare.
DEFAULT_LOSSES = [name for name in objectives.LOSSES]


CPU_WIDTH = cifar10_cpu.get_config().width  # 0.25: the cpu protocol (configs/cifar10_cpu.py)
PAPER_WIDTH = lsoftmax_cifar10.get_config().width  # 1.0: L-Softmax Table 1


def make_config(loss: str, width: float, batch: int):
  """The paper protocol's config (configs/lsoftmax_cifar10.py) at ``width``."""
  config = lsoftmax_cifar10.get_config()
  assert config.model == ARCHITECTURE and config.preprocess == "cifar_plus"
  config.width = width
  config.batch_size = batch
  config.loss = loss
  config.num_classifiers = 2 if losses.TABLE[loss].inputs == "stacked" else 0
  if losses.TABLE[loss].lambda_schedule:  # the pure margin (lambda is a traced scalar either way)
    config.loss_kwargs[loss].lam.base = 0.0
  return config


def build_step(loss: str, width: float, batch: int, mean, seed: int = 0):
  """(jitted pmapped step, replicated state) exactly as train_and_evaluate builds them."""
  config = make_config(loss, width, batch)
  objective = objectives.get_objective(config)
  preprocess = functools.partial(transforms.preprocess, recipe=config.preprocess, mean=mean)
  model = train.create_model(config, NUM_CLASSES, objective=objective)
  init_key, train_key = jax.random.split(jax.random.key(seed))
  state, _ = train.create_train_state(config, model, IMAGE_SHAPE, init_key, objective=objective)
  p_train = devices.parallelize(
    functools.partial(
      train.train_step,
      objective=objective,
      preprocess=preprocess,
      key=train_key,
    ),
    donate_state=True,
  )
  return p_train, devices.replicate(state)


def random_batch(batch: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  n = devices.local_device_count()
  return {
    "image": rng.integers(0, 256, (n, batch // n, *IMAGE_SHAPE), dtype=np.uint8),
    "label": rng.integers(0, NUM_CLASSES, (n, batch // n)).astype(np.int32),
  }


def time_losses(losses, width, batch, mean, budget_s, max_reps):
  host_batch = random_batch(batch)
  device_batch = devices.put_batch(host_batch)
  steps, states, compile_s = {}, {}, {}
  for loss in losses:
    p_train, state = build_step(loss, width, batch, mean)
    t0 = time.perf_counter()
    p_train.lower(state, device_batch).compile()
    compile_s[loss] = time.perf_counter() - t0
    steps[loss], states[loss] = p_train, state
    print(f"  compiled {loss}: {compile_s[loss]:.1f} s", flush=True)

  def run(loss):
    states[loss], metrics = steps[loss](states[loss], device_batch)
    jax.block_until_ready(metrics)

  fns = {loss: functools.partial(run, loss) for loss in losses}
  cpu: dict[str, list[float]] = {}
  times = _harness.interleaved(
    fns, warmup=1, min_reps=3, max_reps=max_reps, budget_s=budget_s, cpu_times=cpu
  )
  base = "softmax" if "softmax" in times else losses[0]
  out = {}
  for loss in losses:
    out[loss] = {
      "compile_s": compile_s[loss],
      "step_ms": 1e3 * _harness.median(times[loss]),
      "images_per_s": batch / _harness.median(times[loss]),
      "ratio_to_softmax": _harness.paired_ratio(times[loss], times[base]),
      "cpu_ratio_to_softmax": _harness.paired_ratio(cpu[loss], cpu[base]),
      "reps": len(times[loss]),
    }
  return out


def time_pipeline(width, batch, mean, images, labels, blocks, steps_per_block):
  """softmax's step fed by data.train_batches vs the same step on one fixed batch."""
  p_train, state = build_step("softmax", width, batch, mean)
  fixed = devices.put_batch(random_batch(batch))
  state, _ = p_train(state, fixed)  # compile + warm-up

  batches = data.endless_train_batches(
    images, labels, batch_size=batch, num_devices=devices.local_device_count(), seed=0
  )
  fed, alone = [], []
  for _ in range(blocks):
    t0 = time.perf_counter()
    for _ in range(steps_per_block):
      state, metrics = p_train(state, devices.put_batch(next(batches)))
    jax.block_until_ready(metrics)
    fed.append((time.perf_counter() - t0) / steps_per_block)
    t0 = time.perf_counter()
    for _ in range(steps_per_block):
      state, metrics = p_train(state, fixed)
    jax.block_until_ready(metrics)
    alone.append((time.perf_counter() - t0) / steps_per_block)
  # The host side alone: how fast the pipeline yields device batches.
  t0 = time.perf_counter()
  n = 0
  for _ in range(steps_per_block * 2):
    jax.block_until_ready(devices.put_batch(next(batches)))
    n += 1
  host_s = (time.perf_counter() - t0) / n
  return {
    "fed_images_per_s": batch / _harness.median(fed),
    "fixed_images_per_s": batch / _harness.median(alone),
    "fed_over_fixed_time": _harness.paired_ratio(fed, alone),
    "pipeline_only_images_per_s": batch / host_s,
    "blocks": blocks,
    "steps_per_block": steps_per_block,
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--width",
    type=float,
    default=CPU_WIDTH,
    help=f"filter multiplier (cpu protocol {CPU_WIDTH}; paper {PAPER_WIDTH})",
  )
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--losses", nargs="+", default=DEFAULT_LOSSES)
  parser.add_argument("--budget", type=float, default=240.0, help="timed seconds in all")
  parser.add_argument("--max-reps", type=int, default=20)
  parser.add_argument(
    "--pipeline", action="store_true", help="also time softmax's step fed by the CIFAR-10 pipeline"
  )
  parser.add_argument("--pipeline-blocks", type=int, default=5)
  parser.add_argument("--pipeline-steps", type=int, default=4)
  parser.add_argument("--json", default=None)
  args = parser.parse_args(argv)

  info = _harness.machine_info()
  info["devices"] = [str(d) for d in jax.local_devices()]
  print(
    f"# train step, {ARCHITECTURE} width {args.width}, batch {args.batch}; "
    f"{info.get('cpu')}, {info['cores']} cores, load {info['loadavg_start']}"
  )
  images = labels = None
  if args.pipeline:
    dataset = data.load_arrays("cifar10_jpeg")
    images, labels = dataset["train"]
    mean = np.asarray(transforms.pixel_mean(images))
  else:
    mean = np.full(IMAGE_SHAPE, 120.0, np.float32)  # the mean's value does not change the cost
  results = {
    "losses": time_losses(args.losses, args.width, args.batch, mean, args.budget, args.max_reps)
  }
  rows = [
    [
      loss,
      r["compile_s"],
      r["step_ms"],
      r["images_per_s"],
      r["ratio_to_softmax"],
      r["cpu_ratio_to_softmax"],
      r["reps"],
    ]
    for loss, r in results["losses"].items()
  ]
  print(
    f"\ntrain step, width {args.width}, batch {args.batch} (step time / softmax step time: "
    "median of paired rounds; target <= 1.03)"
  )
  print(
    _harness.format_table(
      [
        "loss",
        "compile s",
        "step ms",
        "images/s",
        "time / softmax",
        "cpu time / softmax",
        "rounds",
      ],
      rows,
    )
  )
  if args.pipeline:
    results["pipeline"] = p = time_pipeline(
      args.width, args.batch, mean, images, labels, args.pipeline_blocks, args.pipeline_steps
    )
    print("\nsoftmax step fed by the real CIFAR-10 pipeline (cifar_plus augmentation on device)")
    print(
      _harness.format_table(
        ["fed images/s", "fixed-batch images/s", "fed / fixed time", "pipeline alone images/s"],
        [
          [
            p["fed_images_per_s"],
            p["fixed_images_per_s"],
            p["fed_over_fixed_time"],
            p["pipeline_only_images_per_s"],
          ]
        ],
      )
    )
  _harness.write_json(
    args.json,
    {
      "benchmark": "train_step",
      "width": args.width,
      "batch": args.batch,
      "architecture": ARCHITECTURE,
      "machine": info,
      "results": results,
    },
  )


if __name__ == "__main__":
  main()
