"""A training run's curves, plotted from its ``metrics.jsonl``.

  python -m experiments.curves --workdir DIR      (writes DIR/curves.png)

`experiments.train` writes the figure when a run ends or stops. One panel per
logged quantity: the loss, the training accuracy, the test error, and, for a
run scored on verification sets (``config.val_pairs``), their 10-fold
accuracy and TAR at FAR 1e-3, one line per set.
"""

import argparse
import json
import os
import pathlib

# (panel title, metric key, or its suffix after each verification set's name)
PANELS = (
  ("loss", "loss"),
  ("training accuracy", "accuracy"),
  ("test error", "test_error"),
)
SET_PANELS = (
  ("verification accuracy (10-fold)", "_accuracy"),
  ("TAR@FAR=1e-3", "_tar_far_1e-3"),
)


def panels(rows: list[dict]) -> list[tuple[str, list[tuple[str, list, list]]]]:
  """``[(title, [(label, steps, values), ...]), ...]`` of the logged lines
  ``rows``; a panel no row logs is left out."""
  sets = sorted(
    {key.removesuffix("_accuracy") for row in rows for key in row if key.endswith("_accuracy")}
  )
  wanted = [(title, [(key, key)]) for title, key in PANELS]
  wanted += [(title, [(name, name + suffix) for name in sets]) for title, suffix in SET_PANELS]
  drawn = []
  for title, lines in wanted:
    series = []
    for label, key in lines:
      points = [(row["step"], row[key]) for row in rows if row.get(key) is not None]
      if points:
        series.append((label, *map(list, zip(*points))))
    if series:
      drawn.append((title, series))
  return drawn


def plot(workdir) -> pathlib.Path:
  """Writes ``workdir/curves.png`` (atomically) and returns its path."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  workdir = pathlib.Path(workdir)
  with open(workdir / "metrics.jsonl") as f:
    # A line without its newline is one an interrupted run left half-written.
    drawn = panels([json.loads(line) for line in f if line.endswith("\n")])
  fig, axes = plt.subplots(1, max(len(drawn), 1), figsize=(4 * max(len(drawn), 1), 3.2))
  for ax, (title, series) in zip(getattr(axes, "flat", [axes]), drawn):
    for label, steps, values in series:
      ax.plot(steps, values, marker=".", label=label)
    ax.set_title(title)
    ax.set_xlabel("step")
    if title in dict(SET_PANELS):  # a line per verification set
      ax.legend(fontsize="small")
  fig.tight_layout()
  path = workdir / "curves.png"
  fig.savefig(f"{path}.tmp.png", dpi=100)
  plt.close(fig)
  os.replace(f"{path}.tmp.png", path)
  return path


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m experiments.curves", description=__doc__)
  parser.add_argument("--workdir", required=True, help="the run's work directory")
  print(plot(parser.parse_args(argv).workdir))


if __name__ == "__main__":
  main()
