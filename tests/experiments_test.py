"""Tests of the reproduction machinery: statistics, records, one real run
through the campaign, and the report."""

import fcntl
import importlib
import json
import math
import shlex
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from experiments import campaign
from experiments import records
from experiments import report
from experiments import stats
from experiments import train
from margin_jax.training import objectives

ROOT = campaign.ROOT


def test_paired_difference_and_its_interval():
  run = {0: 0.10, 1: 0.12, 2: 0.11}
  base = {0: 0.13, 1: 0.14, 2: 0.15, 3: 0.5}  # seed 3 has no pair
  mean, low, high, n = stats.paired_difference(run, base)
  diffs = np.array([-0.03, -0.02, -0.04])
  half = 4.303 * diffs.std(ddof=1) / np.sqrt(3)
  np.testing.assert_allclose(
    [mean, low, high], [diffs.mean(), diffs.mean() - half, diffs.mean() + half]
  )
  assert n == 3
  assert stats.paired_difference({0: 0.1}, {0: 0.2}) is None


@pytest.mark.parametrize(
  "difference,expected,paper_effect,fit_gap,verdict",
  [
    ((-0.02, -0.03, -0.01, 3), "lower", None, None, "direction reproduced"),
    ((-0.02, -0.03, -0.01, 3), "lower", -0.025, None, "reproduced"),
    (
      (-0.02, -0.03, -0.01, 3),
      "lower",
      -0.05,
      None,
      "direction reproduced, effect smaller than the paper's",
    ),
    ((-0.02, -0.03, -0.01, 3), "lower", -0.005, None, "reproduced, effect larger than the paper's"),
    ((0.02, 0.01, 0.03, 3), "lower", -0.02, None, "contradicted"),
    ((0.02, 0.01, 0.03, 3), "lower", -0.02, 0.01, "contradicted"),
    ((0.02, 0.01, 0.03, 3), "lower", -0.02, 0.02, "not trained to fit"),
    ((-0.01, -0.03, 0.01, 3), "lower", None, None, "not resolved with 3 seeds"),
    ((0.02, 0.01, 0.03, 4), "higher", 0.015, None, "reproduced"),
    (
      (0.02, 0.01, 0.03, 4),
      "higher",
      0.05,
      None,
      "direction reproduced, effect smaller than the paper's",
    ),
    ((-0.02, -0.03, -0.01, 4), "higher", 0.05, -0.03, "not trained to fit"),
    ((-0.09, -0.09, -0.09, 2), "lower", None, None, "fewer than 3 paired seeds"),
    (None, "lower", None, None, "fewer than 3 paired seeds"),
  ],
)
def test_verdict(difference, expected, paper_effect, fit_gap, verdict):
  got = stats.verdict(difference, expected=expected, paper_effect=paper_effect, fit_gap=fit_gap)
  assert got == verdict


def test_the_papers_effect_is_scaled_to_the_baseline():
  # Noisy Sec 5.4 (1%): 3.82% -> 2.46% is -35.6%; on a 4.44% baseline, -1.58 pp.
  assert stats.scaled_effect(4.44, 3.82, 2.46) == pytest.approx(-1.5807, abs=1e-4)


def test_records_are_written_atomically_and_read_back(tmp_path):
  path = records.path("t", "softmax", 1, tmp_path)
  records.write(path, {"run": "softmax", "seed": 1, "test_error": 0.5})
  assert records.load(path)["test_error"] == 0.5
  assert records.load_table("t", tmp_path) == {"softmax": {1: records.load(path)}}
  assert not list(tmp_path.glob("*.tmp"))


def test_a_campaign_run_records_a_command_that_repeats_it(tiny_mnist, tmp_path, monkeypatch):
  noisy = campaign.run("noisy_softmax", alpha=math.sqrt(0.5))
  table = campaign.Table(
    config="experiments/configs/smoke.py",
    runs={"noisy": {**noisy, "data_dir": tiny_mnist[1]}},
    paper="none",
  )
  monkeypatch.setitem(campaign.TABLES, "smoke", table)
  monkeypatch.setenv("MARGIN_JAX_CAMPAIGN_DIR", str(tmp_path / "work"))
  record = campaign.train_run("smoke", "noisy", 0, runs_dir=tmp_path / "runs")
  assert record == records.load(records.path("smoke", "noisy", 0, tmp_path / "runs"))
  for key in ("command", "test_error", "seed", "loss", "dataset", "curves", "train_error"):
    assert key in record
  assert set(record["retrieval"]) == {
    "precision_at_1",
    "r_precision",
    "mean_average_precision_at_r",
  }
  # The recorded command, run as it stands, gives the same test error; written
  # with the flat field of the configs before config.loss_kwargs, as the older
  # records are (alpha^2, translated by experiments.train).
  command = record["command"].replace("{workdir}", str(tmp_path / "again"))
  old_style = command.replace(
    f"--config.loss_kwargs.noisy_softmax.alpha={math.sqrt(0.5)}", "--config.alpha_squared=0.5"
  )
  assert old_style != command
  argv = shlex.split(old_style)
  assert argv[:3] == ["python", "-m", "experiments.train"]
  subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, check=True, capture_output=True)
  with open(tmp_path / "again" / "metrics.jsonl") as f:
    again = [json.loads(line) for line in f][-1]
  assert again["test_error"] == record["test_error"]


def test_report_writes_tables_and_figures(tmp_path, monkeypatch):
  runs = tmp_path / "runs"
  rng = np.random.default_rng(0)
  table = campaign.TABLES["features_2d"]
  for run in ("softmax", "l_softmax_m2"):
    for seed in (0, 1, 2):
      error = 0.02 - (0.005 if run != "softmax" else 0.0) + 0.001 * seed
      records.write(
        records.path("features_2d", run, seed, runs),
        {
          "run": run,
          "seed": seed,
          "test_error": error,
          "train_error": error / 2,
          "retrieval": {"precision_at_1": 0.9, "mean_average_precision_at_r": 0.8},
          "curves": {"step": [1, 2], "test_error": [0.5, error]},
          "test_features": rng.normal(size=(20, 2)).tolist(),
          "test_labels": (np.arange(20) % 10).tolist(),
        },
      )
  results_md = tmp_path / "RESULTS.md"
  results_md.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\noutro\n")
  report.report(runs_dir=runs, results_md=results_md, out_dir=tmp_path)
  text = results_md.read_text()
  assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
  assert "| l_softmax_m2 | [0, 1, 2] | 1.60 ± 0.10 |" in text
  assert "-0.50 [-0.50, -0.50] | - | direction reproduced |" in text
  assert "| l_softmax_m3 | 0 | not run |" in text
  assert (tmp_path / "features_2d.png").stat().st_size > 0
  assert (tmp_path / "features_2d_curves.png").stat().st_size > 0
  assert len(table.runs) == 5
  # A line logged twice alike (a run restarted from its start) counts once; a
  # step logged with two values (an old interrupted run) is named, not averaged.
  bad = records.path("features_2d", "softmax", 2, runs)
  record = records.load(bad)
  record["curves"] = {"step": [1, 1, 2], "test_error": [0.5, 0.5, 0.022]}
  records.write(bad, record)
  report.report(runs_dir=runs, results_md=results_md, out_dir=tmp_path)
  record["curves"] = {"step": [1, 1, 2], "test_error": [0.5, 0.4, 0.022]}
  records.write(bad, record)
  with pytest.raises(ValueError, match="run 'softmax' seed 2: 'test_error' is logged at steps"):
    report.report(runs_dir=runs, results_md=results_md, out_dir=tmp_path)


@pytest.mark.parametrize("name", sorted(campaign.TABLES))
def test_every_table_run_is_a_valid_config(name):
  table = campaign.TABLES[name]
  base = importlib.import_module(table.config.removesuffix(".py").replace("/", ".")).get_config()
  assert table.baseline in table.runs
  assert set(table.curves) <= set(campaign.CURVE_KEYS) & set(report.PANELS)
  for run, overrides in table.runs.items():
    config = base.copy_and_resolve_references()
    config.lock()  # a field the config lacks raises
    config.update_from_flattened_dict(overrides)
    objectives.get_objective(config)


@pytest.mark.filterwarnings("ignore:the load_module")  # config_flags loads each config file
def test_every_command_on_record_parses_with_its_loss_keywords(monkeypatch):
  """The recorded commands use the flat loss fields of the configs before
  config.loss_kwargs; translated, each gives its loss the keywords it set."""
  for file in sorted(records.RUNS.glob("*.json.gz")):
    record = records.load(file)
    argv = train.translate_old_flags(shlex.split(record["command"]))
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=flag_values, lock_config=True)
    flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
    monkeypatch.setattr(sys, "argv", ["train", *argv[3:]])  # config_flags reads it
    flag_values(sys.argv)
    config = flag_values.config
    keywords = config.loss_kwargs[config.loss]
    for field, value in record["overrides"].items():
      if field in train._OLD_FIELDS and config.loss in train._OLD_FIELDS[field][0]:
        want = math.sqrt(value) if field == "alpha_squared" else value
        path = train._OLD_FIELDS[field][1].split(".")
        got = keywords[path[0]] if len(path) == 1 else keywords[path[0]][path[1]]
        assert got == want, (record["name"], field)
    objectives.get_objective(config)


def test_a_command_on_record_under_another_table_is_copied_not_trained(tmp_path, monkeypatch):
  runs = {"softmax": {"loss": "softmax"}}
  for name in ("first", "second"):
    monkeypatch.setitem(campaign.TABLES, name, campaign.Table("c.py", runs, paper="none"))
  original = {"name": "first__softmax__s3", "run": "softmax", "seed": 3, "test_error": 0.25}
  records.write(records.path("first", "softmax", 3, tmp_path), original)
  monkeypatch.setattr(campaign.subprocess, "run", lambda *a, **k: pytest.fail("trained"))
  monkeypatch.setenv("MARGIN_JAX_CAMPAIGN_DIR", str(tmp_path / "work"))
  copy = campaign.train_run("second", "softmax", 3, runs_dir=tmp_path)
  assert copy == records.load(records.path("second", "softmax", 3, tmp_path))
  assert copy["test_error"] == 0.25 and copy["same_command_as"] == "first__softmax__s3"
  assert copy["table"] == "second" and copy["name"] == "second__softmax__s3"
  # Another seed is another command: nothing to copy, so it would train.
  with pytest.raises(pytest.fail.Exception, match="trained"):
    campaign.train_run("second", "softmax", 4, runs_dir=tmp_path)


def test_a_run_another_process_trains_is_skipped(tmp_path, monkeypatch, capsys):
  """Two campaign processes at once: a run whose work directory is locked is
  left to its holder, and one it finished meanwhile is read, not retrained."""
  monkeypatch.setitem(campaign.TABLES, "t", campaign.Table("c.py", {"softmax": {}}, paper="none"))
  monkeypatch.setenv("MARGIN_JAX_CAMPAIGN_DIR", str(tmp_path / "work"))
  monkeypatch.setattr(campaign.subprocess, "run", lambda *a, **k: pytest.fail("trained"))
  (tmp_path / "work" / "t__softmax__s0").mkdir(parents=True)
  with open(tmp_path / "work" / "t__softmax__s0" / "campaign.lock", "w") as held:
    fcntl.flock(held, fcntl.LOCK_EX)  # the other process, training the run
    campaign.run_tables(["t"], [0], runs_dir=tmp_path / "runs")
  assert "another process is training it; skipped" in capsys.readouterr().out

  def finished_by_the_holder(file, operation):  # just before this process gets the lock
    records.write(records.path("t", "softmax", 0, tmp_path / "runs"), {"test_error": 0.5})

  monkeypatch.setattr(campaign.fcntl, "flock", finished_by_the_holder)
  assert campaign.train_run("t", "softmax", 0, runs_dir=tmp_path / "runs") == {"test_error": 0.5}


def test_curve_figure_has_a_panel_per_curve(tmp_path, monkeypatch):
  table = campaign.Table("c.py", {"softmax": {}}, paper="none", curves=("test_error", "lambda"))
  monkeypatch.setattr(campaign, "TABLES", {"t": table})
  curves = {"step": [50, 100], "test_error": [None, 0.1], "lambda": [100.0, 1.0]}
  for seed in (0, 1):
    records.write(
      records.path("t", "softmax", seed, tmp_path),
      {"run": "softmax", "seed": seed, "curves": curves},
    )
  report.curves_figure("t", tmp_path / "t.png", runs_dir=tmp_path)
  assert (tmp_path / "t.png").stat().st_size > 0
  steps, mean = report._mean_curve(records.load_table("t", tmp_path)["softmax"], "test_error")
  assert steps == [100] and mean.tolist() == [0.1]


def test_report_opens_with_the_papers_and_labels_from_the_records(tmp_path):
  """The per-paper table, "not trained to fit" from training error, the
  paper's effect, the fresh seeds alone and the dynamics come from records."""
  runs = tmp_path / "runs"
  steps = [50, 100, 150, 200, 250, 300]
  # (test error, train error, p_target, rho_hat) offsets from softmax's.
  shift = {
    "softmax": (0.0, 0.0, 0.0, 0.0),
    "uniformity": (-0.006, 0.0, 0.0, 1.0),
    "noisy_softmax": (-0.001, 0.0, -0.05, 0.0),
    "l_softmax_m4": (0.016, 0.078, 0.0, 0.0),
  }
  for run, (test, train, p, rho) in shift.items():
    for seed in (0, 1, 2, 5, 6, 7):
      noise = 0.001 * (seed % 3)
      records.write(
        records.path("fmnist_subset", run, seed, runs),
        {
          "run": run,
          "seed": seed,
          "test_error": 0.12 + test + noise + (0.0005 * seed if run == "uniformity" else 0),
          "train_error": train,
          "retrieval": {"precision_at_1": 0.9, "mean_average_precision_at_r": 0.8},
          "wall_time": 3600.0,
          "curves": {
            "step": steps,
            "test_error": [None] * 5 + [0.12],
            "p_target": [0.7 + p + 0.01 * i + noise for i in range(6)],
            "rho_hat": [0.3 + rho * i / 5 for i in range(6)],
          },
        },
      )
  results_md = tmp_path / "RESULTS.md"
  results_md.write_text(
    f"{report.SUMMARY_BEGIN}\n{report.SUMMARY_END}\nmiddle\n{report.BEGIN}\n{report.END}\n"
  )
  report.report(runs_dir=runs, results_md=results_md, out_dir=tmp_path)
  text = results_md.read_text()
  summary, rest = text.split("middle")
  assert "| Kobayashi | the uniformity regulariser" in summary
  assert "On record: 24 run records, 24 of them trained" in summary and "24.0 hours" in summary
  # Kobayashi Table 2's -4.7% on a 12.1% baseline is -0.57 pp: inside [-0.6 +- 0.1].
  assert "(paper's effect scaled: -0.57), 6 seeds | reproduced |" in summary
  assert "| l_softmax_m4 | [0, 1, 2, 5, 6, 7] |" in rest and "| not trained to fit |" in rest
  assert "| l_softmax_m4_floor (post hoc) | 0 | not run |" in rest
  assert "On the fresh seeds [5, 6, 7, 8, 9] alone:" in rest
  assert "- uniformity: -0.30 [-0.42, -0.18] pp, direction reproduced, effect smaller" in rest
  assert "Convergence caveat" in rest and "l_softmax_m4 7.80-7.80%" in rest
  assert "noisy_softmax (n=6)" in rest and "lower on 6, higher on 0 paired seeds" in rest
  assert "uniformity (n=6): 0.300 at step 50, 1.300 at step 300" in rest
  for figure in ("fmnist_subset_p_target.png", "fmnist_subset_rho_hat.png"):
    assert (tmp_path / figure).stat().st_size > 0


def test_a_run_stopped_before_its_last_step_writes_no_record(tmp_path, monkeypatch):
  """The trainer exits 0 after saving when stopped (Ctrl-C, SIGTERM): the
  campaign must not record that run as finished."""
  table = campaign.Table("experiments/configs/smoke.py", {"softmax": {}}, paper="none")
  monkeypatch.setitem(campaign.TABLES, "t", table)
  monkeypatch.setenv("MARGIN_JAX_CAMPAIGN_DIR", str(tmp_path / "work"))

  def stopped_at_step_3(argv, **kwargs):
    workdir = tmp_path / "work" / "t__softmax__s0"
    (workdir / "metrics.jsonl").write_text(json.dumps({"step": 3, "test_error": 0.5}) + "\n")

  monkeypatch.setattr(campaign.subprocess, "run", stopped_at_step_3)
  with pytest.raises(RuntimeError, match="t__softmax__s0 stopped at step 3 of 6; no record"):
    campaign.train_run("t", "softmax", 0, runs_dir=tmp_path / "runs")
  assert not records.path("t", "softmax", 0, tmp_path / "runs").exists()
