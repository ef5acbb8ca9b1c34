"""In one process, interleaved: the hand-written derivatives (custom JVPs; custom
VJPs before issue 26) against autodiff of the previous formulations (copied here
as references), and the cost of the cosine logits' passes over W [d, C] alone.
B=256, d=512, C=10,000, float32, value_and_grad w.r.t. x and W.

  .venv/bin/python -m experiments.benchmarks.custom_vjp_ab
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments.benchmarks import _harness
from margin_jax import losses
from margin_jax.numerics import normalize
from margin_jax.numerics import sum_over_axis

B, D, C = 256, 512, 10_000


def autodiff_uniformity(logits, labels, lam=0.3):
  """Kobayashi's symmetric regulariser as it was written before its custom derivative."""
  others = logits.shape[1] - 1
  is_target = labels[:, None] == jnp.arange(logits.shape[1])[None]
  masked = jnp.where(is_target, -jnp.inf, logits)
  log_q = jnp.where(is_target, 0.0, masked - jax.nn.logsumexp(masked, axis=-1, keepdims=True))
  q = jnp.where(is_target, 0.0, jnp.exp(log_q))
  uniform = jnp.where(is_target, 0.0, 1.0 / others)
  penalty = 0.5 * jnp.sum((q - uniform) * log_q, -1)
  target = jnp.take_along_axis(logits, labels[:, None], -1)[:, 0]
  return jax.nn.logsumexp(logits, -1) - target + lam * penalty


def autodiff_hsic(weights):
  """HSIC (V = 2) as it was written before its custom derivative."""
  unit = normalize(weights, axis=1)
  centered = unit - jnp.mean(unit, axis=2, keepdims=True)
  cross = centered[0] @ centered[1].T
  return 2.0 * jnp.sum(cross * cross)


def main():
  pinned = _harness.pin_allocator()
  kx, kw, ky = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (B, D))
  stacked = jax.random.normal(kw, (2, D, C)) / D**0.5  # EM's two classifiers
  single = stacked[0] + 0.0  # its own buffer: no slice inside the timed steps
  y = jax.random.randint(ky, (B,), 0, C)

  def em(x, w, y, hsic):  # EM-Softmax's logits as the library forms them, one batched dot
    logits = jax.lax.dot_general(
      jnp.broadcast_to(x, (2, *x.shape)), w, (((2,), (1,)), ((0,), (0,)))
    )
    margins = losses.soft_margin_softmax_loss(logits.reshape(-1, C), jnp.tile(y, 2), margin=0.3)
    return margins.reshape(2, -1).sum(0) + 0.1 * hsic(w)

  cases = {
    "softmax": lambda x, w, y: losses.softmax_loss(x @ w, y),
    "uniformity, custom JVP": lambda x, w, y: losses.uniformity_regularized_softmax_loss(
      x @ w, y, lam=0.3
    ),
    "uniformity, autodiff": lambda x, w, y: autodiff_uniformity(x @ w, y),
    "cosface": lambda x, w, y: losses.cosface_loss(x, w, y, scale=64.0, margin=0.35),
    "EM V=2, HSIC custom JVP": lambda x, w, y: em(x, w, y, losses.hsic_diversity),
    "EM V=2, HSIC autodiff": lambda x, w, y: em(x, w, y, autodiff_hsic),
    "EM V=2 without HSIC": lambda x, w, y: em(x, w, y, lambda w: 0.0),
  }
  steps = {
    name: jax.jit(jax.value_and_grad(lambda x, w, y, f=f: f(x, w, y).mean(), argnums=(0, 1)))
    for name, f in cases.items()
  }
  # The passes over W [d, C] that the cosine logits add to softmax, alone: the
  # column norms (forward) and dW - W_j r_j / ||W_j||^2 (backward).
  r = jnp.ones((C,))

  @jax.jit
  def norm_passes(w, dw):
    norms = jnp.sqrt(sum_over_axis(w * w, axis=0))
    return norms, dw - w * (r / norms**2)

  steps["cosine's [d, C] passes alone"] = lambda x, w, y: norm_passes(w, w)

  # EM-Softmax's floor: its matmuls alone, on inputs of their shapes (the two
  # classifiers' forward and backward products, HSIC's U_0 U_1^T and K U_u).
  g = jnp.ones((2, B, C)) / C
  k = jnp.eye(D)

  @jax.jit
  def em_matmuls(x, w):
    classifiers = [(x @ w[v], g[v] @ w[v].T, x.T @ g[v]) for v in range(2)]
    return classifiers, w[0] @ w[1].T, k @ w[1], k.T @ w[0]

  steps["EM's matmuls alone"] = lambda x, w, y: em_matmuls(x, w)
  weights = {name: stacked if name.startswith("EM") else single for name in steps}
  calls = {
    name: lambda step=step, w=weights[name]: jax.block_until_ready(step(x, w, y))
    for name, step in steps.items()
  }
  times = _harness.interleaved(calls, min_reps=25, max_reps=25)
  print(f"# B={B} d={D} C={C}, load {np.round(os.getloadavg(), 1)}, allocator pinned: {pinned}")
  for name, ts in times.items():
    ratio = _harness.paired_ratio(ts, times["softmax"])
    print(f"{name:30s} {1e3 * _harness.median(ts):8.2f} ms   ratio to softmax {ratio:.3f}")


if __name__ == "__main__":
  main()
