"""`make demo`: softmax vs L-Softmax vs Virtual Softmax on MNIST, a short run.

Trains the L-Softmax MNIST network (Table 1) at 1/8 of its width for 200
iterations with each loss (experiments/configs/mnist_cpu.py) and prints
test error and wall time. MNIST comes from tfds, or is prepared offline from
``$MARGIN_JAX_DATA`` (the Makefile points it at ../shared/datasets).

  .venv/bin/python -m experiments.demo [--steps N]
"""

import argparse
import json
import os
import tempfile
import time

# Cache compiled programs across the runs (same network, same eval step).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "margin_jax_xla"))

from experiments.configs import mnist_cpu  # noqa: E402
from margin_jax import training  # noqa: E402

RUNS = (
    ("softmax", {"loss": "softmax"}),
    ("L-Softmax (m=2)", {"loss": "l_softmax", "margin": 2}),
    ("Virtual Softmax", {"loss": "virtual_softmax"}),
)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=None,
                      help="training iterations per loss (default: config)")
  args = parser.parse_args()
  rows = []
  with tempfile.TemporaryDirectory() as root:
    for name, overrides in RUNS:
      config = mnist_cpu.get_config()
      config.update(overrides)
      if args.steps:
        config.num_train_steps = config.eval_every_steps = args.steps
      print(f"== {name}: {config.num_train_steps} steps", flush=True)
      workdir = os.path.join(root, config.loss)
      start = time.time()
      training.train_and_evaluate(config, workdir)
      seconds = time.time() - start
      with open(os.path.join(workdir, "metrics.jsonl")) as f:
        last = [line for line in f if "test_error" in line][-1]
      rows.append((name, 100 * json.loads(last)["test_error"],
                   seconds))
  print(f"\nMNIST, L-Softmax Table 1 net at width x{config.width}, "
        f"{config.num_train_steps} steps of batch {config.batch_size}:")
  print(f"{'loss':<18}{'test error %':>14}{'time s':>10}")
  for name, error, seconds in rows:
    print(f"{name:<18}{error:>14.2f}{seconds:>10.1f}")


if __name__ == "__main__":
  main()
