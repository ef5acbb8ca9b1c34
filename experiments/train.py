r"""Trains a paper CNN with a margin loss: the command-line entry point.

  python -m experiments.train --config experiments/configs/lsoftmax_mnist.py \
      --workdir /tmp/lsoftmax_mnist --config.loss=l_softmax \
      --config.loss_kwargs.l_softmax.margin=2

A loss's keyword arguments are ``--config.loss_kwargs.<loss>.<keyword>``; the
flat fields of earlier configs (``--config.margin=2``, ``--config.alpha_squared=0.1``,
..., as the commands of ``experiments/results/runs`` have them) are translated.

``--resume`` continues from the latest checkpoint in ``--workdir``; Ctrl-C
(SIGINT) or SIGTERM saves the last completed step and exits with status 0. The
run's curves are plotted to ``WORKDIR/curves.png`` (`experiments.curves`) when
it ends or stops. For a multi-host run start one process per host with
``--coordinator_address``, ``--num_processes`` and ``--process_id``; each
process reads its own shard.
"""

import math
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import curves

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Path to a config file (experiments/configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints and metrics.")
_RESUME = flags.DEFINE_bool("resume", False, "Continue from the latest checkpoint in workdir.")
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "host:port of process 0 (multi-host)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Process count.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


_ANGULAR = ("l_softmax", "a_softmax")
_FACE = ("normface", "cosface", "arcface", "combined_margin", "subcenter_arcface")
_FACE += ("adaface", "magface", "curricularface", "elasticface")
_ARC = ("arcface", "subcenter_arcface", "curricularface", "elasticface")
# The flat loss fields of the configs before config.loss_kwargs: field -> (the
# losses whose keyword it set, that keyword's path under their sub-config).
_OLD_FIELDS = {
  "margin": (_ANGULAR, "margin"),
  "lambda_base": (_ANGULAR, "lam.base"),
  "lambda_gamma": (_ANGULAR, "lam.gamma"),
  "lambda_power": (_ANGULAR, "lam.power"),
  "lambda_min": (_ANGULAR, "lam.lambda_min"),
  "lambda_schedule_steps": (_ANGULAR, "lam.schedule_steps"),
  "alpha_squared": (("noisy_softmax",), "alpha"),  # alpha = sqrt(alpha^2)
  "noise": (("noisy_softmax",), "noise"),
  "soft_margin": (("m_softmax", "em_softmax"), "margin"),
  "diversity": (("e_softmax", "em_softmax"), "diversity"),
  "uniformity_lambda": (("uniformity",), "lam"),
  "divergence": (("uniformity",), "divergence"),
  "hinge_margin": (("hinge",), "margin"),
  "smoothing": (("lsr",), "smoothing"),
  "scale": (_FACE, "scale"),
  "cos_margin": (("cosface",), "margin"),  # and ElasticFace's with elastic_kind=cos
  "arc_margin": (_ARC, "margin"),  # ElasticFace's unless elastic_kind=cos
  "combined_m1": (("combined_margin",), "m1"),
  "combined_m2": (("combined_margin",), "m2"),
  "combined_m3": (("combined_margin",), "m3"),
  "adaface_margin": (("adaface",), "margin"),
  "adaface_h": (("adaface",), "h"),
  "adaface_norm_mean": (("adaface",), "norm_mean"),
  "adaface_norm_std": (("adaface",), "norm_std"),
  "magface_lower_margin": (("magface",), "lower_margin"),
  "magface_upper_margin": (("magface",), "upper_margin"),
  "magface_lower_norm": (("magface",), "lower_norm"),
  "magface_upper_norm": (("magface",), "upper_norm"),
  "magface_lambda_g": (("magface",), "lambda_g"),
  "curricular_t": (("curricularface",), "t"),
  "elastic_kind": (("elasticface",), "kind"),
  "elastic_sigma": (("elasticface",), "sigma"),
  "center_weight": (("center",), "center_weight"),
}


def translate_old_flags(argv: list[str]) -> list[str]:
  """``argv`` with each ``--config.<old field>=<value>`` of `_OLD_FIELDS`
  replaced by the ``--config.loss_kwargs.<loss>.<keyword>=<value>`` flags it
  stands for, so that every recorded command runs as it did."""
  flags = dict(a.removeprefix("--config.").partition("=")[::2] for a in argv if "=" in a)
  if flags.get("elastic_kind") == "cos":  # ElasticFace-Cos took CosFace's margin (default 0.35)
    argv = [*argv, f"--config.loss_kwargs.elasticface.margin={flags.get('cos_margin', 0.35)}"]
  out = []
  for arg in argv:
    field, _, value = arg.removeprefix("--config.").partition("=")
    if not arg.startswith("--config.") or field not in _OLD_FIELDS:
      out.append(arg)
      continue
    names, keyword = _OLD_FIELDS[field]
    if field == "alpha_squared":
      value = repr(math.sqrt(float(value)))
    if field == "arc_margin" and flags.get("elastic_kind") == "cos":
      names = tuple(n for n in names if n != "elasticface")
    out += [f"--config.loss_kwargs.{name}.{keyword}={value}" for name in names]
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from margin_jax.training import devices  # imports jax

  if _COORDINATOR.value:
    devices.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  import jax

  from margin_jax import training

  try:
    training.train_and_evaluate(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value)
  except (training.NonFiniteLossError, training.ConfigMismatchError, FileExistsError) as e:
    sys.exit(f"error: {e}")
  except training.TrainingInterrupted as e:
    print(e, flush=True)  # a stop asked for, its work saved: exit status 0
  finally:
    if jax.process_index() == 0 and os.path.exists(f"{_WORKDIR.value}/metrics.jsonl"):
      curves.plot(_WORKDIR.value)


if __name__ == "__main__":
  sys.argv = translate_old_flags(sys.argv)  # config_flags reads the overrides from sys.argv
  app.run(main)
