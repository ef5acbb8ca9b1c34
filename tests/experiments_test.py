"""Tests of the issue-5 reproduction machinery (no training; a few seconds)."""

import gzip
import json

import numpy as np
import pytest

from experiments import protocols
from experiments import reproduce
from margin_jax.training import objectives


def _all_keys():
  return sorted({r.key for t in protocols.TABLES.values() for r in t.rows})


def test_run_keys_round_trip_and_give_valid_configs():
  for key in _all_keys():
    data, overrides = protocols.parse_key(key)
    assert protocols.key(data, overrides) == key
    config = protocols.cpu_config(key, seed=1)
    assert config.loss in objectives.LOSSES
    assert config.seed == 1
    assert list(config.lr_boundaries) == sorted(config.lr_boundaries)
    assert config.lr_boundaries[-1] < config.num_train_steps
    objectives.get_objective(config)  # hyperparameters accepted


def test_run_paths_are_distinct():
  paths = {reproduce.run_path(k, s) for k in _all_keys()
           for s in protocols.SEEDS}
  assert len(paths) == len(_all_keys()) * len(protocols.SEEDS)


def test_lambda_schedule_is_rescaled_to_the_short_run():
  from margin_jax import losses
  c = protocols.cpu_config("fmnist/loss=l_softmax,margin=4", 0)
  lam = objectives.lambda_schedule(c)
  paper = losses.lambda_schedule()
  np.testing.assert_allclose(float(lam(c.num_train_steps)),
                             float(paper(protocols.PAPER_LAMBDA_STEPS)),
                             rtol=1e-4)


@pytest.mark.parametrize("row,base,expected", [
    ((10.0, 0.1, 3), (12.0, 0.2, 3), "reproduced"),
    ((12.0, 0.1, 3), (10.0, 0.2, 3), "contradicted"),
    ((10.0, 1.0, 3), (10.5, 1.0, 3), "not separable at this scale"),
    (None, (10.0, 0.1, 3), "not run"),
])
def test_verdict(row, base, expected):
  assert reproduce.verdict(row, base) == expected


def _fake_record(key, seed, error):
  steps = list(range(5, 45, 5))
  return {
      "key": key, "seed": seed, "config": {}, "test_error": error,
      "train_error": error / 2, "wall_time": 10.0, "train_loop_time": 8.0,
      "curves": {"step": steps, "accuracy": [0.5] * len(steps),
                 "p_target": [0.3] * len(steps), "rho_hat": [0.1] * len(steps),
                 "test_error": [None] * (len(steps) - 1) + [error]},
      "cosine_matrix": np.eye(10).tolist(),
      "features": [[0.0, 1.0], [1.0, 0.0]], "feature_labels": [0, 1],
  }


def test_report_regenerates_tables_and_figures_from_saved_runs(tmp_path):
  runs = tmp_path / "runs"
  main = protocols.TABLES["main"]
  soft, noisy = main.rows[0], main.rows[4]
  for seed in protocols.SEEDS:
    reproduce._write_atomic(reproduce.run_path(soft.key, seed, runs),
                            _fake_record(soft.key, seed, 0.20 + 0.001 * seed))
    reproduce._write_atomic(reproduce.run_path(noisy.key, seed, runs),
                            _fake_record(noisy.key, seed, 0.10 + 0.001 * seed))
  for row in protocols.TABLES["features_2d"].rows:
    reproduce._write_atomic(reproduce.run_path(row.key, 0, runs),
                            _fake_record(row.key, 0, 0.05))
  assert reproduce.load_run(soft.key, 1, runs)["test_error"] == 0.201
  results_md = tmp_path / "RESULTS.md"
  results_md.write_text(f"# head\n{reproduce.BEGIN}\nold\n{reproduce.END}\n"
                        "tail\n")

  reproduce.report(runs_dir=runs, out_dir=tmp_path, results_md=results_md)

  tables = (tmp_path / "tables.md").read_text()
  assert "| Softmax | 20.10 ± 0.10 |" in tables
  assert "| Noisy Softmax (a2=0.1) | 10.10 ± 0.10 |" in tables
  assert "reproduced (vs Softmax)" in tables
  assert "not run" in tables
  doc = results_md.read_text()
  assert doc.startswith("# head\n") and doc.endswith("tail\n")
  assert "old" not in doc and "20.10 ± 0.10" in doc
  for name in ("lsoftmax_psi.png", "features_2d.png", "cosine_confusion.png",
               "kobayashi_rho_hat.png", "main_curves.png"):
    assert (tmp_path / name).stat().st_size > 1000, name
  with gzip.open(reproduce.run_path(soft.key, 0, runs), "rt") as f:
    assert json.load(f)["seed"] == 0


def test_cosine_matrix():
  features = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
  labels = np.array([0, 0, 1])
  np.testing.assert_allclose(reproduce.cosine_matrix(features, labels, 2),
                             [[1.0, 0.0], [0.0, 1.0]])
