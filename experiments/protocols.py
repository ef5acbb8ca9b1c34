"""The reproduction protocols of issue 5: every run of every table, in one place.

Two protocols per table:

* ``paper``: the paper's own network, width, batch, iterations and schedule
  (configs ``experiments/configs/paper_*.py``). Hours on a GPU; not run here.
* ``cpu``: what fits a shared 2-core CPU in about 80 minutes for *all* tables
  together. The paper's architecture family at 1/8 of its filters, batch 64,
  a few hundred iterations, the same optimiser (SGD, momentum 0.9, weight
  decay 5e-4), the same schedule *shape* (lr divided by 10 at the same
  fractions of training) and the same preprocessing recipe. The base learning
  rate follows the linear scaling rule from the papers' 0.1 at batch 256,
  0.1 * 64 / 256 = 0.025 (lr 0.1 at batch 128 made the plain softmax baseline
  diverge to NaN within 20 steps at this width; no test data was looked at).
  The L-Softmax lambda schedule keeps its base and power, and its gamma is
  scaled by 18000 / steps so that lambda decays over the short run as it does
  over the paper's 18k iterations (lambda ~ 1 at mid-training, ~0.002 at the
  end).
  The test set is evaluated once, at the end (a pass over the 10k test
  images costs as much as ~50 training steps here); curves over iterations
  use the training-batch metrics logged every 5 steps.

A *run key* names one distinct configuration (``"fmnist/softmax"``); tables
and figures refer to keys, so a configuration shared by several tables is
trained once per seed. Loss hyperparameters are the papers' published ones.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from experiments.configs import default

SEEDS = (0, 1, 2)

# The cpu protocol's common settings.
CPU_WIDTH = 1 / 8
CPU_BATCH = 64
CPU_LR = 0.1 * CPU_BATCH / 256  # linear scaling from the papers' 0.1 @ 256
PAPER_LAMBDA_STEPS = 18000  # L-Softmax's schedule length for lambda_gamma

# Per dataset: architecture, preprocessing, steps, schedule fractions.
#   fmnist: L-Softmax Table 1 MNIST net (EM-Softmax's "LiuNet"), mean
#     subtraction; schedule shape of L-Softmax (/10 at 12k/18k and 15k/18k).
#   mnist_2d: L-Softmax Table 1 2-D feature net (Fig 2).
#   mnist_subset: Noisy Softmax Table 2 "MNIST 1%/10%" net; Noisy's schedule
#     shape (/10 at 12k of 16k).
#   cifar: L-Softmax Table 1 CIFAR-10 net, pad-4 crop + flip ("cifar_plus").
DATASETS = {
    "fmnist": dict(dataset="fashion_mnist", model="lsoftmax_mnist",
                   preprocess="mean", steps=120, fractions=(2 / 3, 5 / 6)),
    "mnist_2d": dict(dataset="mnist", model="lsoftmax_mnist_2d",
                     preprocess="mean", steps=120, fractions=(2 / 3, 5 / 6)),
    "mnist_subset": dict(dataset="mnist", model="noisy_mnist_subset",
                         preprocess="mean", steps=120, fractions=(3 / 4,)),
    "cifar": dict(dataset="cifar10_jpeg", model="lsoftmax_cifar10",
                  preprocess="cifar_plus", steps=120,
                  fractions=(2 / 3, 5 / 6)),
}

# The losses of table 1, with the papers' settings: label -> overrides.
MAIN_LOSSES = {
    "Softmax": dict(loss="softmax"),
    "L-Softmax (m=2)": dict(loss="l_softmax", margin=2),
    "L-Softmax (m=4)": dict(loss="l_softmax", margin=4),
    "A-Softmax (m=4)": dict(loss="a_softmax", margin=4),
    "Noisy Softmax (a2=0.1)": dict(loss="noisy_softmax", alpha_squared=0.1),
    "Virtual Softmax": dict(loss="virtual_softmax"),
    "M-Softmax (m=0.5)": dict(loss="m_softmax", soft_margin=0.5),
    "E-Softmax (V=2)": dict(loss="e_softmax", num_classifiers=2, diversity=0.1),
    "EM-Softmax (V=2, l=0.1)": dict(loss="em_softmax", num_classifiers=2,
                                    diversity=0.1, soft_margin=0.5),
    "Kobayashi (l=0.3)": dict(loss="uniformity", uniformity_lambda=0.3,
                              divergence="symmetric"),
    "LSR (0.1)": dict(loss="lsr", smoothing=0.1),
    "Hinge (eq 14)": dict(loss="hinge", hinge_margin=1.0),
    "NormFace (s=16)": dict(loss="normface", scale=16.0),
    "CosFace (s=16, m=0.35)": dict(loss="cosface", scale=16.0, cos_margin=0.35),
    "ArcFace (s=16, m=0.5)": dict(loss="arcface", scale=16.0, arc_margin=0.5),
    "Center + softmax (0.01)": dict(loss="center", center_weight=0.01),
}
# Subset of table 1 run on CIFAR-10 (JPEG) when time is short (most cited).
CIFAR_LOSSES = ("Softmax", "L-Softmax (m=4)", "EM-Softmax (V=2, l=0.1)")


# Noisy Table 1's alpha^2 values (its alpha^2 = 1 column is not run) and
# Kobayashi Table 3's degradations (the paper has 0.1-0.5 pollution and
# 0.9-0.5 sample ratios).
ABLATION_ALPHA_SQUARED = (0.05, 0.1, 0.5)
DEGRADATIONS = (("noise", 0.2), ("noise", 0.4), ("frac", 0.5))


def _slug(overrides: dict) -> str:
  return ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))


def key(data: str, overrides: dict) -> str:
  """The run key of ``overrides`` on the cpu protocol of ``data``."""
  return f"{data}/{_slug(overrides)}"


@dataclasses.dataclass(frozen=True)
class Row:
  """One row of a table: a label, a run key, and the paper's number (text)."""

  label: str
  key: str
  paper: str = ""


@dataclasses.dataclass(frozen=True)
class Table:
  """A table of issue 5: its rows and which row is the baseline."""

  name: str
  title: str
  rows: tuple[Row, ...]
  baseline: str = "Softmax"  # label of the reference row
  claim: str = ""  # the paper's claim, "lower" = rows beat the baseline
  features: bool = False  # keep test features (2-D scatter / cosines)
  note: str = ""  # what the paper column is (dataset, table)


def _rows(data, losses, paper=None) -> tuple[Row, ...]:
  paper = paper or {}
  return tuple(Row(label, key(data, MAIN_LOSSES[label]), paper.get(label, ""))
               for label in losses)


# Paper numbers for table 1: CIFAR-10+ (with augmentation, as our cpu
# protocol) test error (%) from L-Softmax Table 3, Noisy Softmax Table 4,
# Virtual Softmax Sec 6.1 (t=1; softmax 9.84 there) and EM-Softmax Table 1
# (100 - accuracy). None of the papers reports Fashion-MNIST: on that table
# they show the ranking each paper claims, not a target value.
_PAPER_CIFAR10 = {
    "Softmax": "6.50 (L-Softmax T3, EM T1); 6.98 (Noisy T4)",
    "L-Softmax (m=2)": "6.01 (L-Softmax T3)",
    "L-Softmax (m=4)": "5.92 (L-Softmax T3, EM T1)",
    "A-Softmax (m=4)": "6.02 (EM T1)",
    "Noisy Softmax (a2=0.1)": "6.36 (Noisy T4)",
    "Virtual Softmax": "8.95 vs softmax 9.84 (Virtual 6.1, t=1)",
    "M-Softmax (m=0.5)": "5.73 (EM T1)",
    "E-Softmax (V=2)": "6.08 (EM T1)",
    "EM-Softmax (V=2, l=0.1)": "4.98 (EM T1)",
    "Hinge (eq 14)": "6.96 (L-Softmax T3), 6.69 (EM T1)",
    "NormFace (s=16)": "6.10 (EM T1, N-Softmax)",
    "Center + softmax (0.01)": "6.18 (EM T1)",
}


def _tables() -> dict[str, Table]:
  t = {}
  t["main"] = Table(
      "main", "Table 1: main comparison, Fashion-MNIST",
      _rows("fmnist", MAIN_LOSSES, _PAPER_CIFAR10), claim="lower",
      features=True, note="Paper column: CIFAR-10+ test error; no paper "
      "reports Fashion-MNIST, so only the ranking is comparable.")
  t["main_cifar"] = Table(
      "main_cifar", "Table 1: main comparison, CIFAR-10 (JPEG q75 copy)",
      _rows("cifar", CIFAR_LOSSES, _PAPER_CIFAR10), claim="lower",
      note="Paper column: exact CIFAR-10+ at the paper protocol; ours is the "
      "JPEG q75 copy at the cpu protocol, comparable between rows only.")
  sub = []
  for frac, name, paper in ((0.01, "1%", ("3.82", "2.46")),
                            (0.1, "10%", ("1.30", "0.93"))):
    sub.append(Row(f"Softmax, MNIST {name}",
                   key("mnist_subset", dict(loss="softmax",
                                            train_fraction=frac)), paper[0]))
    sub.append(Row(f"Noisy (a2=0.5), MNIST {name}",
                   key("mnist_subset", dict(loss="noisy_softmax",
                                            alpha_squared=0.5,
                                            train_fraction=frac)), paper[1]))
  t["noisy_subsets"] = Table(
      "noisy_subsets", "Table 2: Noisy Softmax Sec 5.4, MNIST subsets",
      tuple(sub), baseline="pairs", claim="lower",
      note="Paper column: MNIST test error, Noisy Softmax Sec 5.4.")
  # Noisy Table 1 (CIFAR-100 in the paper; Fashion-MNIST here).
  paper_t1 = {("annealed", 0.05): "29.99", ("annealed", 0.1): "28.48",
              ("annealed", 0.5): "30.22", ("free", 0.05): "31.43",
              ("free", 0.1): "31.04", ("free", 0.5): "30.88",
              ("amplitude", 0.05): "30.96", ("amplitude", 0.1): "29.97",
              ("amplitude", 0.5): "fail"}
  rows = [Row("Softmax", key("fmnist", MAIN_LOSSES["Softmax"]), "31.77")]
  for a2 in ABLATION_ALPHA_SQUARED:
    for noise in ("annealed", "free", "amplitude"):
      over = dict(loss="noisy_softmax", alpha_squared=a2)
      if noise != "annealed":
        over["noise"] = noise
      rows.append(Row(f"{noise}, a2={a2}", key("fmnist", over),
                      paper_t1[(noise, a2)]))
  t["noisy_ablation"] = Table(
      "noisy_ablation", "Table 3: Noisy Softmax Table 1 noise ablation",
      tuple(rows), claim="lower",
      note="Paper column: CIFAR-100 test error (Noisy Table 1); ours is "
      "Fashion-MNIST.")
  # Noisy Fig 3-4: normal and negative noise (alpha^2 = 0.1).
  t["noisy_figure"] = Table(
      "noisy_figure", "Noisy Softmax Fig 3-4 runs", (
          Row("Softmax", key("fmnist", MAIN_LOSSES["Softmax"])),
          Row("annealed", key("fmnist", MAIN_LOSSES["Noisy Softmax (a2=0.1)"])),
          Row("normal", key("fmnist", dict(loss="noisy_softmax",
                                           alpha_squared=0.1, noise="normal"))),
          Row("negative", key("fmnist", dict(loss="noisy_softmax",
                                             alpha_squared=0.1,
                                             noise="negative"))),
      ), claim="lower")
  # Kobayashi Table 3 (CIFAR-100 in the paper; Fashion-MNIST here).
  rows = []
  paper_t3 = {("noise", 0.2): ("37.17", "34.98", "33.50"),
              ("noise", 0.4): ("43.65", "42.06", "40.76"),
              ("frac", 0.5): ("36.87", "36.06", "35.49")}
  for (kind, value), paper in paper_t3.items():
    if (kind, value) not in DEGRADATIONS:
      continue
    degr = ({"label_noise": value} if kind == "noise"
            else {"train_fraction": value})
    name = (f"{int(value * 100)}% polluted" if kind == "noise"
            else f"{int(value * 100)}% of samples")
    rows.append(Row(f"Softmax, {name}",
                    key("fmnist", dict(loss="softmax", **degr)), paper[0]))
    for lam, p in ((0.3, paper[1]), (1.0, paper[2])):
      rows.append(Row(f"Ours l={lam}, {name}",
                      key("fmnist", dict(loss="uniformity",
                                         uniformity_lambda=lam,
                                         divergence="symmetric", **degr)), p))
  t["kobayashi_degraded"] = Table(
      "kobayashi_degraded", "Table 4: Kobayashi Table 3, degraded training sets",
      tuple(rows), baseline="groups", claim="lower",
      note="Paper column: CIFAR-100 (Kobayashi Table 3); ours is "
      "Fashion-MNIST. The paper has pollution rates 0.1-0.5 and sample "
      "ratios 0.9-0.5; we ran 20% and 40% polluted and 50% of samples.")
  rows = [Row("Softmax", key("fmnist", MAIN_LOSSES["Softmax"]), "28.62")]
  for div, paper in (("symmetric", "27.27"), ("u_q", "27.30"),
                     ("q_u", "27.79")):
    rows.append(Row(f"D = {div}", key("fmnist", dict(
        loss="uniformity", uniformity_lambda=0.3, divergence=div)), paper))
  rows.append(Row("LSR (0.1)", key("fmnist", MAIN_LOSSES["LSR (0.1)"]),
                  "28.48"))
  t["kobayashi_divergences"] = Table(
      "kobayashi_divergences", "Table 5: Kobayashi Table 1-2, divergences at "
      "lambda=0.3 (and LSR)", tuple(rows), claim="lower",
      note="Paper column: CIFAR-100 (Kobayashi Tables 1-2); ours is "
      "Fashion-MNIST.")
  rows = [Row("Softmax", key("fmnist", MAIN_LOSSES["Softmax"]))]
  for lam in (0.0, 0.01, 0.1, 1.0):
    rows.append(Row(f"V=2, l={lam}", key("fmnist", dict(
        loss="em_softmax", num_classifiers=2, diversity=lam, soft_margin=0.5))))
  for v in (1, 4):
    rows.append(Row(f"V={v}, l=0.1", key("fmnist", dict(
        loss="em_softmax", num_classifiers=v, diversity=0.1, soft_margin=0.5))))
  t["em_sensitivity"] = Table(
      "em_sensitivity", "Table 6: EM-Softmax sensitivity to lambda and V "
      "(paper Fig 1-2: flat for lambda in [0.01, 1], V=1 weakest)",
      tuple(rows), claim="lower")
  rows = [Row(f"L-Softmax m={m}", key("fmnist", dict(loss="l_softmax",
                                                     margin=m)),
              {1: "0.40 (MNIST)", 2: "0.32", 3: "0.31", 4: "0.31"}[m])
          for m in (1, 2, 3, 4)]
  t["lsoftmax_margins"] = Table(
      "lsoftmax_margins", "Table 7: L-Softmax margin m (Fig 6 analogue)",
      tuple(rows), baseline="L-Softmax m=1", claim="lower",
      note="Paper column: MNIST (L-Softmax Table 2; m=1 is softmax); ours "
      "is Fashion-MNIST.")
  rows = [Row("Softmax", key("mnist_2d", dict(loss="softmax")))]
  rows += [Row(f"L-Softmax m={m}", key("mnist_2d", dict(loss="l_softmax",
                                                        margin=m)))
           for m in (2, 3, 4)]
  rows.append(Row("Virtual Softmax", key("mnist_2d",
                                         dict(loss="virtual_softmax"))))
  t["features_2d"] = Table(
      "features_2d", "2-D features on MNIST (L-Softmax Fig 2, Virtual Fig 2)",
      tuple(rows), claim="lower", features=True)
  return t


TABLES = _tables()


def parse_key(run_key: str) -> tuple[str, dict]:
  """Inverse of :func:`key`: ``(data, overrides)`` with typed values."""
  data, slug = run_key.split("/", 1)
  overrides = {}
  base = default.get_config()
  for item in slug.split(","):
    name, value = item.split("=", 1)
    kind = type(base[name])
    if kind is str:
      overrides[name] = value
    elif kind is int:
      overrides[name] = int(float(value))
    else:
      overrides[name] = kind(value)
  return data, overrides


def cpu_config(run_key: str, seed: int) -> ml_collections.ConfigDict:
  """The cpu-protocol ``ConfigDict`` of ``run_key`` for ``seed``."""
  data, overrides = parse_key(run_key)
  spec = DATASETS[data]
  c = default.get_config()
  c.dataset = spec["dataset"]
  c.model = spec["model"]
  c.preprocess = spec["preprocess"]
  c.width = CPU_WIDTH
  c.batch_size = CPU_BATCH
  c.eval_batch_size = 1000
  c.learning_rate = CPU_LR
  steps = spec["steps"]
  c.num_train_steps = steps
  c.lr_boundaries = tuple(round(f * steps) for f in spec["fractions"])
  c.log_every_steps = 5
  c.eval_every_steps = steps  # one test pass (~18 s here) at the end
  c.checkpoint_every_steps = steps
  c.keep_checkpoints = 1
  c.seed = seed
  for name, value in overrides.items():
    c[name] = value
  return c
