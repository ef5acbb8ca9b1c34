"""Evaluates a trained work directory: test error and retrieval metrics.

  python -m experiments.evaluate --workdir DIR [--data-dir DIR]

Restores the latest checkpoint (`margin_jax.training.restore`), classifies the
test split as the run's loss does and ranks the test embeddings by cosine
similarity (precision@1, R-precision, MAP@R; `margin_jax.metrics`).
"""

import argparse
import json

import numpy as np

from margin_jax import metrics
from margin_jax import models
from margin_jax import training


def evaluate(workdir: str, *, data_dir: str | None = None) -> dict:
  """Test error and retrieval metrics of the run in ``workdir``."""
  run = training.restore(workdir, data_dir=data_dir)
  images, labels = run.dataset["test"]
  outputs = run.outputs(images)
  predictions = np.asarray(models.test_logits(outputs, run.config.loss)).argmax(-1)
  retrieval = metrics.retrieval_metrics(outputs["features"], labels)
  return {
    "step": run.step,
    "loss": run.config.loss,
    "dataset": run.config.dataset,
    "test_error": float(np.mean(predictions != labels)),
    **{k: float(v) for k, v in retrieval.items()},
  }


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m experiments.evaluate", description=__doc__)
  parser.add_argument("--workdir", required=True, help="the run's work directory")
  parser.add_argument("--data-dir", default=None, help="tfds data directory")
  args = parser.parse_args(argv)
  print(json.dumps(evaluate(args.workdir, data_dir=args.data_dir), indent=2))


if __name__ == "__main__":
  main()
