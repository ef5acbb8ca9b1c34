"""Every loss of ``margin_jax.losses.TABLE`` as a benchmark case: loss(x, W, y, key) -> [B].

Logit losses are benchmarked as ``loss(x @ W, y)``; feature losses take x and
W directly; EM-Softmax takes stacked weights [V, d, C]; the centre loss takes
centres [C, d]. Hyperparameters are the table's typical (papers') values; they
do not change the cost (all are scalars folded into elementwise work). L-/A-
Softmax run at the pure margin (lambda 0), L-Softmax also at m = 2; ElasticFace
also as ElasticFace-Cos. AdaFace and CurricularFace run at their states' initial
values (the state's update is a separate [B]-sized step).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from margin_jax import losses


class Case(NamedTuple):
  name: str
  fn: Callable  # (x, W, y, key) -> per-example loss [B]
  weights: str  # "classifier" [d, C], "stacked" [V, d, C] or "centers" [C, d]
  single_classifier: bool  # held to the softmax-overhead target
  spec_name: str  # its row of losses.TABLE
  overrides: Mapping[str, Any]  # hyperparameters other than the row's typical ones


NUM_CLASSIFIERS = 2  # EM-Softmax V


def _case(spec: losses.LossSpec, name=None, **overrides) -> Case:
  loss = losses.by_name(spec.name, **overrides)
  if spec.inputs == "centers":  # the center loss alone, centres [C, d] in W's place
    fn = lambda x, w, y, key: spec.fn(x, w, y)
  else:
    fn = lambda x, w, y, key: loss(x, w, y, key=key)
  weights = {"stacked": "stacked", "centers": "centers"}.get(spec.inputs, "classifier")
  suffix = f"_m{loss.hyperparameters['margin']}" if spec.lambda_schedule else ""
  return Case(
    name or spec.name + suffix, fn, weights, weights == "classifier", spec.name, overrides
  )


CASES = tuple(_case(spec) for spec in losses.TABLE.values())
CASES = CASES[:1] + (_case(losses.TABLE["l_softmax"], margin=2),) + CASES[1:]
CASES += (_case(losses.TABLE["elasticface"], "elasticface_cos", kind="cos", margin=0.35),)


def make_inputs(case: Case, batch: int, dim: int, classes: int, seed: int = 0, dtype="float32"):
  """Random (x, W, y, key) with the weight layout the case expects; x and W in ``dtype``."""
  kx, kw, ky = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(kx, (batch, dim), jnp.float32)
  shape = {
    "classifier": (dim, classes),
    "stacked": (NUM_CLASSIFIERS, dim, classes),
    "centers": (classes, dim),
  }[case.weights]
  w = jax.random.normal(kw, shape, jnp.float32) / math.sqrt(dim)
  y = jax.random.randint(ky, (batch,), 0, classes)
  return x.astype(dtype), w.astype(dtype), y, jax.random.key(seed + 1)


def value_and_grad(case: Case):
  """jit(value_and_grad of the batch-mean loss w.r.t. features and weights)."""

  def mean_loss(x, w, y, key):
    return jnp.mean(case.fn(x, w, y, key))

  return jax.jit(jax.value_and_grad(mean_loss, argnums=(0, 1)))
