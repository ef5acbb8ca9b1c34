"""Command line: build tfds datasets from local raw files, atomically.

Usage::

  python -m margin_jax.data.prepare --source DIR --data-dir DIR \\
      [--datasets mnist fashion_mnist cifar10_jpeg]

``--source`` (default ``$MARGIN_JAX_DATA``) holds one folder of official raw
files per dataset, e.g. ``mnist/*-ubyte.gz``; ``--data-dir`` (default
``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``) receives the prepared
tfds datasets. See `margin_jax.data.offline.prepare`.
"""

import argparse
import os
import pathlib

from margin_jax.data import offline
from margin_jax.data import raw
from margin_jax.data import registry


def main(argv=None) -> None:
  """Parses the command line and prepares each requested dataset."""
  preparable = [n for n, s in registry.DATASETS.items() if s.offline]
  parser = argparse.ArgumentParser(
    prog="python -m margin_jax.data.prepare",
    description="Build tfds datasets from local raw files, atomically.",
  )
  parser.add_argument(
    "--source",
    default=os.environ.get("MARGIN_JAX_DATA"),
    help="folder with <dataset>/<raw files> (default: $MARGIN_JAX_DATA)",
  )
  parser.add_argument(
    "--data-dir",
    default=offline.default_data_dir(),
    help="tfds data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
  )
  parser.add_argument(
    "--datasets",
    nargs="+",
    choices=preparable,
    help="datasets to prepare (default: every one with raw files in --source)",
  )
  args = parser.parse_args(argv)
  if not args.source:
    parser.error("--source is required when $MARGIN_JAX_DATA is not set")
  source = pathlib.Path(args.source)
  names = args.datasets or [n for n in preparable if raw.raw_files_present(n, source / n)]
  if not names:
    parser.error(f"no raw files of {preparable} found under {source}")
  for name in names:
    print(f"{name}: {offline.prepare(name, source_dir=source, data_dir=args.data_dir)}")


if __name__ == "__main__":
  main()
