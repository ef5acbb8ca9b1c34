r"""Tables and figures of the reproduction, from the run records alone.

  python -m experiments.report

Rewrites the generated block of ``experiments/RESULTS.md`` (between the
``report`` markers) and the figures in ``experiments/results/`` from
``experiments/results/runs/``; no training.
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from experiments import campaign  # noqa: E402
from experiments import records  # noqa: E402
from experiments import stats  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
RESULTS_MD = RESULTS.parent / "RESULTS.md"
BEGIN, END = "<!-- report:begin -->", "<!-- report:end -->"
RETRIEVAL = (("precision_at_1", "P@1"), ("mean_average_precision_at_r", "MAP@R"))


def _pct(mean_sd) -> str:
  return f"{100 * mean_sd[0]:.2f} ± {100 * mean_sd[1]:.2f}"


def _interval(difference) -> str:
  if difference is None:
    return "-"
  mean, low, high, _ = difference
  return f"{100 * mean:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"


def table_markdown(name: str, runs_dir=records.RUNS) -> str:
  """The markdown table of one campaign table: every run against the baseline."""
  table = campaign.TABLES[name]
  on_record = records.load_table(name, runs_dir)
  base = {s: r["test_error"] for s, r in on_record.get(table.baseline, {}).items()}
  lines = [
    f"**{name}** ({table.paper}; config `{table.config}`). Test error in %,"
    f" mean ± sd over seeds; paired difference to {table.baseline} in"
    " percentage points with its 95% interval; retrieval on the test features"
    " by cosine similarity (mean over seeds).",
    "",
    "| run | seeds | test error % | train error % | P@1 | MAP@R | vs "
    f"{table.baseline} (pp) [95% CI] | verdict |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ]
  for run in table.runs:
    seeds = on_record.get(run, {})
    if not seeds:
      lines.append(f"| {run} | 0 | not run | | | | | |")
      continue
    errors = {s: r["test_error"] for s, r in seeds.items()}
    retrieval = [
      f"{np.mean([r['retrieval'][key] for r in seeds.values()]):.4f}" for key, _ in RETRIEVAL
    ]
    if run == table.baseline:
      difference, verdict = None, "baseline"
    else:
      difference = stats.paired_difference(errors, base)
      verdict = stats.verdict(difference, expected="lower")
    lines.append(
      f"| {run} | {sorted(seeds)} | {_pct(stats.mean_sd(list(errors.values())))} |"
      f" {_pct(stats.mean_sd([r['train_error'] for r in seeds.values()]))} |"
      f" {' | '.join(retrieval)} | {_interval(difference)} | {verdict} |"
    )
  return "\n".join(lines)


def features_figure(name: str, out: pathlib.Path, runs_dir=records.RUNS, seed: int = 0) -> None:
  """One scatter panel per run: the 2-D test features of ``seed``, by class."""
  table = campaign.TABLES[name]
  on_record = records.load_table(name, runs_dir)
  panels = [run for run in table.runs if seed in on_record.get(run, {})]
  if not panels:
    return
  fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6), squeeze=False)
  colors = plt.get_cmap("tab10")
  for ax, run in zip(axes[0], panels):
    record = on_record[run][seed]
    features = np.asarray(record["test_features"])
    labels = np.asarray(record["test_labels"])
    for c in range(10):
      points = features[labels == c]
      ax.scatter(points[:, 0], points[:, 1], s=1, color=colors(c), label=str(c), rasterized=True)
    ax.set_title(f"{run}\ntest error {100 * record['test_error']:.2f}%", fontsize=9)
    ax.set_xlabel("feature 1")
    ax.set_ylabel("feature 2")
    ax.tick_params(labelsize=7)
  axes[0][-1].legend(
    title="class", markerscale=8, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5)
  )
  fig.suptitle(f"MNIST test features, 2-D feature net, seed {seed}")
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  plt.close(fig)


# Curve key -> (axis label, y scale, value shown). The records' curves are the
# training log's: batch statistics every log step, test error every eval.
# Percentages on a log axis get plain ticks (7, 10, 15), not 7 x 10^0.
PANELS = {
  "test_error": ("test error %", "log", lambda v: 100 * v),
  "accuracy": ("training error % (one batch)", "log", lambda v: 100 * (1 - v)),
  "lambda": ("L-Softmax lambda", "log", lambda v: v),
  "saturated": ("saturated examples % (P(y|x) > 0.99)", "linear", lambda v: 100 * v),
  "p_target": ("mean P(y|x)", "linear", lambda v: v),
  "hsic": ("HSIC diversity (eq 6)", "log", lambda v: v),
}


def _mean_curve(seeds: dict, key: str):
  """Steps where ``key`` was logged, and its mean over the seeds' records."""
  steps, values = None, []
  for seed, record in seeds.items():
    points = [
      (s, v) for s, v in zip(record["curves"]["step"], record["curves"][key]) if v is not None
    ]
    logged_at = [s for s, _ in points]
    if steps is not None and logged_at != steps:
      raise ValueError(
        f"run {record['run']!r} seed {seed}: {key!r} is logged at steps "
        f"{logged_at}, the other seeds' at {steps}; retrain that run"
      )
    steps = logged_at
    values.append([v for _, v in points])
  return steps, np.mean(values, axis=0)


def curves_figure(name: str, out: pathlib.Path, runs_dir=records.RUNS) -> None:
  """One panel per curve of the table (test error first), mean over seeds."""
  table = campaign.TABLES[name]
  on_record = records.load_table(name, runs_dir)
  if not on_record:
    return
  fig, axes = plt.subplots(
    1, len(table.curves), figsize=(5.2 * len(table.curves) + 1.8, 4), squeeze=False
  )
  colors = plt.get_cmap("tab10" if len(table.runs) <= 10 else "tab20")
  for ax, key in zip(axes[0], table.curves):
    label, scale, shown = PANELS[key]
    for i, run in enumerate(table.runs):
      seeds = on_record.get(run, {})
      if seeds and all(key in r["curves"] for r in seeds.values()):
        steps, mean = _mean_curve(seeds, key)
        marker = "o" if key == "test_error" else None
        ax.plot(steps, shown(mean), marker=marker, color=colors(i), label=f"{run} (n={len(seeds)})")
    ax.set_yscale(scale)
    if scale == "log" and "%" in label:
      low, high = ax.get_ylim()
      subs = (
        (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if high / low > 5 else (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)
      )
      ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=subs))
      ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
      ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("training step")
    ax.set_ylabel(label + (" (log scale)" if scale == "log" else ""))
    ax.grid(True, which="both", alpha=0.3)
  fig.legend(
    *axes[0][0].get_legend_handles_labels(),
    title="mean over seeds",
    fontsize=8,
    loc="center left",
    bbox_to_anchor=(1.0, 0.5),
  )
  fig.suptitle(f"{name}: {table.paper}", fontsize=9)
  fig.tight_layout()
  fig.savefig(out, dpi=110, bbox_inches="tight")
  plt.close(fig)


def report(runs_dir=records.RUNS, results_md=RESULTS_MD, out_dir=RESULTS) -> None:
  """Rewrites the generated block of RESULTS.md and every figure."""
  blocks = []
  for name, table in campaign.TABLES.items():
    if table.full_protocol and not records.load_table(name, runs_dir):
      continue  # An accelerator's table (experiments.paper_protocol): shown once on record.
    if table.features:
      features_figure(name, out_dir / f"{name}.png", runs_dir)
    curves_figure(name, out_dir / f"{name}_curves.png", runs_dir)
    blocks.append(table_markdown(name, runs_dir))
  text = pathlib.Path(results_md).read_text()
  head, rest = text.split(BEGIN)
  _, tail = rest.split(END)
  generated = "\n\n".join(blocks)
  pathlib.Path(results_md).write_text(f"{head}{BEGIN}\n{generated}\n{END}{tail}")


if __name__ == "__main__":
  report()
