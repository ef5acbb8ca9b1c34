r"""Trains a paper CNN with a margin loss: the command-line entry point.

  python -m experiments.train --config experiments/configs/lsoftmax_mnist.py \
      --workdir /tmp/lsoftmax_mnist --config.loss=l_softmax --config.margin=2

``--resume`` continues from the latest checkpoint in ``--workdir``; Ctrl-C
(SIGINT) or SIGTERM saves the last completed step and exits with status 0. For a
multi-host run start one process per host with ``--coordinator_address``,
``--num_processes`` and ``--process_id``; each process reads its own shard.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from margin_jax.training import devices  # imports jax

  if _COORDINATOR.value:
    devices.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  from margin_jax import training

  try:
    training.train_and_evaluate(_CONFIG.value, _WORKDIR.value, resume=_RESUME.value)
  except (training.NonFiniteLossError, training.ConfigMismatchError, FileExistsError) as e:
    sys.exit(f"error: {e}")
  except training.TrainingInterrupted as e:
    print(e, flush=True)  # a stop asked for, its work saved: exit status 0


if __name__ == "__main__":
  app.run(main)
