"""Orbax checkpoints that refuse to load into a different configuration."""

from __future__ import annotations

import json
import logging

import orbax.checkpoint as ocp

# Config fields that may change between a run and its resumption: they steer
# the run (how long, how often to log/evaluate/save) but not what is trained.
RUN_CONTROL_FIELDS = frozenset(
  {
    "num_train_steps",
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "data_dir",
    "mesh_shape",  # a checkpoint restores onto any mesh or device count
    "val_pairs",  # what is evaluated, not what is trained
  }
)


class ConfigMismatchError(ValueError):
  """A checkpoint was written by a run with a different configuration."""


def config_identity(config) -> dict:
  """The config fields a checkpoint belongs to: all but run control, and of
  ``loss_kwargs`` only the trained loss's."""
  fields = json.loads(config.to_json())
  if "loss_kwargs" in fields:
    fields["loss_kwargs"] = {config.loss: fields["loss_kwargs"].get(config.loss, {})}
  return {k: v for k, v in sorted(fields.items()) if k not in RUN_CONTROL_FIELDS}


def saved_config(directory) -> tuple[int, dict]:
  """The latest checkpoint's step in ``directory`` and the config identity stored with it."""
  manager = ocp.CheckpointManager(directory, item_names=("state", "config"))
  try:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {directory}.")
    restored = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return step, restored["config"]
  finally:
    manager.close()


class Checkpointer:
  """Saves every ``checkpoint_every_steps`` and at the end, keeps the last k.

  Each checkpoint holds the train state and the config identity; orbax writes
  to a temporary directory and renames it when complete, so an interrupted
  save never becomes the latest checkpoint.
  """

  def __init__(self, directory, config):
    # Orbax logs each save and restore at INFO through absl (~4 lines a save):
    # keep the training metrics readable, warnings and errors still show.
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(max(absl_logger.getEffectiveLevel(), logging.WARNING))
    self._identity = config_identity(config)
    self._manager = ocp.CheckpointManager(
      directory,
      item_names=("state", "config"),
      options=ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints, create=True, cleanup_tmp_directories=True
      ),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state) -> None:
    self._manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(self._identity)
      ),
    )

  def restore(self, target):
    """Restores the latest checkpoint into the structure of ``target``.

    Raises:
      ConfigMismatchError: naming each field that differs.
    """
    step = self._manager.latest_step()
    saved = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))[
      "config"
    ]
    diff = {
      k: (saved.get(k), self._identity.get(k))
      for k in sorted(set(saved) | set(self._identity))
      if saved.get(k) != self._identity.get(k)
    }
    if diff:
      lines = "\n".join(f"  {k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
      raise ConfigMismatchError(
        f"checkpoint {self._manager.directory}/{step} was written with a "
        f"different config; refusing to load it:\n{lines}\nUse a new "
        "--workdir or the original config."
      )
    path = self._manager.directory / str(step) / "state"
    if "loss_state" not in ocp.PyTreeCheckpointHandler().metadata(path).tree:
      # Written before the train state carried a loss state (no loss had one
      # then): everything else restored, the target's empty loss state kept.
      restore_args = ocp.checkpoint_utils.construct_restore_args(target)
      args = ocp.args.PyTreeRestore(target, restore_args=restore_args, partial_restore=True)
      return ocp.PyTreeCheckpointer().restore(path, args=args)
    return self._manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
    )["state"]

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
