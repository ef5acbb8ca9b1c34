"""Face-recognition data in the formats users hold, read without MXNet.

* `FolderDataset`: an image folder ``ROOT/<identity>/<image>.jpg|jpeg|png``,
  the layout of CASIA-WebFace and of insightface's custom datasets.
* `RecordIODataset`: an insightface pack ``PREFIX.rec`` + ``PREFIX.idx``
  (+ ``property``), as MXNet's ``MXIndexedRecordIO`` writes it: MS1M-ArcFace,
  Glint360K or CASIA-WebFace from insightface's dataset zoo, and packs made
  with ``python -m mxnet.tools.im2rec``.
* `load_bin`: insightface's verification sets (``lfw.bin``, ``cfp_fp.bin``,
  ``agedb_30.bin``); `load_lfw_pairs`: LFW's own ``pairs.txt`` and images.
* `write_pack`: an image folder to a pack that MXNet and insightface read.

Both datasets give random access (``len(ds)``, ``ds[i] -> (image, label)``)
with images decoded by OpenCV to uint8 ``[H, W, 3]`` RGB.

The RecordIO format (dmlc-core's ``recordio.h``): a ``.rec`` file is a
sequence of parts, each the little-endian uint32 magic ``0xced7230a``, a uint32
holding a continuation flag (top 3 bits) and a length (low 29 bits), then the
payload padded with zeros to a multiple of 4 bytes. A record whose payload
holds the magic at a 4-aligned offset is split there (flags 1, 2, ..., 3; the
magic itself is dropped and restored on reading), so a reader scanning for the
magic finds only part starts; flag 0 is a record of one part. The ``.idx`` is
text, one ``key<TAB>byte offset`` line per record. Each record's payload starts
with MXNet's ``IRHeader``, struct ``IfQQ`` (flag uint32, label float32, id
uint64, id2 uint64); when flag > 0, flag float32 labels follow it and the
header's own label is unused; the encoded image comes last.

The command line packs a folder or counts what a folder, pack or ``.bin``
holds::

  python -m margin_jax.data.faces pack --from-folder CASIA-WebFace --to faces/train
  python -m margin_jax.data.faces info faces/train
"""

import argparse
import functools
import operator
import os
import pathlib
import pickle
import struct
import tempfile

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_PART_HEADER = struct.Struct("<II")  # Magic, continuation flag << 29 | length.
_MAX_LENGTH = (1 << 29) - 1
_IR_HEADER = struct.Struct("<IfQQ")  # MXNet's IRHeader: flag, label, id, id2.
_JPEG_START = b"\xff\xd8\xff"
_FLOAT32_EXACT = 1 << 24  # Integers up to here are exact as the float32 labels of IRHeader.


def _decode(data: bytes, where) -> np.ndarray:
  """Decodes an encoded image to uint8 ``[H, W, 3]`` RGB, naming ``where`` if it cannot."""
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if len(data) else None
  if image is None:
    raise ValueError(f"{where}: not a readable JPEG or PNG image ({len(data)} bytes).")
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode_all(encoded, num: int) -> np.ndarray:
  """Decodes ``num`` images given as ``(bytes, where)`` into one uint8 ``[num, H, W, 3]``."""
  images, first = None, None
  for i, (data, where) in enumerate(encoded):
    image = _decode(data, where)
    if images is None:
      images, first = np.empty((num, *image.shape), np.uint8), where
    elif image.shape != images.shape[1:]:
      raise ValueError(
        f"{where}: image of shape {image.shape}, but {first} has shape"
        f" {images.shape[1:]}; expected every image of one size."
      )
    images[i] = image
  return images


def _index(i, size: int) -> int:
  """A sequence index in ``[-size, size)`` as one in ``[0, size)``."""
  i = operator.index(i)
  if not -size <= i < size:
    raise IndexError(f"Index {i} is out of range for {size} images.")
  return i % size


class FolderDataset:
  """Faces in an image folder ``ROOT/<identity>/<image>.jpg|jpeg|png``.

  CASIA-WebFace's layout. Identities are the sub-folders of ``root``, labelled
  ``0..K-1`` in the order of their names sorted as strings; the images of an
  identity are its files with a JPEG or PNG suffix (any case), sorted by name.
  Files directly under ``root``, deeper sub-folders and names starting with
  ``.`` are ignored. Images are decoded only when indexed.

  ``len(ds)`` and ``ds[i]`` make this a random-access source as grain's
  ``RandomAccessDataSource`` protocol expects (``grain.MapDataset.source(ds)``).

  Attributes:
    root: the folder, a `pathlib.Path`.
    identities: the identity folder names; ``identities[label]`` is one.
    files: every image's path (str), identity by identity.
    labels: int64 ``[num_images]``, each image's label.
    num_images: the number of images.
    num_classes: the number of identities.

  Raises:
    FileNotFoundError: ``root`` does not exist.
    NotADirectoryError: ``root`` is not a directory.
    ValueError: ``root`` holds no identity folder, or an identity folder holds
      no image.

  Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...   for i, name in enumerate(["bob", "alice", "alice"]):
    ...     os.makedirs(f"{root}/{name}", exist_ok=True)
    ...     _ = cv2.imwrite(f"{root}/{name}/{i}.png", np.full((4, 5, 3), i, np.uint8))
    ...   ds = FolderDataset(root)
    ...   image, label = ds[2]
    >>> ds.identities, len(ds), ds.num_classes, image.shape, image.dtype, label
    (['alice', 'bob'], 3, 2, (4, 5, 3), dtype('uint8'), 1)
  """

  def __init__(self, root):
    self.root = pathlib.Path(root)
    if not self.root.exists():
      raise FileNotFoundError(f"Image folder {self.root} does not exist.")
    if not self.root.is_dir():
      raise NotADirectoryError(
        f"{self.root} is not a directory; expected an image folder"
        " ROOT/<identity>/<image>.jpg|jpeg|png."
      )
    folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
      raise ValueError(
        f"Image folder {self.root} holds no identity folder; expected"
        " ROOT/<identity>/<image>.jpg|jpeg|png."
      )
    self.identities = [p.name for p in folders]
    self.files, labels = [], []
    for label, folder in enumerate(folders):
      images = sorted(
        p.name
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
      )
      if not images:
        raise ValueError(
          f"Identity folder {folder} holds no image; expected files named"
          f" *{'|'.join(IMAGE_SUFFIXES)}."
        )
      self.files += [str(folder / name) for name in images]
      labels += [label] * len(images)
    self.labels = np.array(labels, np.int64)
    self.num_images = len(self.files)
    self.num_classes = len(self.identities)

  def __len__(self) -> int:
    return self.num_images

  def __getitem__(self, i) -> tuple[np.ndarray, int]:
    """Returns image ``i`` (uint8 ``[H, W, 3]`` RGB) and its label."""
    i = _index(i, self.num_images)
    path = self.files[i]
    return _decode(pathlib.Path(path).read_bytes(), path), int(self.labels[i])


def _pack_paths(prefix) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
  """The ``.rec``, ``.idx`` and ``property`` files of a pack; ``prefix`` may end in .rec/.idx."""
  prefix = pathlib.Path(prefix)
  if prefix.suffix in (".rec", ".idx"):
    prefix = prefix.with_suffix("")
  return (
    prefix.with_name(prefix.name + ".rec"),
    prefix.with_name(prefix.name + ".idx"),
    prefix.parent / "property",
  )


def _unpack(record: bytes, where: str) -> tuple[int, int, bytes]:
  """Splits a record's payload into its IRHeader flag, its (first) label and the rest."""
  if len(record) < _IR_HEADER.size:
    raise ValueError(
      f"{where}: the record holds {len(record)} bytes, fewer than the"
      f" {_IR_HEADER.size}-byte IRHeader."
    )
  flag, label = _IR_HEADER.unpack_from(record)[:2]
  if flag > 0:
    label = struct.unpack_from("<f", record, _IR_HEADER.size)[0]
  if not (label >= 0 and float(label).is_integer()):
    raise ValueError(f"{where}: the record's label is {label}, expected a non-negative integer.")
  return flag, int(label), record[_IR_HEADER.size + 4 * flag :]


class RecordIODataset:
  """Faces in an insightface RecordIO pack ``PREFIX.rec`` + ``PREFIX.idx``.

  Read as insightface's ``MXFaceDataset`` reads it, without MXNet: if the
  ``.idx`` lists key 0 and record 0's IRHeader has flag > 0, record 0 is
  insightface's header and its first label ``L`` says the images are records
  ``1..L-1`` (the records after them, each identity's range of image keys,
  are not needed); otherwise every record the ``.idx`` lists is an image, in
  the ``.idx``'s order (packs of ``mxnet.tools.im2rec`` and of insightface's
  ``RecBuilder``). An image's label is its IRHeader's label, or the first of
  its labels when it has several (flag > 0); labels are float32 in the file,
  exact up to 2**24 identities.

  ``num_classes`` is the first number of the ``property`` file in the pack's
  directory (``num_classes,height,width``, as insightface writes it) if there
  is one, else the largest label + 1, which reads every image's header once.
  Records are read with ``os.pread``, so threads and forked processes can
  share a dataset; it pickles without its open file.

  ``len(ds)`` and ``ds[i]`` make this a random-access source as grain's
  ``RandomAccessDataSource`` protocol expects (``grain.MapDataset.source(ds)``).

  Attributes:
    rec_path, idx_path, property_path: the pack's files (`pathlib.Path`);
      ``prefix`` may name the pack with or without ``.rec``.
    keys: int64 ``[num_images]``, each image's record key.
    num_images: the number of images.

  Raises:
    FileNotFoundError: the ``.rec`` or the ``.idx`` does not exist.
    ValueError: the ``.idx`` or ``property`` file is malformed, or the header
      record names keys the ``.idx`` lacks. Reading a record raises it too,
      naming the file and the offset, for a bad magic or a truncated record.

  Usage::

    ds = RecordIODataset("faces_emore/train")  # train.rec, train.idx, property
    image, label = ds[0]  # uint8 (112, 112, 3) RGB, an int
    ds.num_images, ds.num_classes  # (5822653, 85742)
  """

  def __init__(self, prefix):
    self.rec_path, self.idx_path, self.property_path = _pack_paths(prefix)
    for path in (self.rec_path, self.idx_path):
      if not path.is_file():
        raise FileNotFoundError(
          f"{path} does not exist; a RecordIO pack is PREFIX.rec with its index"
          " PREFIX.idx (write_pack renames the .idx last: without it a pack is incomplete)."
        )
    self._file = None
    keys, offsets = self._read_index()
    self.keys, self._offsets = keys, offsets
    if (keys == 0).any():
      offset = int(offsets[np.flatnonzero(keys == 0)[0]])
      where = f"{self.rec_path}: record key 0 at offset {offset}"
      flag, end, _ = _unpack(self._read_at(offset, where, limit=_IR_HEADER.size + 4), where)
      if flag > 0:  # insightface's header: images are records 1..end-1.
        order = np.argsort(keys)
        self.keys = np.arange(1, end, dtype=np.int64)
        found = np.minimum(np.searchsorted(keys, self.keys, sorter=order), len(keys) - 1)
        missing = self.keys[keys[order[found]] != self.keys]
        if missing.size:
          raise ValueError(
            f"{where} is insightface's header saying images are records 1..{end - 1},"
            f" but {self.idx_path} lacks {missing.size} of them (e.g. key {missing[0]})."
          )
        self._offsets = offsets[order[found]]
    self.num_images = len(self.keys)
    if not self.num_images:
      raise ValueError(f"{self.idx_path}: the pack holds no image record.")

  def _read_index(self) -> tuple[np.ndarray, np.ndarray]:
    """The ``.idx``'s keys and offsets, int64 ``[M]`` each, in its order."""
    if not self.idx_path.stat().st_size:
      raise ValueError(f"{self.idx_path} is empty; expected 'key<TAB>offset' lines.")
    try:
      table = np.loadtxt(self.idx_path, dtype=np.int64, delimiter="\t", ndmin=2)
    except ValueError as e:
      raise ValueError(f"{self.idx_path}: expected 'key<TAB>offset' integer lines ({e}).") from e
    if table.shape[1] != 2:
      raise ValueError(
        f"{self.idx_path}: lines of {table.shape[1]} fields, expected 'key<TAB>offset'."
      )
    keys = np.sort(table[:, 0])
    repeated = keys[1:][keys[1:] == keys[:-1]]
    if repeated.size:
      raise ValueError(f"{self.idx_path} lists key {repeated[0]} more than once.")
    return table[:, 0], table[:, 1]

  def __getstate__(self) -> dict:
    return self.__dict__ | {"_file": None}

  def _read_at(self, offset: int, where: str, *, limit: int | None = None) -> bytes:
    """Reads the record at ``offset``, joining its parts; stops after ``limit`` bytes if given."""
    if self._file is None:
      self._file = open(self.rec_path, "rb")  # noqa: SIM115 - kept open for os.pread.
    fd = self._file.fileno()
    parts, size, position, first = [], 0, offset, True
    while True:
      head = os.pread(fd, _PART_HEADER.size, position)
      if len(head) < _PART_HEADER.size:
        raise ValueError(
          f"{where}: the file ends at offset {os.fstat(fd).st_size}, before the"
          f" 8-byte header of the part at offset {position} (truncated?)."
        )
      magic, word = _PART_HEADER.unpack(head)
      if magic != RECORDIO_MAGIC:
        raise ValueError(
          f"{where}: found 0x{magic:08x} at offset {position}, expected the RecordIO"
          f" magic 0x{RECORDIO_MAGIC:08x} (corrupt .rec, or an .idx of another file)."
        )
      flag, length = word >> 29, word & _MAX_LENGTH
      if flag not in ((0, 1) if first else (2, 3)):
        raise ValueError(
          f"{where}: the part at offset {position} has continuation flag {flag},"
          f" expected {'0 or 1 (a record start)' if first else '2 or 3 (a continuation)'}."
        )
      wanted = length if limit is None else min(length, limit - size)
      data = os.pread(fd, wanted, position + _PART_HEADER.size)
      if len(data) < wanted:
        raise ValueError(
          f"{where}: the part at offset {position} declares {length} bytes but the"
          f" file ends after {len(data)} of them (truncated?)."
        )
      parts.append(data)
      size += wanted
      if flag in (0, 3):
        return b"".join(parts)
      parts.append(_MAGIC_BYTES)  # The writer split the record where the magic was.
      size += len(_MAGIC_BYTES)
      if limit is not None and size >= limit:
        return b"".join(parts)
      position += _PART_HEADER.size + -(-length // 4) * 4
      first = False

  def _read_image(self, i: int, *, limit: int | None = None) -> tuple[int, bytes, str]:
    """Image ``i``'s label, encoded bytes and a description naming its record."""
    where = f"{self.rec_path}: record key {self.keys[i]} at offset {self._offsets[i]}"
    _, label, data = _unpack(self._read_at(int(self._offsets[i]), where, limit=limit), where)
    return label, data, where

  def __len__(self) -> int:
    return self.num_images

  def __getitem__(self, i) -> tuple[np.ndarray, int]:
    """Returns image ``i`` (uint8 ``[H, W, 3]`` RGB) and its label."""
    label, data, where = self._read_image(_index(i, self.num_images))
    return _decode(data, where), label

  @functools.cached_property
  def labels(self) -> np.ndarray:
    """int64 ``[num_images]``, each image's label (reads every image's header once)."""
    limit = _IR_HEADER.size + 4
    return np.array([self._read_image(i, limit=limit)[0] for i in range(self.num_images)], np.int64)

  @functools.cached_property
  def num_classes(self) -> int:
    """Identities: from the ``property`` file if present, else the largest label + 1."""
    if not self.property_path.is_file():
      return int(self.labels.max()) + 1
    line = self.property_path.read_text().partition("\n")[0]
    fields = line.split(",")
    if len(fields) != 3 or not all(f.strip().isdigit() for f in fields):
      raise ValueError(
        f"{self.property_path}: first line is {line!r}, expected 'num_classes,height,width'."
      )
    return int(fields[0])


def _write_record(f, payload: bytes) -> None:
  """Appends one RecordIO record to ``f``, split where the magic sits at a 4-aligned offset."""
  if len(payload) > _MAX_LENGTH:
    raise ValueError(f"A RecordIO record holds at most {_MAX_LENGTH} bytes, got {len(payload)}.")
  cuts, start = [], payload.find(_MAGIC_BYTES)
  while start >= 0:
    if start % 4 == 0:
      cuts.append(start)
    start = payload.find(_MAGIC_BYTES, start + 1)
  begin = 0
  for n, end in enumerate([*cuts, len(payload)]):
    last = n == len(cuts)
    flag = (3 if cuts else 0) if last else (2 if n else 1)
    f.write(_PART_HEADER.pack(RECORDIO_MAGIC, flag << 29 | end - begin))
    f.write(payload[begin:end])
    f.write(bytes(-(end - begin) % 4))
    begin = end + len(_MAGIC_BYTES)


def _temporary_beside(path: pathlib.Path) -> pathlib.Path:
  fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
  os.close(fd)
  return pathlib.Path(name)


def write_pack(folder, prefix, *, quality: int = 95) -> RecordIODataset:
  """Writes an image folder as an insightface RecordIO pack, atomically.

  The pack is laid out as insightface's ``face2rec2`` writes it: record 0 is
  the header, IRHeader(flag=2, id=0) with labels ``(N + 1, N + 1 + K)``;
  records ``1..N`` are the images in `FolderDataset` order, each
  IRHeader(flag=0, label=float(label), id=key, id2=0) then the image file's
  bytes (JPEG files as they are; PNG files re-encoded to JPEG); records
  ``N + 1..N + K`` give each identity's image keys ``[start, end)`` as
  IRHeader(flag=2, id=key) with labels ``(start, end)``. When ``N + K + 1``
  exceeds 2**24, past which float32 labels cannot hold every key, the pack
  has no header and no identity records and the images are records
  ``0..N-1``, as insightface's ``RecBuilder`` writes them. The ``property``
  file reads ``K,H,W``. MXNet's ``MXIndexedRecordIO`` and insightface's
  ``MXFaceDataset`` read the result, and so does `RecordIODataset`.

  Every image is decoded first (an unreadable one raises, naming the file),
  and all must share one size, the one ``property`` records. The three files
  are written under temporary names beside their final ones and renamed only
  when complete, the ``.idx`` last (after removing any old one), so an
  interrupted run never leaves a pack that a reader accepts.

  Args:
    folder: an image folder ``ROOT/<identity>/<image>.jpg|jpeg|png``.
    prefix: writes ``PREFIX.rec``, ``PREFIX.idx`` and ``property`` in
      ``PREFIX``'s directory (created if needed; a ``property`` there is
      replaced, so give each pack its own directory).
    quality: the JPEG quality for images that are not JPEG files already.

  Returns:
    The written pack, as a `RecordIODataset`.

  Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...   for i, name in enumerate(["bob", "alice", "alice"]):
    ...     os.makedirs(f"{tmp}/faces/{name}", exist_ok=True)
    ...     _ = cv2.imwrite(f"{tmp}/faces/{name}/{i}.png", np.full((4, 5, 3), i, np.uint8))
    ...   pack = write_pack(f"{tmp}/faces", f"{tmp}/pack/train")
    ...   files = sorted(p.name for p in pathlib.Path(tmp, "pack").iterdir())
    ...   image, label = pack[2]
    ...   prop = pack.property_path.read_text()
    >>> files, len(pack), pack.num_classes, prop, image.shape, label
    (['property', 'train.idx', 'train.rec'], 3, 2, '2,4,5\\n', (4, 5, 3), 1)
  """
  source = FolderDataset(folder)
  rec_path, idx_path, property_path = finals = _pack_paths(prefix)
  rec_path.parent.mkdir(parents=True, exist_ok=True)
  temporaries = [_temporary_beside(path) for path in finals]
  num, num_classes = source.num_images, source.num_classes
  with_header = num + num_classes + 1 <= _FLOAT32_EXACT
  try:
    with open(temporaries[0], "wb") as rec, open(temporaries[1], "w") as idx:

      def put(key: int, ir_header: tuple, payload: bytes) -> None:
        idx.write(f"{key}\t{rec.tell()}\n")
        _write_record(rec, _IR_HEADER.pack(*ir_header) + payload)

      if with_header:
        put(0, (2, 0.0, 0, 0), np.array([num + 1, num + 1 + num_classes], "<f4").tobytes())
      shape = None
      first_key = 1 if with_header else 0
      for key, (path, label) in enumerate(zip(source.files, source.labels.tolist()), first_key):
        data = pathlib.Path(path).read_bytes()
        image = _decode(data, path)
        if shape is None:
          shape, first = image.shape, path
        elif image.shape != shape:
          raise ValueError(
            f"{path}: image of shape {image.shape}, but {first} has shape {shape};"
            " a pack's property file records one size, so align or resize the faces first."
          )
        if not data.startswith(_JPEG_START):
          ok, encoded = cv2.imencode(
            ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
          )
          if not ok:
            raise ValueError(f"{path}: OpenCV could not encode the image as JPEG.")
          data = encoded.tobytes()
        put(key, (0, float(label), key, 0), data)
      if with_header:
        ends = np.cumsum(np.bincount(source.labels, minlength=num_classes)) + 1
        for label, (start, end) in enumerate(zip([1, *ends[:-1]], ends)):
          key = num + 1 + label
          put(key, (2, 0.0, key, 0), np.array([start, end], "<f4").tobytes())
      for f in (rec, idx):
        f.flush()
        os.fsync(f.fileno())
    with open(temporaries[2], "w") as f:
      f.write(f"{num_classes},{shape[0]},{shape[1]}\n")
    idx_path.unlink(missing_ok=True)  # Readers need the .idx: it goes first, comes back last.
    os.replace(temporaries[0], rec_path)
    os.replace(temporaries[2], property_path)
    os.replace(temporaries[1], idx_path)
  finally:
    for temporary in temporaries:
      temporary.unlink(missing_ok=True)
  return RecordIODataset(prefix)


class _BinUnpickler(pickle.Unpickler):
  """Unpickles only what a verification ``.bin`` holds: lists, bytes, bools, numpy arrays."""

  _ALLOWED = frozenset(
    {
      ("_codecs", "encode"),  # Bytes pickled by Python 3 with protocol 2.
      ("builtins", "bytearray"),
      ("numpy", "dtype"),
      ("numpy", "ndarray"),
      ("numpy.core.multiarray", "_reconstruct"),
      ("numpy._core.multiarray", "_reconstruct"),
      ("numpy.core.multiarray", "scalar"),
      ("numpy._core.multiarray", "scalar"),
    }
  )

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a .bin never needs")
    return super().find_class(module, name)


def load_bin(path) -> tuple[np.ndarray, np.ndarray]:
  """Reads an insightface verification set: ``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``...

  The file is a pickle of ``(encoded images, is-same flags)``: a list of 2N
  JPEG or PNG files (images ``2k`` and ``2k + 1`` are pair ``k``) and a list
  of N booleans, as insightface reads it with ``pickle.load(f,
  encoding="bytes")``. The unpickler accepts only lists, bytes, booleans and
  numpy arrays, so a crafted file cannot run code.

  Args:
    path: the ``.bin`` file.

  Returns:
    ``(images, same)``: uint8 ``[2N, H, W, 3]`` RGB and bool ``[N]``.

  Usage::

    images, same = load_bin("faces_emore/lfw.bin")  # (12000, 112, 112, 3), (6000,)
    first, second = images[0::2], images[1::2]  # the pairs
  """
  path = pathlib.Path(path)
  with open(path, "rb") as f:
    try:
      encoded, same = _BinUnpickler(f, encoding="bytes").load()
      same = np.asarray(same, bool)
      num = len(encoded)
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError) as e:
      raise ValueError(
        f"{path}: not a verification .bin, a pickle of (list of encoded images,"
        f" list of is-same flags) ({e})."
      ) from e
  if same.ndim != 1 or not len(same) or num != 2 * len(same):
    raise ValueError(
      f"{path}: {num} images for {same.shape} is-same flags; expected two images a pair"
      " and at least one pair."
    )
  return _decode_all(((data, f"{path}: image {i}") for i, data in enumerate(encoded)), num), same


def load_lfw_pairs(pairs_txt, image_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Reads LFW's verification pairs from its own ``pairs.txt`` and image folder.

  ``pairs.txt`` starts with ``num_folds<TAB>pairs_per_fold`` (``10 300``),
  then per fold ``pairs_per_fold`` same pairs ``name n1 n2`` followed by as
  many different pairs ``name1 n1 name2 n2``; ``pairsDevTrain.txt`` and
  ``pairsDevTest.txt`` start with the pair count alone (one fold). Image ``n``
  of ``name`` is ``image_dir/name/name_{n:04d}.jpg``: the original LFW or an
  aligned copy with the same names.

  Args:
    pairs_txt: the pairs file.
    image_dir: the folder of one sub-folder per person.

  Returns:
    ``(images, same, folds)``: uint8 ``[2N, H, W, 3]`` RGB (images ``2k``
    and ``2k + 1`` are pair ``k``), bool ``[N]`` and int64 ``[N]``, each
    pair's fold in LFW's 10-fold protocol.

  Usage::

    images, same, folds = load_lfw_pairs("lfw/pairs.txt", "lfw/lfw")
    images.shape, same.sum(), np.bincount(folds)  # (12000, 250, 250, 3), 3000, [600] * 10
  """
  pairs_txt, image_dir = pathlib.Path(pairs_txt), pathlib.Path(image_dir)
  lines = [
    (n, line.split())
    for n, line in enumerate(pairs_txt.read_text().splitlines(), 1)
    if line.strip()
  ]
  header = lines[0][1] if lines else []
  if len(header) not in (1, 2) or not all(f.isdigit() and int(f) > 0 for f in header):
    raise ValueError(
      f"{pairs_txt}: first line is {header}, expected 'num_folds<TAB>pairs_per_fold'"
      " or a pair count."
    )
  num_folds, per_fold = (1, int(header[0])) if len(header) == 1 else map(int, header)
  if len(lines) - 1 != 2 * num_folds * per_fold:
    raise ValueError(
      f"{pairs_txt}: {len(lines) - 1} pair lines, expected {2 * num_folds * per_fold}"
      f" ({num_folds} folds of {per_fold} same and {per_fold} different pairs)."
    )
  paths, same = [], []
  for pair, (line, fields) in enumerate(lines[1:]):
    is_same = pair % (2 * per_fold) < per_fold
    names = [fields[0], fields[0]] if is_same else fields[0::2]
    numbers = fields[1:] if is_same else fields[1::2]
    if len(fields) != (3 if is_same else 4) or not all(n.isdigit() for n in numbers):
      raise ValueError(
        f"{pairs_txt}: line {line} is {' '.join(fields)!r}, expected a"
        f" {'same pair: name n1 n2' if is_same else 'different pair: name1 n1 name2 n2'}."
      )
    paths += [image_dir / name / f"{name}_{int(n):04d}.jpg" for name, n in zip(names, numbers)]
    same.append(is_same)
  for path in paths:
    if not path.is_file():
      raise FileNotFoundError(f"{path}, named in {pairs_txt}, does not exist.")
  images = _decode_all(((path.read_bytes(), path) for path in paths), len(paths))
  folds = np.arange(len(same)) // (2 * per_fold)
  return images, np.array(same, bool), folds.astype(np.int64)


def open_source(path):
  """The training set at ``path``: a `RecordIODataset` for a ``.rec`` file or
  its prefix (``PREFIX.rec`` beside it), else a `FolderDataset`."""
  path = pathlib.Path(path)
  if path.suffix == ".rec":
    return RecordIODataset(path.with_suffix(""))
  if path.with_name(path.name + ".rec").is_file():
    return RecordIODataset(path)
  return FolderDataset(path)


def load_pairs(path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  """A verification set by its file: ``(images [2N, H, W, 3], same [N],
  folds [N] or None)``. A ``.bin`` is `load_bin`'s (no folds of its own:
  10 consecutive folds, as insightface evaluates it); a ``.txt`` is LFW's
  ``pairs.txt`` with its person folders beside it (`load_lfw_pairs`)."""
  path = pathlib.Path(path)
  if path.suffix == ".bin":
    return (*load_bin(path), None)
  if path.suffix == ".txt":
    return load_lfw_pairs(path, path.parent)
  raise ValueError(f"{path}: expected a .bin verification set or an LFW pairs .txt file.")


def main(argv=None) -> None:
  """Parses the command line and packs a folder or describes a folder, pack or ``.bin``."""
  parser = argparse.ArgumentParser(
    prog="python -m margin_jax.data.faces",
    description="Pack a face image folder as an insightface RecordIO pack, or count"
    " what an image folder, a pack or a verification .bin holds.",
  )
  commands = parser.add_subparsers(dest="command", required=True)
  pack = commands.add_parser("pack", help="write PREFIX.rec, PREFIX.idx and property")
  pack.add_argument(
    "--from-folder", required=True, metavar="DIR", help="image folder DIR/<identity>/<image>"
  )
  pack.add_argument(
    "--to", required=True, metavar="PREFIX", help="the pack to write (property goes beside it)"
  )
  pack.add_argument(
    "--quality", type=int, default=95, help="JPEG quality for non-JPEG images (default: 95)"
  )
  info = commands.add_parser("info", help="print the images and identities of PATH")
  info.add_argument("path", help="an image folder, a pack PREFIX (or PREFIX.rec) or a .bin")
  args = parser.parse_args(argv)
  try:
    if args.command == "pack":
      ds = write_pack(args.from_folder, args.to, quality=args.quality)
      print(
        f"Wrote {ds.rec_path}, {ds.idx_path} and {ds.property_path}:"
        f" {ds.num_images} images, {ds.num_classes} identities."
      )
    elif pathlib.Path(args.path).suffix == ".bin":
      images, same = load_bin(args.path)
      print(f"{args.path}: {len(same)} pairs ({same.sum()} same) of {images.shape[1:3]} images.")
    else:
      is_folder = pathlib.Path(args.path).is_dir()
      ds = (FolderDataset if is_folder else RecordIODataset)(args.path)
      kind = "image folder" if is_folder else "RecordIO pack"
      print(f"{args.path}: {ds.num_images} images, {ds.num_classes} identities ({kind}).")
  except (OSError, ValueError) as e:
    parser.exit(1, f"{parser.prog}: error: {e}\n")


if __name__ == "__main__":
  main()
