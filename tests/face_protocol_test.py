"""The face protocol as a user runs it (issue 35): a dozen identities of
112x112 faces written as folders and as a RecordIO pack, `.bin` and LFW
`pairs.txt` pair lists; `experiments.train` with the face config trains
IResNet-18 at small width from each format and `experiments.evaluate
--pairs` scores the pairs."""

import json
import pathlib
import pickle
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from experiments import curves

ROOT = pathlib.Path(__file__).resolve().parents[1]
IDENTITIES, PER_IDENTITY = 12, 4


def _face(label, j):
  """Identity ``label``'s image ``j``: its own colour blocks, a little noise."""
  rng = np.random.default_rng([label, j])
  blocks = np.random.default_rng(label).integers(0, 256, (4, 4, 3))
  image = np.kron(blocks, np.ones((28, 28, 1))) + rng.normal(0, 8, (112, 112, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


def _jpeg(rgb):
  ok, data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
  assert ok
  return data.tobytes()


def _run(*args):
  result = subprocess.run(
    [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
  )
  assert result.returncode == 0, result.stderr[-4000:]
  return result.stdout


@pytest.fixture(scope="module")
def face_data(tmp_path_factory):
  """The folder, its pack, a .bin and an LFW pairs.txt (with its person folders)."""
  root = tmp_path_factory.mktemp("faces")
  names = [f"person_{label:02d}" for label in range(IDENTITIES)]
  for label, name in enumerate(names):
    (root / "train" / name).mkdir(parents=True)
    (root / "lfw" / name).mkdir(parents=True)
    for j in range(PER_IDENTITY):
      data = _jpeg(_face(label, j))
      (root / "train" / name / f"{j}.jpg").write_bytes(data)
      (root / "lfw" / name / f"{name}_{j + 1:04d}.jpg").write_bytes(data)
  _run(
    "margin_jax.data.faces",
    "pack",
    "--from-folder",
    str(root / "train"),
    "--to",
    str(root / "pack" / "train"),
  )
  # Same pairs: an image with itself; different pairs: two identities.
  same_pairs = [(label, 0, label, 0) for label in range(6)]
  different = [(label, 1, label + 6, 1) for label in range(6)]
  bins, flags = [], []
  for pairs, flag in ((same_pairs, True), (different, False)):
    for a, i, b, j in pairs:
      bins += [_jpeg(_face(a, i)), _jpeg(_face(b, j))]
      flags.append(flag)
  with open(root / "agedb.bin", "wb") as f:
    pickle.dump((bins, flags), f)
  lines = ["2\t3"]  # two folds of 3 same and 3 different pairs
  for fold in range(2):
    lines += [f"{names[a]}\t{i + 1}\t{i + 1}" for a, i, _, _ in same_pairs[3 * fold : 3 * fold + 3]]
    lines += [
      f"{names[a]}\t{i + 1}\t{names[b]}\t{j + 1}"
      for a, i, b, j in different[3 * fold : 3 * fold + 3]
    ]
  (root / "lfw" / "pairs.txt").write_text("\n".join(lines) + "\n")
  return root


def test_both_formats_read_the_written_faces(face_data):
  """Exactly the written pixels (the JPEG files' decoding) and labels 0..11 in
  identity-name order, from the folder and from the pack."""
  from margin_jax.data import faces

  want = [
    (
      cv2.imdecode(np.frombuffer(_jpeg(_face(label, j)), np.uint8), cv2.IMREAD_COLOR)[..., ::-1],
      label,
    )
    for label in range(IDENTITIES)
    for j in range(PER_IDENTITY)
  ]
  for source in ("train", "pack/train.rec"):
    dataset = faces.open_source(face_data / source)
    assert len(dataset) == len(want) and dataset.num_classes == IDENTITIES, source
    for i, (image, label) in enumerate(want):
      got_image, got_label = dataset[i]
      assert got_label == label, (source, i)
      np.testing.assert_array_equal(got_image, image, err_msg=f"{source} image {i}")


@pytest.mark.parametrize("source", ["train", "pack/train.rec"], ids=["folder", "recordio"])
def test_the_face_command_trains_and_evaluates(face_data, tmp_path, source):
  workdir = tmp_path / "run"
  pairs = f"{face_data / 'agedb.bin'},{face_data / 'lfw' / 'pairs.txt'}"
  output = _run(
    *("experiments.train", "--config", "experiments/configs/face.py", "--workdir", str(workdir)),
    f"--config.train_data={face_data / source}",
    f"--config.val_pairs={pairs}",
    *("--config.model=iresnet18", "--config.width=0.0625", "--config.batch_size=16"),
    *("--config.num_train_steps=20", "--config.lr_boundaries=(15,)", "--config.loss=arcface"),
    "--config.loss_kwargs.arcface.scale=16.0",  # the protocol's s = 64 is for 10^4 identities
    *("--config.log_every_steps=10", "--config.eval_every_steps=20"),
    "--config.checkpoint_every_steps=20",
  )
  assert (
    output.splitlines()[0]
    == f"train_data: {IDENTITIES * PER_IDENTITY} images, {IDENTITIES} identities"
  )
  assert (workdir / "checkpoints" / "20").is_dir()
  logged = (workdir / "metrics.jsonl").read_text().splitlines()
  for name in ("agedb", "pairs"):  # each set logged under its file's stem
    assert f'"{name}_accuracy": 1.0' in logged[-1] and f'"{name}_tar_far_1e-3"' in logged[-1]
  # ... and plotted with the other curves, a line per set.
  assert (workdir / "curves.png").stat().st_size > 0
  drawn = dict(curves.panels([json.loads(line) for line in logged]))
  assert [label for label, *_ in drawn["verification accuracy (10-fold)"]] == ["agedb", "pairs"]
  assert {"loss", "training accuracy", "TAR@FAR=1e-3"} <= set(drawn)
  lines = _run(
    "experiments.evaluate",
    "--workdir",
    str(workdir),
    "--pairs",
    str(face_data / "agedb.bin"),
    str(face_data / "lfw" / "pairs.txt"),
  ).splitlines()
  number = r"(\d\.\d+)"
  line = rf"{{}}: accuracy {number} ± {number}, TAR@FAR=1e-3 {number}, TAR@FAR=1e-4 {number}, EER {number}"
  for name, printed in zip(("agedb", "pairs"), lines):
    match = re.fullmatch(line.format(name), printed)
    assert match, printed
    assert float(match[1]) == 1.0 and float(match[2]) == 0.0 and float(match[5]) == 0.0
  assert len(lines) == 2
