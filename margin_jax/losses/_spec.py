"""The declaration of a loss (`LossSpec`): the one place that says what a loss
takes, how it is computed in each engine, how it classifies, its training
state and its papers' values. Each family module declares its losses at its
end (``SPECS``); `margin_jax.losses._table` collects them.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

# What a loss takes besides the labels:
#   "logits"   logits [B, C] (= x @ W [+ b]),
#   "features" features [B, d] and class weights [d, C],
#   "stacked"  features [B, d] and stacked weights [V, d, C] (EM-Softmax; the
#              K sub-centres [K, d, C] of Sub-center ArcFace),
#   "centers"  features [B, d] and class centers [C, d] (center loss).
INPUTS = ("logits", "features", "stacked", "centers")
# How a model trained with it classifies (`BoundLoss.test_logits`): x @ W, the
# cosines (normalised-weight losses), x @ mean_v W_v (EM-Softmax), or each
# class's largest cosine over its sub-centres (Sub-center ArcFace).
CLASSIFY = ("plain", "cosine", "averaged", "subcenter")


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """One row of the table.

  Attributes:
    name: the name `by_name` takes.
    fn: the function of `margin_jax.losses`.
    inputs: one of `INPUTS`.
    classify: one of `CLASSIFY`.
    typical: the papers' typical keyword arguments (tests and benchmarks use
      them; the noise key is passed separately). L-/A-Softmax's ``lam`` is the
      pure margin here; training anneals it (``lambda_schedule``).
    lambda_schedule: for a loss whose ``lam`` is annealed in training
      (L-/A-Softmax), the authors' released settings of
      `margin_jax.losses.lambda_schedule` (``base``, ``gamma``, ``power``,
      ``lambda_min``, ``schedule_steps``: the run length they were set for);
      ``None`` for the others.
    needs_key: takes a PRNG key after the labels (Noisy Softmax, ElasticFace).
    state: the keywords that are training state (AdaFace's norm statistics,
      CurricularFace's t): their initial values are in ``typical``, and
      ``update_state`` updates them before each step's loss.
    update_state: ``(features, weights, labels, state, *, where, axis_name,
      shard) -> state``, the ``state`` keywords' new values
      (`BoundLoss.update_state`).
    paper: where its equations are.
    streamed: its form in the streamed engine,
      ``(head, [key,] **hyperparameters) -> [B]`` from the statistics of
      ``head`` (a `margin_jax.losses.StreamedHead`): what `chunked` and
      `BoundLoss.streamed` run. ``None``: it does not stream.
    checks: ``(**hyperparameters) -> valid``, the hyperparameters' range
      checks its materialised function runs (`_common.check_range`: a known
      value out of range raises, a traced one makes the loss NaN); the
      streamed engine runs them too. ``None``: nothing to check.
  """

  name: str
  fn: Callable[..., Any]
  inputs: str
  classify: str = "plain"
  typical: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  lambda_schedule: Mapping[str, Any] | None = None
  needs_key: bool = False
  state: tuple[str, ...] = ()
  update_state: Callable[..., dict] | None = None
  paper: str = ""
  streamed: Callable[..., Any] | None = None
  checks: Callable[..., Any] | None = None

  @property
  def takes_bias(self) -> bool:
    """Whether a class bias ``[C]`` can be added to its logits."""
    return self.inputs in ("logits", "centers") or "bias" in inspect.signature(self.fn).parameters
