"""experiments.paper_protocol: a shortened run's record, the data check, the estimates."""

import re

import pytest

from experiments import campaign, paper_protocol, records


def test_a_shortened_run_is_recorded_as_such(tiny_mnist, tmp_path, monkeypatch):
  monkeypatch.setenv("MARGIN_JAX_DATA", tiny_mnist[0])
  monkeypatch.setenv("TFDS_DATA_DIR", tiny_mnist[1])
  monkeypatch.setenv("MARGIN_JAX_CAMPAIGN_DIR", str(tmp_path / "work"))
  monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # main sets it if unset
  argv = ["--tables", "virtual_table3_mnist", "--runs", "softmax", "--seeds", "0"]
  paper_protocol.main([*argv, "--max-steps", "2", "--runs-dir", str(tmp_path / "runs")])
  [path] = (tmp_path / "runs").iterdir()
  record = records.load(path)
  assert record["max_steps"] == 2 and record["table"] == "virtual_table3_mnist_max2steps"
  table = campaign.TABLES["virtual_table3_mnist"]
  assert record["command"].startswith(f"python -m experiments.train --config {table.config} ")
  assert record["command"].endswith(" --config.num_train_steps=2 --config.seed=0")
  assert records.load_table("virtual_table3_mnist", tmp_path / "runs") == {}  # not a full run


def test_missing_data_names_the_folder(tmp_path, monkeypatch):
  monkeypatch.setenv("MARGIN_JAX_DATA", str(tmp_path / "datasets"))
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  with pytest.raises(SystemExit, match=re.escape(str(tmp_path / "datasets" / "cifar10_jpeg"))):
    paper_protocol.main(["--tables", "virtual_table4_cifar10", "--runs-dir", str(tmp_path)])


def test_estimate_prints_a_row_per_table(capsys):
  paper_protocol.main(["--estimate"])
  lines = capsys.readouterr().out.splitlines()
  assert [line.split()[0] for line in lines[1:]] == [
    *paper_protocol.TABLES,
    *paper_protocol.FACE_TABLES,
  ]
  assert len(paper_protocol.TABLES) == 4 and len(paper_protocol.FACE_TABLES) == 3
