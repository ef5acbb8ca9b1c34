"""`make demo`: softmax vs L-Softmax vs Virtual Softmax on MNIST, on a CPU.

Trains the L-Softmax MNIST network (Table 1) at 1/8 of its width for 1,000
iterations of batch 64 with each loss (experiments/configs/mnist_cpu.py),
prints each loss's test error and wall time, and plots test error over
training. MNIST is prepared from ``$MARGIN_JAX_DATA`` when that holds the raw
files (the Makefile points it at ../shared/datasets), else downloaded.

  .venv/bin/python -m experiments.demo [--steps N] [--plot PATH]
"""

import argparse
import json
import os
import sys
import tempfile
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

from experiments.configs import mnist_cpu  # noqa: E402
from margin_jax import training  # noqa: E402
from margin_jax.data import download  # noqa: E402

RUNS = (
  ("softmax", {"loss": "softmax"}),
  ("L-Softmax (m=2)", {"loss": "l_softmax", "loss_kwargs.l_softmax.margin": 2}),
  ("Virtual Softmax", {"loss": "virtual_softmax"}),
)


def _test_curve(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return [(r["step"], 100 * r["test_error"]) for r in rows if "test_error" in r]


def _plot(curves, config, path):
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, curve in curves.items():
    steps, errors = zip(*curve)
    ax.plot(steps, errors, marker="o", label=f"{name} ({errors[-1]:.2f}%)")
  ax.set_yscale("log")
  plain = ticker.FuncFormatter(lambda value, _: f"{value:g}")
  ax.yaxis.set_major_formatter(plain)
  ax.yaxis.set_minor_formatter(plain)
  ax.set_xlabel("training step (batch %d)" % config.batch_size)
  ax.set_ylabel("MNIST test error (%, log scale)")
  ax.set_title(f"L-Softmax MNIST net, width x{config.width}")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--steps", type=int, default=None, help="training iterations per loss (default: config)"
  )
  parser.add_argument(
    "--plot",
    default="workdirs/demo_mnist_test_error.png",
    help="where to write the test-error plot (PNG)",
  )
  args = parser.parse_args()
  rows, curves = [], {}
  with tempfile.TemporaryDirectory() as root:
    for name, overrides in RUNS:
      config = mnist_cpu.get_config()
      config.update_from_flattened_dict(overrides)
      if args.steps:
        config.num_train_steps = args.steps
        config.lr_boundaries = (round(args.steps * 2 / 3), round(args.steps * 5 / 6))
      print(f"== {name}: {config.num_train_steps} steps", flush=True)
      workdir = os.path.join(root, config.loss)
      start = time.time()
      try:
        training.train_and_evaluate(config, workdir)
      except (download.ChecksumError, ConnectionError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
      curves[name] = _test_curve(workdir)
      rows.append((name, curves[name][-1][1], time.time() - start))
  os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
  _plot(curves, config, args.plot)
  print(
    f"\nMNIST, L-Softmax Table 1 net at width x{config.width}, "
    f"{config.num_train_steps} steps of batch {config.batch_size}:"
  )
  print(f"{'loss':<18}{'test error %':>14}{'time s':>10}")
  for name, error, seconds in rows:
    print(f"{name:<18}{error:>14.2f}{seconds:>10.1f}")
  print(f"\nTest error over training: {os.path.abspath(args.plot)}")


if __name__ == "__main__":
  main()
