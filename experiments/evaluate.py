"""Evaluates a trained work directory: test error and retrieval metrics, or
face verification on pair lists.

  python -m experiments.evaluate --workdir DIR [--data-dir DIR]
  python -m experiments.evaluate --workdir DIR --pairs lfw.bin [cfp_fp.bin pairs.txt ...] [--pca DIM]

Restores the latest checkpoint (`margin_jax.training.restore`). Without
``--pairs`` it classifies the test split as the run's loss does and ranks the
test embeddings by cosine similarity (precision@1, R-precision, MAP@R;
`margin_jax.metrics`) and prints them as JSON. With ``--pairs`` it prints one
line per verification set (a ``.bin`` or LFW's ``pairs.txt``), starting with
the file's stem: 10-fold accuracy ± its standard deviation, TAR at FAR 1e-3
and 1e-4 and the EER, each image embedded with its mirror
(`margin_jax.training.verification`); ``--pca DIM`` scores the accuracy after
a PCA fitted on the other folds, as L-Softmax and Noisy Softmax do.
"""

import argparse
import json
import pathlib

import numpy as np

from margin_jax import metrics
from margin_jax import models
from margin_jax import training
from margin_jax.data import faces
from margin_jax.training import verification


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


def evaluate_pairs(workdir: str, pairs: list[str], *, pca_dim: int | None = None) -> list[str]:
  """One `verification.report_line` per pair list, for the run in ``workdir``."""
  run = training.restore(workdir)
  lines = []
  for path in pairs:
    images, same, folds = faces.load_pairs(path)
    numbers = verification.report(run.embed(images, flip=True), same, folds, pca_dim=pca_dim)
    lines.append(verification.report_line(pathlib.Path(path).stem, numbers))
  return lines


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m experiments.evaluate", description=__doc__)
  parser.add_argument("--workdir", required=True, help="the run's work directory")
  parser.add_argument("--data-dir", default=None, help="tfds data directory")
  parser.add_argument("--pairs", nargs="+", help="verification sets: .bin files or pairs.txt")
  parser.add_argument(
    "--pca", type=int, default=None, metavar="DIM", help="accuracy after a per-fold PCA to DIM"
  )
  args = parser.parse_args(argv)
  if args.pairs:
    print("\n".join(evaluate_pairs(args.workdir, args.pairs, pca_dim=args.pca)))
  else:
    print(json.dumps(evaluate(args.workdir, data_dir=args.data_dir), indent=2))


if __name__ == "__main__":
  main()
