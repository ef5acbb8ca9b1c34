"""Schedules of loss hyperparameters, optax-style (step -> value, jit-friendly)."""

from __future__ import annotations

import jax.numpy as jnp
import optax


def lambda_schedule(base: float = 1000.0, gamma: float = 2.5e-5, power: float = 35.0,
                    lambda_min: float = 0.0) -> optax.Schedule:
  r"""The L-Softmax authors' annealing of the lambda blend.

  .. math::
    \lambda(t) = \max\big(\text{base} \cdot (1 + \gamma t)^{-\text{power}},\ \lambda_{min}\big)

  Knobs: ``base`` is the starting lambda (1000 makes the target logit almost
  the plain softmax one); ``gamma`` sets how soon the decay starts (time scale
  1/gamma steps); ``power`` how steep it is; ``lambda_min`` the floor that
  keeps a little softmax in the blend (0 reaches the pure margin). The
  defaults are the values of the authors' released Caffe layer settings as
  used by public re-implementations: lambda falls to ~1 by about 9k steps and
  to ~0.002 by 18k, the end of the paper's CIFAR schedule.

  Args:
    base: lambda at step 0.
    gamma: decay rate per step.
    power: decay exponent.
    lambda_min: lower bound.

  Returns:
    A function ``step -> lambda`` usable inside ``jax.jit`` with a traced step.

  References:
    Liu et al., Large-Margin Softmax Loss for CNNs, ICML 2016, Sec. 5.1.
  """
  def schedule(step):
    decayed = base * (1.0 + gamma * jnp.asarray(step, jnp.float32)) ** (-power)
    return jnp.maximum(decayed, lambda_min)

  return schedule
