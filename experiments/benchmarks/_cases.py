"""Every loss of ``margin_jax.losses`` as a benchmark case: loss(x, W, y, key) -> [B].

Logit losses are benchmarked as ``loss(x @ W, y)``; feature losses take x and
W directly; EM-Softmax takes stacked weights [V, d, C]; the centre loss takes
centres [C, d]. Hyperparameters are the papers' recommended settings; they do
not change the cost (all are scalars folded into elementwise work).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from margin_jax import losses


class Case(NamedTuple):
  name: str
  fn: Callable  # (x, W, y, key) -> per-example loss [B]
  weights: str  # "classifier" [d, C], "stacked" [V, d, C] or "centers" [C, d]
  single_classifier: bool  # held to the 1.15x target


NUM_CLASSIFIERS = 2  # EM-Softmax V


def _logit(loss, **kw):
  return lambda x, w, y, key: loss(x @ w, y, **kw)


def _feature(loss, **kw):
  return lambda x, w, y, key: loss(x, w, y, **kw)


CASES = (
    Case("softmax", _logit(losses.softmax_loss), "classifier", True),
    Case("l_softmax_m2", _feature(losses.large_margin_softmax_loss, margin=2), "classifier", True),
    Case("l_softmax_m4", _feature(losses.large_margin_softmax_loss, margin=4), "classifier", True),
    Case("a_softmax_m4", _feature(losses.a_softmax_loss, margin=4), "classifier", True),
    Case("noisy_softmax",
         lambda x, w, y, key: losses.noisy_softmax_loss(x, w, y, key, alpha=math.sqrt(0.1)),
         "classifier", True),
    Case("virtual_softmax", _feature(losses.virtual_softmax_loss), "classifier", True),
    Case("soft_margin_softmax", _logit(losses.soft_margin_softmax_loss, margin=0.3),
         "classifier", True),
    Case("uniformity_reg", _logit(losses.uniformity_regularized_softmax_loss, lam=0.3),
         "classifier", True),
    Case("multiclass_hinge", _logit(losses.multiclass_hinge_loss, margin=1.0), "classifier", True),
    Case("label_smoothing", _logit(losses.label_smoothing_loss, smoothing=0.1), "classifier", True),
    Case("normface", _feature(losses.normface_loss, scale=20.0), "classifier", True),
    Case("cosface", _feature(losses.cosface_loss, scale=64.0, margin=0.35), "classifier", True),
    Case("arcface", _feature(losses.arcface_loss, scale=64.0, margin=0.5), "classifier", True),
    Case("center", _feature(losses.center_loss), "centers", False),
    Case("em_softmax_v2",
         _feature(losses.ensemble_soft_margin_softmax_loss, margin=0.3, diversity=0.1),
         "stacked", False),
)


def make_inputs(case: Case, batch: int, dim: int, classes: int, seed: int = 0):
  """Random (x, W, y, key) with the weight layout the case expects."""
  kx, kw, ky = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(kx, (batch, dim), jnp.float32)
  shape = {"classifier": (dim, classes), "stacked": (NUM_CLASSIFIERS, dim, classes),
           "centers": (classes, dim)}[case.weights]
  w = jax.random.normal(kw, shape, jnp.float32) / math.sqrt(dim)
  y = jax.random.randint(ky, (batch,), 0, classes)
  return x, w, y, jax.random.key(seed + 1)


def value_and_grad(case: Case):
  """jit(value_and_grad of the batch-mean loss w.r.t. features and weights)."""
  def mean_loss(x, w, y, key):
    return jnp.mean(case.fn(x, w, y, key))
  return jax.jit(jax.value_and_grad(mean_loss, argnums=(0, 1)))
