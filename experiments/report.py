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
SUMMARY_BEGIN, SUMMARY_END = "<!-- summary:begin -->", "<!-- summary:end -->"
RETRIEVAL = (("precision_at_1", "P@1"), ("mean_average_precision_at_r", "MAP@R"))


def _pct(mean_sd) -> str:
  return f"{100 * mean_sd[0]:.2f} ± {100 * mean_sd[1]:.2f}"


def _interval(difference) -> str:
  if difference is None:
    return "-"
  mean, low, high, _ = difference
  return f"{100 * mean:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"


def _errors(seeds: dict, key: str = "test_error") -> dict:
  return {s: r[key] for s, r in seeds.items()}


def compare(run_seeds: dict, versus_seeds: dict, paper=None, seeds=None):
  """The paired difference of ``run_seeds`` to ``versus_seeds`` (``{seed:
  record}``, only ``seeds`` if given), the paper's effect scaled to the
  compared run's mean error (or None) and the verdict."""
  if seeds is not None:
    run_seeds = {s: r for s, r in run_seeds.items() if s in seeds}
  difference = stats.paired_difference(_errors(run_seeds), _errors(versus_seeds))
  fit_gap = stats.paired_difference(
    _errors(run_seeds, "train_error"), _errors(versus_seeds, "train_error")
  )
  effect = None
  if paper is not None and difference is not None:
    paired = set(run_seeds) & set(versus_seeds)
    base = np.mean([versus_seeds[s]["test_error"] for s in paired])
    effect = stats.scaled_effect(base, paper.baseline, paper.run)
  verdict = stats.verdict(
    difference, paper_effect=effect, fit_gap=None if fit_gap is None else fit_gap[0]
  )
  return difference, effect, verdict


def _effect(effect) -> str:
  return "-" if effect is None else f"{100 * effect:+.2f}"


def table_markdown(name: str, runs_dir=records.RUNS) -> str:
  """The markdown table of one campaign table: every run against the
  baseline, its further comparisons, and its fresh seeds alone."""
  table = campaign.TABLES[name]
  on_record = records.load_table(name, runs_dir)
  base = on_record.get(table.baseline, {})
  lines = [
    f"**{name}** ({table.paper}; config `{table.config}`). Test error in %,"
    f" mean ± sd over seeds; paired difference to {table.baseline} in"
    " percentage points with its 95% interval; the paper's effect on its own"
    f" {table.baseline} scaled to this one (pp); retrieval on the test features"
    " by cosine similarity (mean over seeds).",
    "",
    "| run | seeds | test error % | train error % | P@1 | MAP@R | vs "
    f"{table.baseline} (pp) [95% CI] | paper (pp) | verdict |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ]
  for run in table.runs:
    seeds = on_record.get(run, {})
    label = f"{run} (post hoc)" if run in table.post_hoc else run
    if not seeds:
      lines.append(f"| {label} | 0 | not run | | | | | | |")
      continue
    retrieval = [
      f"{np.mean([r['retrieval'][key] for r in seeds.values()]):.4f}" for key, _ in RETRIEVAL
    ]
    if run == table.baseline:
      difference, effect, verdict = None, None, "baseline"
    else:
      difference, effect, verdict = compare(seeds, base, table.paper_numbers.get(run))
    lines.append(
      f"| {label} | {sorted(seeds)} | {_pct(stats.mean_sd(list(_errors(seeds).values())))} |"
      f" {_pct(stats.mean_sd([r['train_error'] for r in seeds.values()]))} |"
      f" {' | '.join(retrieval)} | {_interval(difference)} | {_effect(effect)} | {verdict} |"
    )
  sources = sorted({f"{run}: {paper.source}" for run, paper in table.paper_numbers.items()})
  if sources:
    lines += ["", "Paper numbers: " + "; ".join(sources) + "."]
  if table.post_hoc:
    lines += [
      "",
      f"Post hoc (settings chosen after seeing this table): {', '.join(table.post_hoc)}.",
    ]
  lines += _unfit_note(table, on_record)
  for run, versus, paper in table.comparisons:
    if run in on_record and versus in on_record:
      difference, effect, verdict = compare(on_record[run], on_record[versus], paper)
      lines += [
        "",
        f"{run} against {versus} ({paper.source}: {paper.baseline} -> {paper.run}):"
        f" {_interval(difference)} pp, paper {_effect(effect)} pp, {verdict}.",
      ]
  fresh = table.confirmation_seeds
  confirmed = [
    run
    for run in table.runs
    if run != table.baseline and fresh and any(s in on_record.get(run, {}) for s in fresh)
  ]
  if confirmed:
    lines += ["", f"On the fresh seeds {list(fresh)} alone:"]
    for run in confirmed:
      difference, effect, verdict = compare(
        on_record[run], base, table.paper_numbers.get(run), seeds=fresh
      )
      lines.append(f"- {run}: {_interval(difference)} pp, {verdict}.")
  return "\n".join(lines)


def _unfit_note(table, on_record) -> list[str]:
  """Where the baseline fits its training set (mean training error <= 0.5%),
  the runs that do not quite (> 0.1%): the run length was chosen on the
  baseline, so theirs may be short of convergence."""
  base = on_record.get(table.baseline, {})
  if not base or np.mean([r["train_error"] for r in base.values()]) > 0.005:
    return []
  unfit = []
  for run in table.runs:
    errors = [r["train_error"] for r in on_record.get(run, {}).values()]
    if errors and np.mean(errors) > 0.001:
      unfit.append(f"{run} {100 * min(errors):.2f}-{100 * max(errors):.2f}%")
  if not unfit:
    return []
  return [
    "",
    f"Convergence caveat: the run length was settled on {table.baseline} alone, which"
    " fits its training set; these runs end with training error above 0.1% (range"
    f" over seeds), so they may be short of converged: {'; '.join(unfit)}.",
  ]


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
  "rho_hat": ("rho-hat (Kobayashi eq 7)", "linear", lambda v: v),
}

# Training dynamics a paper describes, from the logged curves: (table, curve,
# runs, what the paper says). The first run is the baseline of the comparison.
DYNAMICS = (
  (
    "fmnist_subset",
    "p_target",
    ("softmax", "noisy_softmax"),
    "Noisy Softmax delays saturation (Noisy Sec 3, Fig 4): a lower mean P(y|x) early on",
  ),
  (
    "fmnist_subset",
    "rho_hat",
    ("softmax", "uniformity", "uniformity_1", "lsr"),
    "the regulariser and LSR raise the bias rho-hat while softmax lowers it (Kobayashi Fig 3)",
  ),
)
EARLY = 0.2  # "early in training": the first fifth of the logged steps


def _mean_curve(seeds: dict, key: str):
  """Steps where ``key`` was logged, and its mean over the seeds' records. A
  line logged twice with the same values (a run restarted from its start,
  which repeats it exactly) counts once; a step logged with two values, or
  logged at other steps than the other seeds', is an error."""
  steps, values = None, []
  for seed, record in seeds.items():
    curves = record["curves"]
    points = list(dict.fromkeys(zip(curves["step"], curves[key])))
    logged_at = [s for s, v in points if v is not None]
    if len(set(logged_at)) != len(logged_at) or steps is not None and logged_at != steps:
      raise ValueError(
        f"run {record['run']!r} seed {seed}: {key!r} is logged at steps "
        f"{logged_at}, the other seeds' at {steps}; retrain that run"
      )
    steps = logged_at
    values.append([v for _, v in points if v is not None])
  return steps, np.mean(values, axis=0)


def curves_figure(
  name: str, out: pathlib.Path, runs_dir=records.RUNS, curves=None, runs=None
) -> None:
  """One panel per curve of the table (test error first; or ``curves``), mean
  over seeds, one line per run (or per run of ``runs``)."""
  table = campaign.TABLES[name]
  on_record = records.load_table(name, runs_dir)
  curves = curves or table.curves
  runs = runs or tuple(table.runs)
  if not on_record:
    return
  fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves) + 1.8, 4), squeeze=False)
  colors = plt.get_cmap("tab10" if len(table.runs) <= 10 else "tab20")
  for ax, key in zip(axes[0], curves):
    label, scale, shown = PANELS[key]
    for i, run in enumerate(table.runs):
      if run not in runs:
        continue
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


def dynamics_markdown(name, key, runs, claim, out_dir, runs_dir=records.RUNS) -> str:
  """The curve ``key`` of ``runs`` of table ``name``: first and last value and
  early mean (first fifth of the steps) of the mean curve, the early mean's
  paired comparison with the first run, and the figure beside it."""
  on_record = records.load_table(name, runs_dir)
  runs = [run for run in runs if run in on_record]
  if len(runs) < 2:
    return ""
  figure = f"{name}_{key}.png"
  curves_figure(name, out_dir / figure, runs_dir, curves=(key,), runs=runs)
  lines = [f"**{name}: {PANELS[key][0]}** ({claim}; figure `results/{figure}`).", ""]
  early = {}
  for run in runs:
    steps, mean = _mean_curve(on_record[run], key)
    cut = steps[0] + EARLY * (steps[-1] - steps[0])
    early[run] = {
      seed: float(np.mean(_mean_curve({seed: r}, key)[1][np.asarray(steps) <= cut]))
      for seed, r in on_record[run].items()
    }
    line = (
      f"- {run} (n={len(early[run])}): {mean[0]:.3f} at step {steps[0]}, {mean[-1]:.3f} at"
      f" step {steps[-1]}, range {mean.min():.3f}-{mean.max():.3f}; mean over steps <= {cut:g}:"
      f" {np.mean(list(early[run].values())):.3f}"
    )
    if run != runs[0]:
      paired = sorted(set(early[run]) & set(early[runs[0]]))
      lower = sum(early[run][s] < early[runs[0]][s] for s in paired)
      line += f"; against {runs[0]}: lower on {lower}, higher on {len(paired) - lower} paired seeds"
    lines.append(line + ".")
  return "\n".join(lines)


def summary_markdown(runs_dir=records.RUNS) -> str:
  """The opening table, one row per paper (`campaign.CLAIMS`), and what the
  records hold."""
  lines = [
    "| paper | claim | paper's number (%) | here (test error %, paired difference"
    " [95% CI], seeds) | verdict | caveat |",
    "| --- | --- | --- | --- | --- | --- |",
  ]
  for claim in campaign.CLAIMS:
    table = campaign.TABLES[claim.table]
    on_record = records.load_table(claim.table, runs_dir)
    run, base = on_record.get(claim.run, {}), on_record.get(table.baseline, {})
    paper = table.paper_numbers[claim.run]
    difference, effect, verdict = compare(run, base, paper)
    paired = sorted(set(run) & set(base))
    here = "not run"
    if paired:
      here = (
        f"`{claim.table}`: {table.baseline} {100 * np.mean([base[s]['test_error'] for s in paired]):.2f}"
        f" -> {100 * np.mean([run[s]['test_error'] for s in paired]):.2f},"
        f" {_interval(difference)} pp (paper's effect scaled: {_effect(effect)}), {len(paired)} seeds"
      )
    lines.append(
      f"| {claim.paper} | {claim.claim} | {paper.source}: {paper.baseline:.2f} -> {paper.run:.2f} |"
      f" {here} | {verdict} | {claim.caveat} |"
    )
  every = [records.load(f) for f in sorted(pathlib.Path(runs_dir).glob("*.json.gz"))]
  trained = [r for r in every if "same_command_as" not in r]
  hours = sum(r.get("wall_time", 0.0) for r in trained) / 3600
  lines += [
    "",
    f"On record: {len(every)} run records, {len(trained)} of them trained (the others copy a"
    f" run with the same command), {hours:.1f} hours of `wall_time` summed.",
  ]
  return "\n".join(lines)


def _replace_block(text: str, begin: str, end: str, generated: str) -> str:
  head, rest = text.split(begin)
  _, tail = rest.split(end)
  return f"{head}{begin}\n{generated}\n{end}{tail}"


def report(runs_dir=records.RUNS, results_md=RESULTS_MD, out_dir=RESULTS) -> None:
  """Rewrites the generated blocks of RESULTS.md and every figure."""
  blocks = []
  for name, table in campaign.TABLES.items():
    if table.full_protocol and not records.load_table(name, runs_dir):
      continue  # An accelerator's table (experiments.paper_protocol): shown once on record.
    if table.features:
      features_figure(name, out_dir / f"{name}.png", runs_dir)
    curves_figure(name, out_dir / f"{name}_curves.png", runs_dir)
    blocks.append(table_markdown(name, runs_dir))
  blocks += [d for d in (dynamics_markdown(*spec, out_dir, runs_dir) for spec in DYNAMICS) if d]
  text = pathlib.Path(results_md).read_text()
  if SUMMARY_BEGIN in text:
    text = _replace_block(text, SUMMARY_BEGIN, SUMMARY_END, summary_markdown(runs_dir))
  text = _replace_block(text, BEGIN, END, "\n\n".join(blocks))
  pathlib.Path(results_md).write_text(text)


if __name__ == "__main__":
  report()
