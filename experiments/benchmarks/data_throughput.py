"""Throughput of the training input path on CIFAR-10-shaped data.

Measures images/s of `train_batches` (host: permutation, gather, reshape to
``[devices, per_device, 32, 32, 3]``) feeding a pmapped ``cifar_plus``
`preprocess` (device: scale, mean subtraction, pad-crop-flip), from in-memory
uint8 arrays of 50,000 random CIFAR-shaped images. Also reports each half alone.

Command::

  .venv/bin/python experiments/benchmarks/data_throughput.py [--steps 300]
"""

import argparse
import itertools
import time

import jax
import numpy as np

from margin_jax import data


def _images_per_second(fn, steps: int, batch_size: int) -> float:
  fn(5)  # Warm-up and compilation.
  start = time.perf_counter()
  fn(steps)
  return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch-size", type=int, default=256)
  parser.add_argument("--steps", type=int, default=300)
  args = parser.parse_args()
  num_devices = jax.local_device_count()
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (50_000, 32, 32, 3), np.uint8)
  labels = rng.integers(0, 10, 50_000).astype(np.int32)
  mean = data.pixel_mean(images)
  augment = jax.pmap(
    lambda key, x, mean: data.transforms.preprocess(
      key, x, recipe="cifar_plus", mean=mean, train=True
    ),
    in_axes=(0, 0, None),
  )

  def batches(steps):
    return itertools.islice(
      data.endless_train_batches(
        images, labels, batch_size=args.batch_size, num_devices=num_devices, seed=0
      ),
      steps,
    )

  def assembly_only(steps):
    for _ in batches(steps):
      pass

  fixed = next(batches(1))["image"]

  def augment_only(steps):
    for step in range(steps):
      out = augment(jax.random.split(jax.random.key(step), num_devices), fixed, mean)
    out.block_until_ready()

  def pipeline(steps):
    for step, batch in enumerate(batches(steps)):
      keys = jax.random.split(jax.random.key(step), num_devices)
      out = augment(keys, batch["image"], mean)
    out.block_until_ready()

  print(
    f"devices: {num_devices} x {jax.devices()[0].device_kind}, "
    f"batch {args.batch_size}, {args.steps} steps"
  )
  for name, fn in (
    ("batch assembly", assembly_only),
    ("cifar_plus on device", augment_only),
    ("assembly + cifar_plus", pipeline),
  ):
    print(f"{name:>22}: {_images_per_second(fn, args.steps, args.batch_size):,.0f} images/s")


if __name__ == "__main__":
  main()
