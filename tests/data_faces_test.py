"""Tests for margin_jax.data.faces: image folders, RecordIO packs, verification pairs."""

import os
import pathlib
import pickle
import shutil
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from margin_jax.data import faces

ROOT = pathlib.Path(__file__).resolve().parents[1]
MXNET_PACKS = pathlib.Path(__file__).resolve().parent / "data" / "faces_mxnet"
MAGIC = struct.pack("<I", 0xCED7230A)


# --- Writers of tiny face images and packs -----------------------------------


def _face(label, j, shape=(8, 6)):
  """The fixture's RGB image ``j`` of identity ``label`` (see faces_mxnet/README.md)."""
  y, x, c = np.mgrid[: shape[0], : shape[1], :3]
  return ((37 * label + 11 * j + 13 * y + 7 * x + 50 * c) % 256).astype(np.uint8)


def _encode(rgb, fmt):
  ok, data = cv2.imencode(fmt, rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
  assert ok
  return data.tobytes()


def _jpeg_with_magic(rgb):
  """A JPEG whose comment segment holds the RecordIO magic twice, 4-aligned in a record."""
  jpeg, comment = _encode(rgb, ".jpg"), b"ab" + MAGIC + MAGIC + b"cd"
  return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + jpeg[2:]


def _rgb(data):
  return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def _part_flags(rec_path):
  """The continuation flag of every part of a ``.rec``, walking its framing."""
  data, position, flags = pathlib.Path(rec_path).read_bytes(), 0, []
  while position < len(data):
    magic, word = struct.unpack_from("<II", data, position)
    assert magic == 0xCED7230A
    flags.append(word >> 29)
    position += 8 + -(-(word & (2**29 - 1)) // 4) * 4
  return flags


def _records(prefix):
  """{key: (IRHeader flag, labels, image bytes)} of a pack, read independently of faces."""
  data, records = pathlib.Path(f"{prefix}.rec").read_bytes(), {}
  for line in pathlib.Path(f"{prefix}.idx").read_text().splitlines():
    key, position = map(int, line.split("\t"))
    payload = b""
    while True:
      word = struct.unpack_from("<I", data, position + 4)[0]
      length = word & (2**29 - 1)
      payload += data[position + 8 : position + 8 + length]
      if word >> 29 in (0, 3):
        break
      payload += MAGIC
      position += 8 + -(-length // 4) * 4
    flag, label, _, _ = struct.unpack_from("<IfQQ", payload)
    labels = np.frombuffer(payload, "<f4", flag, 24).tolist() if flag else [label]
    records[key] = (flag, labels, payload[24 + 4 * flag :])
  return records


# (identity, file name, bytes); sorted by identity then name, labels 0, 0, 1, 1, 2, 2.
def _folder_files():
  return [
    ("id_a", "0.png", _encode(_face(0, 0), ".png")),
    ("id_a", "1.jpg", _jpeg_with_magic(_face(0, 1))),
    ("id_b", "a.jpeg", _encode(_face(1, 0), ".jpg")),
    ("id_b", "b.png", _encode(_face(1, 1), ".png")),
    ("id_c", "x.PNG", _encode(_face(2, 0), ".png")),
    ("id_c", "y.JPG", _encode(_face(2, 1), ".jpg")),
  ]


@pytest.fixture
def folder(tmp_path):
  root = tmp_path / "faces"
  for identity, name, data in reversed(_folder_files()):
    (root / identity).mkdir(parents=True, exist_ok=True)
    (root / identity / name).write_bytes(data)
  (root / "id_a" / "notes.txt").write_text("not an image")
  (root / ".cache").mkdir()  # Hidden: not an identity.
  (root / "list.txt").write_text("files at the root are ignored")
  return root


def _pack(folder, prefix):
  """Packs ``folder`` as a user types it: ``python -m margin_jax.data.faces pack``."""
  command = [sys.executable, "-m", "margin_jax.data.faces", "pack"]
  command += ["--from-folder", str(folder), "--to", str(prefix)]
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  return result.stdout


# --- Image folders -----------------------------------------------------------


def test_folder_dataset_orders_identities_and_images_by_name(folder):
  ds = faces.FolderDataset(folder)
  assert ds.identities == ["id_a", "id_b", "id_c"]
  assert (len(ds), ds.num_images, ds.num_classes) == (6, 6, 3)
  assert [pathlib.Path(f).name for f in ds.files] == [name for _, name, _ in _folder_files()]
  np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 2, 2])
  for i, (_, _, data) in enumerate(_folder_files()):
    image, label = ds[i]
    assert (image.dtype, image.shape, label) == (np.uint8, (8, 6, 3), i // 2)
    np.testing.assert_array_equal(image, _rgb(data))
  np.testing.assert_array_equal(ds[0][0], _face(0, 0))  # PNG: exact, and RGB.
  np.testing.assert_array_equal(ds[-1][0], ds[5][0])
  with pytest.raises(IndexError, match="Index 6 is out of range for 6 images"):
    ds[6]


def test_folder_dataset_errors_name_the_folder_or_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing does not exist"):
    faces.FolderDataset(tmp_path / "missing")
  (tmp_path / "file.jpg").write_bytes(b"")
  with pytest.raises(NotADirectoryError, match="file.jpg is not a directory"):
    faces.FolderDataset(tmp_path / "file.jpg")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="empty holds no identity folder"):
    faces.FolderDataset(tmp_path / "empty")
  (tmp_path / "root" / "alice").mkdir(parents=True)
  (tmp_path / "root" / "alice" / "notes.txt").write_text("")
  with pytest.raises(ValueError, match="alice holds no image"):
    faces.FolderDataset(tmp_path / "root")
  (tmp_path / "root" / "alice" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
  with pytest.raises(ValueError, match="broken.jpg: not a readable JPEG or PNG image"):
    faces.FolderDataset(tmp_path / "root")[0]


# --- RecordIO packs: ours, then MXNet's --------------------------------------


def test_pack_command_writes_what_both_readers_agree_on(folder, tmp_path):
  stdout = _pack(folder, tmp_path / "pack" / "train")
  assert "6 images, 3 identities" in stdout
  assert sorted(p.name for p in (tmp_path / "pack").iterdir()) == [
    "property",
    "train.idx",
    "train.rec",
  ]
  assert (tmp_path / "pack" / "property").read_text() == "3,8,6\n"
  images, pack = faces.FolderDataset(folder), faces.RecordIODataset(tmp_path / "pack" / "train")
  assert (len(pack), pack.num_images, pack.num_classes) == (6, 6, 3)
  np.testing.assert_array_equal(pack.keys, np.arange(1, 7))
  np.testing.assert_array_equal(pack.labels, images.labels)
  rec = (tmp_path / "pack" / "train.rec").read_bytes()
  for i, (_, name, data) in enumerate(_folder_files()):
    (image, label), (expected, expected_label) = pack[i], images[i]
    assert label == expected_label
    if name.lower().endswith(".png"):  # Re-encoded to JPEG at quality 95.
      np.testing.assert_array_equal(image, _rgb(_encode(expected, ".jpg")))
    else:  # Kept byte for byte.
      np.testing.assert_array_equal(image, expected)
      assert (data in rec) == (MAGIC not in data)
  # The JPEG holding the magic was split as MXNet's writer splits it.
  assert sorted(set(_part_flags(tmp_path / "pack" / "train.rec"))) == [0, 1, 2, 3]
  # insightface's layout: header record 0, images 1..6, identities 7..9.
  records = _records(tmp_path / "pack" / "train")
  assert sorted(records) == list(range(10))
  assert records[0][:2] == (2, [7.0, 10.0])
  assert [records[k][:2] for k in (7, 8, 9)] == [(2, [1.0, 3.0]), (2, [3.0, 5.0]), (2, [5.0, 7.0])]
  assert [records[k][:2] for k in range(1, 7)] == [(0, [float(i // 2)]) for i in range(6)]
  assert records[3][2] == _folder_files()[2][2]


def test_pack_too_large_for_float32_keys_has_no_header(folder, tmp_path, monkeypatch):
  monkeypatch.setattr(faces, "_FLOAT32_EXACT", 9)  # 6 images + 3 identities + 1 > 9.
  pack = faces.write_pack(folder, tmp_path / "train")
  records = _records(tmp_path / "train")
  assert [records[k][:2] for k in sorted(records)] == [(0, [float(i // 2)]) for i in range(6)]
  np.testing.assert_array_equal(pack.keys, np.arange(6))
  np.testing.assert_array_equal(pack.labels, [0, 0, 1, 1, 2, 2])
  assert pack.num_classes == 3


def test_info_command_counts_folders_packs_and_bins(folder, tmp_path, capsys):
  faces.write_pack(folder, tmp_path / "train")
  for path, expected in [
    (folder, "6 images, 3 identities (image folder)"),
    (tmp_path / "train", "6 images, 3 identities (RecordIO pack)"),
    (tmp_path / "train.rec", "6 images, 3 identities (RecordIO pack)"),
  ]:
    faces.main(["info", str(path)])
    assert expected in capsys.readouterr().out
  encoded = [data for _, _, data in _folder_files()[:4]]
  (tmp_path / "lfw.bin").write_bytes(pickle.dumps((encoded, [True, False])))
  faces.main(["info", str(tmp_path / "lfw.bin")])
  assert "2 pairs (1 same) of (8, 6) images" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    faces.main(["info", str(tmp_path / "nothing")])
  assert "nothing.rec does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["insightface", "im2rec"])
def test_reads_packs_written_by_mxnet(layout):
  expected = np.load(MXNET_PACKS / layout / "expected.npz")
  pack = faces.RecordIODataset(MXNET_PACKS / layout / "train")
  np.testing.assert_array_equal(pack.keys, expected["keys"])
  np.testing.assert_array_equal(pack.labels, expected["labels"])
  assert (len(pack), pack.num_classes) == (6, 3)  # property / largest label + 1.
  assert sorted(set(_part_flags(MXNET_PACKS / layout / "train.rec"))) == [0, 1, 2, 3]
  for i, (want, label, png) in enumerate(
    zip(expected["images"], expected["labels"], expected["png"])
  ):
    image, got_label = pack[i]
    assert got_label == label
    if png:  # Exact, both as MXNet decoded it and as the fixture drew it.
      np.testing.assert_array_equal(image, want)
      assert any(np.array_equal(image, _face(label, j)) for j in (0, 1))
    else:  # JPEG: MXNet's bundled OpenCV against ours.
      assert np.abs(image.astype(int) - want).max() <= 2


def test_pack_pickles_and_reads_after_unpickling():
  pack = faces.RecordIODataset(MXNET_PACKS / "im2rec" / "train.rec")
  first = pack[0][0]
  copy = pickle.loads(pickle.dumps(pack))
  np.testing.assert_array_equal(copy[0][0], first)


def _copy_pack(tmp_path, layout="im2rec"):
  shutil.copytree(MXNET_PACKS / layout, tmp_path / layout)
  return tmp_path / layout / "train"


def test_pack_errors_name_the_file_and_offset(tmp_path):
  prefix = _copy_pack(tmp_path)
  rec = pathlib.Path(f"{prefix}.rec")
  data = bytearray(rec.read_bytes())
  data[232:236] = b"\0\0\0\0"  # The magic of key 5's record, third in the .idx.
  rec.write_bytes(bytes(data))
  pack = faces.RecordIODataset(prefix)
  np.testing.assert_array_equal(pack[1][0], _face(0, 0))
  with pytest.raises(ValueError, match=r"train.rec: record key 5 at offset 232: found 0x00000000"):
    pack[2]
  rec.write_bytes(bytes(data[:1000]))  # Inside key 4's last part (offset 504, 730 bytes).
  pack = faces.RecordIODataset(prefix)
  with pytest.raises(ValueError, match=r"key 4 at offset 456: the part at offset 504 declares 730"):
    pack[4]
  with pytest.raises(ValueError, match=r"key 2 at offset 1244: the file ends at offset 1000"):
    pack[5]
  pathlib.Path(f"{prefix}.idx").write_text("0\t0\n1\tnot an offset\n")
  with pytest.raises(ValueError, match="train.idx: expected 'key<TAB>offset'"):
    faces.RecordIODataset(prefix)
  pathlib.Path(f"{prefix}.idx").unlink()
  with pytest.raises(FileNotFoundError, match="train.idx does not exist"):
    faces.RecordIODataset(prefix)


def test_header_naming_records_the_idx_lacks_is_an_error(tmp_path):
  prefix = _copy_pack(tmp_path, "insightface")
  idx = pathlib.Path(f"{prefix}.idx")
  idx.write_text("".join(line for line in idx.read_text().splitlines(True) if line[0] != "4"))
  with pytest.raises(
    ValueError, match=r"records 1\.\.6, but .*train.idx lacks 1 of them \(e.g. key 4\)"
  ):
    faces.RecordIODataset(prefix)


def test_failed_pack_keeps_the_previous_pack_and_leaves_no_partial_file(folder, tmp_path):
  faces.write_pack(folder, tmp_path / "pack" / "train")
  (folder / "id_b" / "c.png").write_bytes(b"\x89PNG truncated")
  with pytest.raises(ValueError, match="c.png: not a readable JPEG or PNG image"):
    faces.write_pack(folder, tmp_path / "pack" / "train")
  assert sorted(p.name for p in (tmp_path / "pack").iterdir()) == [
    "property",
    "train.idx",
    "train.rec",
  ]
  assert len(faces.RecordIODataset(tmp_path / "pack" / "train")) == 6
  (folder / "id_b" / "c.png").write_bytes(_encode(_face(1, 2, shape=(9, 6)), ".png"))
  with pytest.raises(ValueError, match=r"c.png: image of shape \(9, 6, 3\), but .*0.png has shape"):
    faces.write_pack(folder, tmp_path / "other" / "train")
  assert not list((tmp_path / "other").iterdir())


# --- Verification pairs ------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_load_bin_reads_pairs(tmp_path, protocol):
  encoded = [data for _, _, data in _folder_files()[:4]]
  with open(tmp_path / "lfw.bin", "wb") as f:
    pickle.dump((encoded, [True, False]), f, protocol=protocol)
  images, same = faces.load_bin(tmp_path / "lfw.bin")
  assert (images.dtype, images.shape) == (np.uint8, (4, 8, 6, 3))
  np.testing.assert_array_equal(same, [True, False])
  for image, data in zip(images, encoded):
    np.testing.assert_array_equal(image, _rgb(data))
  np.testing.assert_array_equal(images[0], _face(0, 0))


class _Payload:
  def __reduce__(self):
    return (os.getcwd, ())


def test_load_bin_errors(tmp_path):
  encoded = [data for _, _, data in _folder_files()[:3]]
  (tmp_path / "odd.bin").write_bytes(pickle.dumps((encoded, [True, False])))
  with pytest.raises(ValueError, match=r"odd.bin: 3 images for \(2,\) is-same flags"):
    faces.load_bin(tmp_path / "odd.bin")
  (tmp_path / "evil.bin").write_bytes(pickle.dumps(([_Payload()], [True])))
  with pytest.raises(ValueError, match=r"evil.bin: not a verification .bin.*getcwd"):
    faces.load_bin(tmp_path / "evil.bin")
  (tmp_path / "junk.bin").write_bytes(pickle.dumps((encoded[:1] + [b"junk"], [True])))
  with pytest.raises(ValueError, match="junk.bin: image 1: not a readable"):
    faces.load_bin(tmp_path / "junk.bin")


def _write_lfw(tmp_path, counts):
  for name, count in counts.items():
    (tmp_path / "lfw" / name).mkdir(parents=True)
    for n in range(1, count + 1):  # PNG bytes under LFW's .jpg names: exact pixels.
      path = tmp_path / "lfw" / name / f"{name}_{n:04d}.jpg"
      path.write_bytes(_encode(_face(len(name), n), ".png"))
  return tmp_path / "lfw"


def test_load_lfw_pairs_keeps_lfw_folds(tmp_path):
  image_dir = _write_lfw(tmp_path, {"Ann": 2, "Bo_B": 1, "Cy": 2})
  (tmp_path / "pairs.txt").write_text(
    "2\t1\nAnn\t1\t2\nAnn\t1\tBo_B\t1\nCy\t1\t2\nBo_B\t1\tCy\t2\n\n"
  )
  images, same, folds = faces.load_lfw_pairs(tmp_path / "pairs.txt", image_dir)
  assert images.shape == (8, 8, 6, 3)
  np.testing.assert_array_equal(same, [True, False, True, False])
  np.testing.assert_array_equal(folds, [0, 0, 1, 1])
  names = [("Ann", 1), ("Ann", 2), ("Ann", 1), ("Bo_B", 1), ("Cy", 1), ("Cy", 2), ("Bo_B", 1)]
  names.append(("Cy", 2))
  for image, (name, n) in zip(images, names):
    np.testing.assert_array_equal(image, _face(len(name), n))
  (tmp_path / "dev.txt").write_text("1\nAnn\t1\t2\nAnn\t2\tCy\t1\n")  # pairsDevTest.txt's header.
  _, same, folds = faces.load_lfw_pairs(tmp_path / "dev.txt", image_dir)
  np.testing.assert_array_equal(same, [True, False])
  np.testing.assert_array_equal(folds, [0, 0])


def test_load_lfw_pairs_errors(tmp_path):
  image_dir = _write_lfw(tmp_path, {"Ann": 2})
  (tmp_path / "pairs.txt").write_text("1\t1\nAnn\t1\t2\nAnn\t1\n")
  with pytest.raises(ValueError, match=r"pairs.txt: line 3 is 'Ann 1', expected a different pair"):
    faces.load_lfw_pairs(tmp_path / "pairs.txt", image_dir)
  (tmp_path / "pairs.txt").write_text("1\t1\nAnn\t1\t2\n")
  with pytest.raises(ValueError, match="pairs.txt: 1 pair lines, expected 2"):
    faces.load_lfw_pairs(tmp_path / "pairs.txt", image_dir)
  (tmp_path / "pairs.txt").write_text("1\t1\nAnn\t1\t3\nAnn\t1\tAnn\t2\n")
  with pytest.raises(FileNotFoundError, match="Ann_0003.jpg, named in .*pairs.txt, does not exist"):
    faces.load_lfw_pairs(tmp_path / "pairs.txt", image_dir)
