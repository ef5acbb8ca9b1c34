r"""Reproduces the five papers' tables and figures (issue 5), one command each.

  python -m experiments.reproduce main            # table 1, Fashion-MNIST
  python -m experiments.reproduce main_cifar      # table 1, CIFAR-10 (JPEG)
  python -m experiments.reproduce noisy_subsets noisy_ablation noisy_figure \
      kobayashi_degraded kobayashi_divergences em_sensitivity \
      lsoftmax_margins features_2d
  python -m experiments.reproduce report          # tables + figures, no training

Each table trains the runs of :mod:`experiments.protocols` (cpu protocol, seeds
0, 1, 2) that are not yet in ``experiments/results/runs/``, one after the
other in this process, and writes one compact gzipped JSON per run
(atomically: a killed run leaves nothing and is redone). ``report`` redraws
every table (``experiments/results/tables.md`` and the generated part of
``experiments/RESULTS.md``) and every PNG figure from those files alone.

Environment: ``MARGIN_JAX_SEEDS`` (e.g. ``0``: only those seeds),
``MARGIN_JAX_DEADLINE`` (Unix time after which no new run
starts), ``MARGIN_JAX_DATA`` (raw datasets, e.g. ``../shared/datasets``),
``TFDS_DATA_DIR`` (prepared tfds datasets), ``MARGIN_JAX_ARRAYS`` (a cache of
whole splits as ``.npz``, default ``/tmp/margin_jax_arrays``; reading the
prepared tfds dataset takes ~20 s per run otherwise).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time

import numpy as np

from experiments import protocols

ROOT = pathlib.Path(__file__).resolve().parent
RESULTS = ROOT / "results"
RUNS = RESULTS / "runs"
RESULTS_MD = ROOT / "RESULTS.md"
BEGIN, END = "<!-- report:begin -->", "<!-- report:end -->"
# Metrics kept per logged step (the rest of metrics.jsonl is dropped).
CURVE_KEYS = ("loss", "accuracy", "learning_rate", "test_error", "theta_y",
              "p_target", "saturated", "rho_hat", "lambda", "hsic",
              "wall_time")
# Test points (the first ones of the split) for the 2-D scatter and the
# cosine matrices.
NUM_FEATURE_POINTS = 2000


def run_path(run_key: str, seed: int, runs_dir=RUNS) -> pathlib.Path:
  name = re.sub(r"[^A-Za-z0-9.=,_-]", "_", run_key.replace("/", "__"))
  return pathlib.Path(runs_dir) / f"{name}__s{seed}.json.gz"


def load_run(run_key: str, seed: int, runs_dir=RUNS) -> dict | None:
  path = run_path(run_key, seed, runs_dir)
  if not path.exists():
    return None
  with gzip.open(path, "rt") as f:
    return json.load(f)


def _write_atomic(path: pathlib.Path, record: dict) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
  with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb",
                                                 mtime=0) as f:
    f.write(json.dumps(record, separators=(",", ":")).encode())
  os.replace(tmp, path)


# --------------------------------------------------------------------------
# Training.


def _setup_jax():
  import jax
  jax.config.update("jax_compilation_cache_dir",
                    os.environ.get("JAX_CACHE_DIR", "/tmp/jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def _cache_load_arrays():
  """Serves ``margin_jax.data.load_arrays`` from an ``.npz`` cache.

  ``train_and_evaluate`` reads the whole dataset through tfds on every call;
  with dozens of short runs that dominates, so this process keeps a copy.
  Only this process's view of the function changes.
  """
  from margin_jax import data
  original = data.load_arrays
  cache_dir = pathlib.Path(os.environ.get("MARGIN_JAX_ARRAYS",
                                          "/tmp/margin_jax_arrays"))
  memory = {}

  def cached(name, **kwargs):
    if name in memory:
      return memory[name]
    path = cache_dir / f"{name}.npz"
    if path.exists():
      z = np.load(path)
      arrays = {"train": (z["train_x"], z["train_y"]),
                "test": (z["test_x"], z["test_y"]),
                "num_classes": int(z["num_classes"]), "name": name}
    else:
      arrays = original(name, **kwargs)
      cache_dir.mkdir(parents=True, exist_ok=True)
      tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
      np.savez(tmp, train_x=arrays["train"][0], train_y=arrays["train"][1],
               test_x=arrays["test"][0], test_y=arrays["test"][1],
               num_classes=arrays["num_classes"])
      os.replace(tmp, path)
    memory[name] = arrays
    return arrays

  data.load_arrays = cached


def _test_features(config, state):
  """Features ``[N, d]`` and labels of the first ``NUM_FEATURE_POINTS`` test
  images (a full pass costs ~18 s per run here) for a trained host state."""
  import jax
  import jax.numpy as jnp
  from margin_jax.data import preprocess as preprocessing
  from margin_jax.training import train as train_lib
  dataset = train_lib.load_dataset(config)
  mean = preprocessing.pixel_mean(dataset["train"][0])
  images, labels = dataset["test"]
  images, labels = images[:NUM_FEATURE_POINTS], labels[:NUM_FEATURE_POINTS]

  @jax.jit
  def features(x):
    x = preprocessing.preprocess(None, x, recipe=config.preprocess,
                                 mean=mean, train=False)
    out = state.apply_fn({"params": state.params,
                          "batch_stats": state.batch_stats}, x, train=False)
    return out["features"]

  feats = [np.asarray(features(jnp.asarray(images[i:i + 1000])))
           for i in range(0, len(images), 1000)]
  return np.concatenate(feats), np.asarray(labels)


def cosine_matrix(features, labels, num_classes) -> np.ndarray:
  """Mean cosine similarity between test features of class i and class j
  (L-Softmax Fig 5 / Virtual Fig 5): the dot product of the class means of
  the unit-normalised features."""
  unit = features / np.maximum(np.linalg.norm(features, axis=1,
                                              keepdims=True), 1e-12)
  means = np.stack([unit[labels == c].mean(0) for c in range(num_classes)])
  return means @ means.T


def _compact_curves(lines: list[dict]) -> dict:
  curves = {"step": [l["step"] for l in lines]}
  for k in CURVE_KEYS:
    if any(k in l for l in lines):
      curves[k] = [None if k not in l else float(f"{l[k]:.5g}")
                   for l in lines]
  return curves


def train_one(run_key: str, seed: int, *, features: bool, runs_dir=RUNS,
              workroot=None, config_fn=None) -> dict:
  """Trains one run and writes its record; returns the record."""
  from margin_jax import training
  config = (config_fn or protocols.cpu_config)(run_key, seed)
  workroot = pathlib.Path(workroot or tempfile.gettempdir()) / "mj_repro"
  workdir = workroot / run_path(run_key, seed).name.replace(".json.gz", "")
  shutil.rmtree(workdir, ignore_errors=True)
  start = time.time()
  state = training.train_and_evaluate(config, str(workdir))
  wall = time.time() - start
  with open(workdir / "metrics.jsonl") as f:
    lines = [json.loads(l) for l in f]
  final = lines[-1]
  n = config.num_train_steps
  tail = [l["accuracy"] for l in lines if l["step"] > 0.8 * n]
  record = {
      "key": run_key, "seed": seed, "config": config.to_dict(),
      "test_error": final["test_error"],
      "train_error": 1.0 - float(np.mean(tail)),
      "wall_time": wall, "train_loop_time": final["wall_time"],
      "curves": _compact_curves(lines),
  }
  if features:
    feats, labels = _test_features(config, state)
    num_classes = int(labels.max()) + 1
    record["cosine_matrix"] = np.round(
        cosine_matrix(feats, labels, num_classes), 4).tolist()
    if feats.shape[1] <= 3:
      record["features"] = np.round(feats, 3).tolist()
      record["feature_labels"] = labels.tolist()
  _write_atomic(run_path(run_key, seed, runs_dir), record)
  shutil.rmtree(workdir, ignore_errors=True)
  return record


def _claim_lock(run_key, seed) -> pathlib.Path | None:
  """A lock file so two reproduce processes never train the same run."""
  lock_dir = pathlib.Path(tempfile.gettempdir()) / "mj_repro" / "locks"
  lock_dir.mkdir(parents=True, exist_ok=True)
  lock = lock_dir / run_path(run_key, seed).name
  try:
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
  except FileExistsError:
    try:
      pid = int(lock.read_text() or 0)
      os.kill(pid, 0)
      return None  # held by a live process
    except (ValueError, ProcessLookupError, PermissionError, OSError):
      lock.unlink(missing_ok=True)
      return _claim_lock(run_key, seed)
  os.write(fd, str(os.getpid()).encode())
  os.close(fd)
  return lock


def reproduce(table_name: str, seeds=protocols.SEEDS) -> None:
  """Trains every missing run of one table (seed-major: all configs for seed
  0 first, so a cut-short table still has every row)."""
  table = protocols.TABLES[table_name]
  keys = list(dict.fromkeys(r.key for r in table.rows))
  deadline = float(os.environ.get("MARGIN_JAX_DEADLINE", "inf"))
  for seed in seeds:
    for run_key in keys:
      if run_path(run_key, seed).exists():
        continue
      if time.time() > deadline:
        print(f"[{table_name}] deadline passed: {run_key} seed {seed} and "
              "later runs not started", flush=True)
        return
      lock = _claim_lock(run_key, seed)
      if lock is None:
        print(f"[{table_name}] {run_key} seed {seed}: running elsewhere",
              flush=True)
        continue
      try:
        if run_path(run_key, seed).exists():
          continue
        t = time.time()
        record = train_one(run_key, seed, features=table.features)
        print(f"[{table_name}] {run_key} seed {seed}: test error "
              f"{100 * record['test_error']:.2f}% in {time.time() - t:.0f}s",
              flush=True)
      except Exception as e:  # a failed run is recorded, the table goes on
        print(f"[{table_name}] {run_key} seed {seed}: FAILED {e!r}",
              flush=True)
        _write_atomic(run_path(run_key, seed).with_suffix(".failed"),
                      {"key": run_key, "seed": seed, "error": repr(e)[:500]})
      finally:
        lock.unlink(missing_ok=True)


# --------------------------------------------------------------------------
# Report: tables and figures from the saved runs only.


def _stats(run_key, runs_dir, field="test_error"):
  records = [load_run(run_key, s, runs_dir) for s in protocols.SEEDS]
  values = [100 * r[field] for r in records if r is not None]
  if not values:
    return None
  std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
  return float(np.mean(values)), std, len(values)


def _fmt(stat):
  if stat is None:
    return "not run"
  mean, std, n = stat
  return f"{mean:.2f} ± {std:.2f}" + ("" if n >= 3 else f" (n={n})")


def verdict(row_stat, base_stat, direction="lower") -> str:
  """"reproduced" when the row beats the baseline by more than the spread
  (sum of the two standard deviations), "contradicted" when it is worse by
  more than that, else "not separable at this scale"."""
  if row_stat is None or base_stat is None:
    return "not run"
  if row_stat[2] < 2 or base_stat[2] < 2:
    return "too few seeds"
  diff = row_stat[0] - base_stat[0]
  spread = row_stat[1] + base_stat[1]
  better = diff < 0 if direction == "lower" else diff > 0
  if abs(diff) <= spread:
    return "not separable at this scale"
  return "reproduced" if better else "contradicted"


def _baseline_for(table, i):
  """The reference row of row ``i``: the table's baseline label, or for
  "pairs"/"groups" tables the first row of its pair/group of three."""
  if table.baseline == "pairs":
    return table.rows[i - i % 2]
  if table.baseline == "groups":
    return table.rows[i - i % 3]
  return next(r for r in table.rows if r.label == table.baseline)


def table_markdown(table, runs_dir=RUNS) -> str:
  lines = [f"### {table.title}", ""] + ([table.note, ""] if table.note
                                          else []) + [
           "| row | test error % (ours) | train error % (ours) | wall s/run "
           "| paper % | vs reference |",
           "|---|---|---|---|---|---|"]
  for i, row in enumerate(table.rows):
    stat = _stats(row.key, runs_dir)
    train = _stats(row.key, runs_dir, "train_error")
    wall = [r["wall_time"] for r in (load_run(row.key, s, runs_dir)
                                     for s in protocols.SEEDS) if r]
    base = _baseline_for(table, i)
    v = ("reference" if base is row else
         f"{verdict(stat, _stats(base.key, runs_dir))} (vs {base.label})")
    lines.append(
        f"| {row.label} | {_fmt(stat)} | {_fmt(train)} | "
        f"{np.mean(wall):.0f} | {row.paper or '-'} | {v} |"
        if wall else f"| {row.label} | not run | - | - | {row.paper or '-'} "
        f"| - |")
  return "\n".join(lines) + "\n"


def _mean_curve(run_key, field, runs_dir):
  curves = []
  for s in protocols.SEEDS:
    r = load_run(run_key, s, runs_dir)
    if r is None or field not in r["curves"]:
      continue
    steps = np.array(r["curves"]["step"])
    values = np.array([np.nan if v is None else v
                       for v in r["curves"][field]], float)
    keep = ~np.isnan(values)
    curves.append((steps[keep], values[keep]))
  if not curves:
    return None
  n = min(len(c[0]) for c in curves)
  return curves[0][0][:n], np.mean([c[1][:n] for c in curves], 0)


def _figures(runs_dir, out_dir) -> list[str]:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  written = []
  t = protocols.TABLES

  def save(fig, name):
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=90)
    plt.close(fig)
    written.append(name)

  # L-Softmax Fig 3: psi(theta), pure math.
  from margin_jax import losses
  import jax.numpy as jnp
  theta = np.linspace(0, np.pi, 400)
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for m in (1, 2, 3, 4):
    ax.plot(np.degrees(theta), np.asarray(
        losses.psi(jnp.cos(jnp.asarray(theta)), margin=m)), label=f"m={m}")
  ax.set(xlabel="theta (degrees)", ylabel="psi(theta)",
         title="L-Softmax psi(theta), eq 6")
  ax.legend()
  save(fig, "lsoftmax_psi.png")

  # 2-D features.
  rows = t["features_2d"].rows
  recs = [load_run(r.key, 0, runs_dir) for r in rows]
  if any(r and "features" in r for r in recs):
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.4))
    for ax, row, rec in zip(axes, rows, recs):
      if not rec or "features" not in rec:
        ax.set_title(f"{row.label}: not run")
        continue
      f = np.array(rec["features"])
      ax.scatter(f[:, 0], f[:, 1], c=rec["feature_labels"], cmap="tab10",
                 s=2)
      ax.set_title(f"{row.label}\ntest acc {100 * (1 - rec['test_error']):.2f}%"
                   " (seed 0)", fontsize=9)
      ax.set_xticks([])
      ax.set_yticks([])
    save(fig, "features_2d.png")

  def curve_plot(name, rows, fields, titles):
    fig, axes = plt.subplots(1, len(fields), figsize=(5 * len(fields), 3.6))
    axes = np.atleast_1d(axes)
    drawn = False
    for ax, field, title in zip(axes, fields, titles):
      for row in rows:
        c = _mean_curve(row.key, field, runs_dir)
        if c is None:
          continue
        drawn = True
        values = c[1] * (100 if field in ("test_error",) else 1)
        if field == "accuracy":
          values = 100 * (1 - _smooth(c[1]))
        ax.plot(c[0], values, label=row.label,
                marker="o" if field == "test_error" else None, ms=3)
      ax.set(xlabel="iteration", title=title)
    if drawn:
      axes[0].legend(fontsize=7)
      save(fig, name)
    else:
      plt.close(fig)

  def bar_plot(name, table):
    rows = [(r.label, _stats(r.key, runs_dir)) for r in table.rows]
    rows = [(label, st) for label, st in rows if st is not None]
    if not rows:
      return
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(rows) + 1.2))
    y = np.arange(len(rows))
    ax.barh(y, [st[0] for _, st in rows], xerr=[st[1] for _, st in rows],
            color="tab:blue", alpha=0.7, capsize=3)
    ax.set_yticks(y, [f"{label} (n={st[2]})" for label, st in rows],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="final test error % (mean ± std over seeds)",
           title=table.title)
    ax.title.set_fontsize(9)
    save(fig, name)

  # The test set is evaluated once per run (at the end): the curves over
  # iterations are training-batch statistics; final test errors are bars.
  for name in t:
    if name != "features_2d":
      bar_plot(f"{name}_test_error.png", t[name])
  curve_plot("noisy_fig3_4.png", t["noisy_figure"].rows,
             ("p_target", "saturated", "accuracy"),
             ("mean target probability P (Noisy eq 9)",
              "fraction saturated (P > 0.99)",
              "training-batch error % (smoothed)"))
  kob = (t["main"].rows[0],
         next(r for r in t["main"].rows if r.label.startswith("Kobayashi")),
         next(r for r in t["main"].rows if r.label.startswith("LSR")))
  curve_plot("kobayashi_rho_hat.png", kob, ("rho_hat",),
             ("Kobayashi bias rho-hat (eq 7) during training",))
  curve_plot("lsoftmax_margins.png", t["lsoftmax_margins"].rows,
             ("accuracy", "theta_y", "lambda"),
             ("training-batch error % (smoothed)",
              "mean target angle theta_y (degrees)",
              "lambda (L-Softmax schedule)"))
  curve_plot("main_curves.png", t["main"].rows, ("accuracy", "loss"),
             ("training-batch error % (smoothed)", "training loss"))
  curve_plot("main_cifar_curves.png", t["main_cifar"].rows,
             ("accuracy", "loss"),
             ("training-batch error % (smoothed)", "training loss"))

  # Cosine confusion matrices: softmax vs the best margin loss of table 1
  # (not the margin-free baselines: NormFace, LSR, hinge, center loss).
  main = t["main"]
  stats = {r.label: _stats(r.key, runs_dir) for r in main.rows}
  margin_rows = [r for r in main.rows
                 if not r.label.startswith(("Softmax", "NormFace", "LSR",
                                            "Hinge", "Center"))
                 and stats[r.label] is not None
                 and (load_run(r.key, 0, runs_dir) or {}).get("cosine_matrix")]
  soft = load_run(main.rows[0].key, 0, runs_dir)
  if margin_rows and soft and soft.get("cosine_matrix"):
    best = min(margin_rows, key=lambda r: stats[r.label][0])
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, row in zip(axes, (main.rows[0], best)):
      rec = load_run(row.key, 0, runs_dir)
      im = ax.imshow(np.array(rec["cosine_matrix"]), vmin=-0.2, vmax=1,
                     cmap="viridis")
      ax.set_title(f"{row.label} (seed 0)\nmean cosine, test features",
                   fontsize=9)
      ax.set_xlabel("class")
      ax.set_ylabel("class")
    fig.colorbar(im, ax=axes.tolist(), shrink=0.8)
    fig.savefig(out_dir / "cosine_confusion.png", dpi=90)
    plt.close(fig)
    written.append("cosine_confusion.png")
  return written


def _smooth(values, k=5):
  values = np.asarray(values, float)
  if len(values) < k:
    return values
  kernel = np.ones(k) / k
  padded = np.concatenate([np.full(k - 1, values[0]), values])
  return np.convolve(padded, kernel, mode="valid")


def report(runs_dir=RUNS, out_dir=RESULTS, results_md=RESULTS_MD,
           figures=True) -> str:
  """Writes ``tables.md``, the figures, and the generated part of
  ``RESULTS.md`` (between the report markers) from saved runs only."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  parts = [table_markdown(t, runs_dir) for t in protocols.TABLES.values()]
  total = sum(r["wall_time"] for r in _all_runs(runs_dir))
  count = len(list(_all_runs(runs_dir)))
  text = ("<!-- generated by `python -m experiments.reproduce report`; "
          "do not edit by hand -->\n\n"
          f"Runs on record: {count}; their summed wall time: "
          f"{total / 60:.1f} min. Test and train error in %, mean ± sample "
          "std over seeds 0-2; train error is the mean error of the training batches "
          "of the last 20% of iterations (test-time logits, training "
          "preprocessing). Verdict: 'reproduced' when the row beats its "
          "reference by more than the sum of the two standard deviations.\n\n"
          + "\n".join(parts))
  (out_dir / "tables.md").write_text(text)
  if figures:
    written = _figures(runs_dir, out_dir)
    text += "\nFigures: " + ", ".join(f"`results/{w}`" for w in written) + "\n"
  results_md = pathlib.Path(results_md)
  if results_md.exists():
    doc = results_md.read_text()
    if BEGIN in doc and END in doc:
      head, rest = doc.split(BEGIN, 1)
      _, tail = rest.split(END, 1)
      results_md.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
  return text


def _all_runs(runs_dir):
  for path in sorted(pathlib.Path(runs_dir).glob("*.json.gz")):
    with gzip.open(path, "rt") as f:
      yield json.load(f)


def main(argv):
  names = argv[1:]
  if not names:
    sys.exit(f"usage: python -m experiments.reproduce "
             f"{{{'|'.join(protocols.TABLES)}|report}} ...")
  for name in names:
    if name not in protocols.TABLES and name not in ("report", "figures"):
      sys.exit(f"unknown table {name!r}; expected one of "
               f"{list(protocols.TABLES)} or report")
  if any(n in protocols.TABLES for n in names):
    _setup_jax()
    _cache_load_arrays()
  for name in names:
    if name in ("report", "figures"):
      print(report())
    else:
      seeds = os.environ.get("MARGIN_JAX_SEEDS")
      reproduce(name, tuple(int(x) for x in seeds.split(",")) if seeds
                else protocols.SEEDS)


if __name__ == "__main__":
  main(sys.argv)
