"""Schedules of loss hyperparameters, optax-style (step -> value, jit-friendly)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

# A hyperparameter schedule, optax-style: step -> value (an ``optax.Schedule``).
Schedule = Callable[[ArrayLike], jax.Array]


def lambda_schedule(
  base: float = 1000.0,
  gamma: float = 2.5e-5,
  power: float = 35.0,
  lambda_min: float = 0.0,
  *,
  num_steps: int | None = None,
  schedule_steps: int = 18_000,
) -> Schedule:
  r"""The L-Softmax authors' annealing of the lambda blend.

  .. math::
    \lambda(t) = \max\big(\text{base} \cdot (1 + \gamma\, t\, S / N)^{-\text{power}},\ \lambda_{min}\big)

  with ``S = schedule_steps`` the run length the constants were published for
  and ``N = num_steps`` the length of this run (``S / N = 1`` when
  ``num_steps`` is not given). Passing ``num_steps`` keeps the schedule's
  *shape* over a run of another length: lambda reaches each value at the same
  fraction of training as in the authors' run. Without it a short run sees
  only the start of the decay (at 300 steps lambda is still ~770, almost
  plain softmax), and a compressed copy of the constants is easy to get wrong.

  Knobs: ``base`` is the starting lambda (1000 makes the target logit almost
  the plain softmax one); ``gamma`` sets how soon the decay starts (time scale
  1/gamma steps of the authors' run); ``power`` how steep it is;
  ``lambda_min`` the floor that keeps a little softmax in the blend (0 reaches
  the pure margin). The defaults are L-Softmax's (`PUBLISHED_LAMBDA`): lambda
  falls to ~1 at 48% of the run and to ~0.002 at its end. SphereFace's are
  ``lambda_schedule(**PUBLISHED_LAMBDA["a_softmax"], num_steps=N)``.

  Args:
    base: lambda at step 0.
    gamma: decay rate per step of the authors' run.
    power: decay exponent.
    lambda_min: lower bound.
    num_steps: this run's number of steps; ``None`` uses the constants as
      published (step for step).
    schedule_steps: the number of steps the constants were published for.

  Returns:
    A function ``step -> lambda`` usable inside ``jax.jit`` with a traced step.

  Example:
    >>> schedule = lambda_schedule(num_steps=300)  # L-Softmax's, over 300 steps
    >>> [round(float(schedule(t)), 3) for t in (0, 144, 300)]
    [1000.0, 1.065, 0.002]

  References:
    Liu et al., Large-Margin Softmax Loss for CNNs, ICML 2016, Sec. 5.1;
    Liu et al., SphereFace, CVPR 2017, Sec. 4.1.
  """
  if num_steps is not None and num_steps <= 0:
    raise ValueError(f"num_steps must be a positive number of steps, got {num_steps}.")
  rate = gamma * (schedule_steps / num_steps if num_steps else 1.0)

  def schedule(step):
    decayed = base * (1.0 + rate * jnp.asarray(step, jnp.float32)) ** (-power)
    return jnp.maximum(decayed, lambda_min)

  return schedule
