"""Run records of the reproduction: one gzipped JSON file per run and seed.

``experiments/results/runs/<table>__<run>__s<seed>.json.gz`` holds at least
``command`` (the exact command that repeats the run from the repository root,
``{workdir}`` standing for the work directory), ``test_error`` (final,
fraction), ``seed``, ``loss``, ``dataset`` and the metric ``curves``. Files are
written atomically: a killed run leaves no record and is trained again.
"""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import tempfile

RUNS = pathlib.Path(__file__).resolve().parent / "results" / "runs"


def path(table: str, run: str, seed: int, runs_dir=RUNS) -> pathlib.Path:
  return pathlib.Path(runs_dir) / f"{table}__{run}__s{seed}.json.gz"


def load(file) -> dict:
  with gzip.open(file, "rt") as f:
    return json.load(f)


def load_table(table: str, runs_dir=RUNS) -> dict[str, dict[int, dict]]:
  """``{run: {seed: record}}`` of every record of ``table``."""
  out: dict[str, dict[int, dict]] = {}
  for file in sorted(pathlib.Path(runs_dir).glob(f"{table}__*__s*.json.gz")):
    record = load(file)
    out.setdefault(record["run"], {})[record["seed"]] = record
  return out


def write(file: pathlib.Path, record: dict) -> None:
  """Writes ``record`` to ``file`` atomically (temporary file, then rename)."""
  file.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
  with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
    f.write(json.dumps(record, separators=(",", ":")).encode())
  os.chmod(tmp, 0o644)
  os.replace(tmp, file)
