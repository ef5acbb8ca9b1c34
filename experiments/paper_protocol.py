r"""The papers' own protocols at full width and length, one command on an accelerator.

  python -m experiments.paper_protocol [--tables ...] [--runs ...] [--seeds 0 1 2]
      [--max-steps N] [--runs-dir DIR] [--estimate]

Trains the campaign's full-protocol tables (`experiments.campaign`,
``full_protocol``) on the datasets held offline, each run by
`campaign.train_run`: the same exact commands, records and resumption as the
campaign, seed-major. Each table's config header holds its protocol and the
paper's numbers:

  lsoftmax_table2_mnist    L-Softmax Table 2 (lsoftmax_mnist.py): softmax, m = 2, 4
  virtual_table3_mnist     Virtual Softmax Table 3 (virtual_mnist.py): softmax, virtual
  lsoftmax_table3_cifar10  L-Softmax Table 3, CIFAR10+ (lsoftmax_cifar10.py): softmax, m = 2, 4
  virtual_table4_cifar10   Virtual Softmax Tables 2, 4 at t = 4 (virtual_cifar10.py)

The CIFAR-10 here is a JPEG (q75) copy: its errors compare the losses, not
the papers' numbers. The datasets are first prepared from the raw files in
``$MARGIN_JAX_DATA/<dataset>/`` (../shared/datasets here) into the tfds
directory (``$TFDS_DATA_DIR``), as a machine without network needs.
``--max-steps N`` is a smoke test: its records go under table
``<table>_max<N>steps``, with ``max_steps``, so never stand for a full run,
and by default into workdirs/smoke_runs/.

``--estimate`` prints each table's time on one H100, training nothing: the
FLOPs of one training step (forward, backward, update; XLA's cost analysis of
the lowered step, within 0.5% of the compiled one's) times its steps, runs and
seeds, at an achieved 30% of peak: 120 TFLOP/s with TF32 tensor cores (JAX's
default for float32 convolutions on GPU; peak ~400) and 18 TFLOP/s in true
float32 (peak ~60). Not counted: evaluation (1-2% more FLOPs), compilation and
per-step overheads, which bound the small MNIST nets. With 3 seeds:

  table                    runs x seeds  steps x batch  GFLOP/example  PFLOP  TF32 min  FP32 min
  lsoftmax_table2_mnist       3 x 3      18000 x 256            0.65   27.0       3.7      25.0
  virtual_table3_mnist        2 x 3      20000 x 128            0.18    2.7       0.4       2.5
  lsoftmax_table3_cifar10     3 x 3      18000 x 256            1.50   62.1       8.6      57.5
  virtual_table4_cifar10      2 x 3      20000 x 128            9.10  139.7      19.4     129.4

  lsoftmax_table5_face        4 x 3      26824 x 512           35.22  5803.9     806.1    5374.0
  noisy_face                  2 x 3      26824 x 512           35.22  2902.0     403.1    2687.0
  virtual_table6_face         2 x 3      26824 x 512            9.64   794.6     110.4     735.8

The first four: ~32 min at TF32, ~3.6 h in float32. The face tables
(`experiments/configs/face.py`: CASIA-WebFace, IResNet-50, or SphereFace-20
for Virtual Softmax; estimated only, they run as that config's one command
where the data are): ~22 h at TF32 for 3 seeds of all three.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import pathlib
import sys

from experiments import campaign, records
from margin_jax.training import train

TABLES = [name for name, table in campaign.TABLES.items() if table.full_protocol]
# The papers' face protocols (experiments/configs/face.py: CASIA-WebFace,
# 10,575 identities, batch 512, 28 epochs), estimated only: they train with
# the face config's one command on a machine that holds the data. Table ->
# (number of runs, network).
FACE_TABLES = {
  "lsoftmax_table5_face": (4, "iresnet50"),  # softmax, m = 2, 3, 4
  "noisy_face": (2, "iresnet50"),  # softmax, Noisy Softmax
  "virtual_table6_face": (2, "sphereface20"),  # softmax, Virtual Softmax
}
FACE_DATA = {"image_shape": (112, 112, 3), "num_classes": 10_575}
SMOKE_RUNS = campaign.ROOT / "workdirs" / "smoke_runs"
# Achieved FLOP/s assumed on one H100: 30% of the TF32 tensor-core and float32 peaks.
THROUGHPUT = {"TF32": 0.3 * 400e12, "FP32": 0.3 * 60e12}


def get_config(table: campaign.Table, overrides: dict):
  """The table's config with a run's overrides."""
  module = importlib.import_module(table.config.removesuffix(".py").replace("/", "."))
  config = module.get_config()
  config.update(overrides)
  return config


def step_flops(config, image_shape=None, num_classes=None) -> float:
  """FLOPs of one training step of ``config`` (``train.training_step`` on one
  device, the whole batch), from XLA's cost analysis of its lowering; the
  data's image shape and classes are its dataset's unless given."""
  import jax
  import numpy as np

  from margin_jax.data import registry, transforms
  from margin_jax import sharding
  from margin_jax.training import objectives, train

  if image_shape is None:
    spec = registry.get_spec(config.dataset)
    image_shape, num_classes = spec.image_shape, spec.num_classes
  mean = np.zeros(image_shape, np.float32)
  preprocess = functools.partial(transforms.preprocess, recipe=config.preprocess, mean=mean)
  image = np.zeros((1, *image_shape), np.uint8)
  shape = jax.eval_shape(lambda: preprocess(jax.random.key(0), image, train=True)).shape
  objective = objectives.get_objective(config)
  model = train.create_model(config, num_classes, objective=objective)

  def init():
    variables = model.init(jax.random.key(0), jax.numpy.zeros(shape), train=False)
    return train.new_train_state(config, model, variables, objective=objective)

  def one_device(shape, dtype):
    return jax.ShapeDtypeStruct((1, *shape), dtype)

  state = jax.tree.map(lambda x: one_device(x.shape, x.dtype), jax.eval_shape(init))
  batch = {
    "image": one_device((config.batch_size, *image_shape), np.uint8),
    "label": one_device((config.batch_size,), np.int32),
  }
  step = train.training_step(
    config, objective=objective, preprocess=preprocess, key=jax.random.key(0)
  )
  p_step = jax.pmap(step, axis_name=sharding.DATA_AXIS, devices=jax.local_devices()[:1])
  cost = p_step.lower(state, batch).cost_analysis()
  return (cost[0] if isinstance(cost, list) else cost)["flops"]


def _face_config(model: str):
  """The face protocol's config with ``model``."""
  module = importlib.import_module("experiments.configs.face")
  config = module.get_config()
  config.model = model
  return config


def print_estimates(tables: list[str], num_seeds: int) -> None:
  """A row per table: its FLOPs (the baseline's step; the other losses' heads
  add < 0.01%) and its minutes on one H100 at each assumed throughput."""
  rates = "".join(f"  {k} min ({v / 1e12:.0f} TFLOP/s)" for k, v in THROUGHPUT.items())
  print(f"{'table':<25}runs x seeds  steps x batch  GFLOP/example  PFLOP{rates}")
  face_flops = {}  # network -> FLOPs of its step (two tables share IResNet-50's)
  for name in tables:
    if name in FACE_TABLES:
      num_runs, model = FACE_TABLES[name]
      config = _face_config(model)
      if model not in face_flops:
        height, width = train.FACE_INPUT.get(model, FACE_DATA["image_shape"][:2])
        face_flops[model] = step_flops(config, (height, width, 3), FACE_DATA["num_classes"])
      flops = face_flops[model]
    else:
      table = campaign.TABLES[name]
      config = get_config(table, table.runs[table.baseline])
      flops, num_runs = step_flops(config), len(table.runs)
    total = flops * config.num_train_steps * num_runs * num_seeds
    minutes = "".join(f"  {total / v / 60:>{len(k) + 20}.1f}" for k, v in THROUGHPUT.items())
    steps = f"{config.num_train_steps:>5} x {config.batch_size:<4}"
    print(
      f"{name:<25}{num_runs:>4} x {num_seeds:<5}  {steps}  "
      f"{flops / config.batch_size / 1e9:>13.2f}  {total / 1e15:>5.1f}{minutes}"
    )


def prepare_data(tables: list[str]) -> None:
  """Prepares each table's dataset from ``$MARGIN_JAX_DATA/<dataset>/`` unless
  the tfds directory has it; exits naming the folder that lacks it."""
  import tensorflow_datasets as tfds

  from margin_jax.data import prepare, raw

  source = os.environ.get("MARGIN_JAX_DATA")
  data_dir = prepare.default_data_dir()
  for name in sorted({get_config(campaign.TABLES[t], {}).dataset for t in tables}):
    if tfds.builder(name, data_dir=data_dir).is_prepared():
      continue
    folder = pathlib.Path(source or "$MARGIN_JAX_DATA") / name
    if not source or not raw.raw_files_present(name, folder):
      sys.exit(
        f"error: {name} is not prepared in {data_dir} and {folder} holds no raw"
        f" {name} files: set MARGIN_JAX_DATA to the folder of the offline datasets"
        " (../shared/datasets here)."
      )
    print(f"{name}: prepared in {prepare.build(name, source_dir=source, data_dir=data_dir)}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    prog="python -m experiments.paper_protocol", description=__doc__.splitlines()[0]
  )
  parser.add_argument("--tables", nargs="+", choices=TABLES, default=TABLES)
  parser.add_argument("--runs", nargs="+", help="only these run names (default: all)")
  parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
  parser.add_argument(
    "--max-steps", type=int, help="smoke test: stop each run there (a table of its own)"
  )
  parser.add_argument(
    "--runs-dir",
    type=pathlib.Path,
    help=f"records (default: {records.RUNS}, or {SMOKE_RUNS} with --max-steps)",
  )
  parser.add_argument("--estimate", action="store_true", help="print H100 times, train nothing")
  args = parser.parse_args(argv)
  if args.estimate:
    print_estimates([*args.tables, *FACE_TABLES], len(args.seeds))
    return
  runs_dir = args.runs_dir or (records.RUNS if args.max_steps is None else SMOKE_RUNS)
  prepare_data(args.tables)
  # Each run's subprocess and this process (its record's outputs) share one GPU.
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  campaign.run_tables(args.tables, args.seeds, args.runs, runs_dir, max_steps=args.max_steps)


if __name__ == "__main__":
  main()
