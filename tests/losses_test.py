"""Tests of margin_jax.losses: values against float64 NumPy references written
from the papers' equations, gradients against the papers' closed forms,
reductions to softmax, numerical safety, transformations and input errors."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from margin_jax import losses
from margin_jax.losses import _common
from margin_jax.losses import _ensemble
from margin_jax.losses import _logit_losses

B, D, C = 6, 5, 7


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def make_inputs(seed=0, b=B, d=D, c=C):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(b, d))
  w = rng.normal(size=(d, c))
  y = rng.integers(0, c, size=b)
  y[:c] = np.arange(min(b, c))  # cover several classes
  return x, w, y.astype(np.int32)


# ---------------------------------------------------------------- references
def np_log_softmax(f):
  f = f - f.max(axis=-1, keepdims=True)
  return f - np.log(np.exp(f).sum(axis=-1, keepdims=True))


def np_ce_replaced(logits, y, target):
  f = np.array(logits)
  f[np.arange(len(y)), y] = target
  return -np_log_softmax(f)[np.arange(len(y)), y]


def np_target_geometry(x, w, y):
  wy = w[:, y].T
  nx, nw = np.linalg.norm(x, axis=1), np.linalg.norm(wy, axis=1)
  dot = np.sum(x * wy, axis=1)
  return dot, nx * nw, np.clip(dot / (nx * nw), -1, 1)


def np_psi(theta, m):
  k = np.minimum(np.floor(theta * m / np.pi), m - 1)
  return (-1.0) ** k * np.cos(m * theta) - 2 * k


def np_l_softmax(x, w, y, m, lam=0.0):
  dot, norms, cos = np_target_geometry(x, w, y)
  target = (lam * dot + norms * np_psi(np.arccos(cos), m)) / (1 + lam)
  return np_ce_replaced(x @ w, y, target)


def np_noisy(x, w, y, xi, alpha, noise):
  dot, norms, cos = np_target_geometry(x, w, y)
  sigma = alpha * norms * (1 - cos)
  n = {
    "annealed": sigma * abs(xi),
    "amplitude": alpha * norms * abs(xi),
    "free": alpha * abs(xi),
    "normal": sigma * xi,
    "negative": -sigma * abs(xi),
  }[noise]
  return np_ce_replaced(x @ w, y, dot - n)


def np_virtual(x, w, y):
  _, norms, _ = np_target_geometry(x, w, y)
  f = np.concatenate([x @ w, norms[:, None]], axis=1)
  return -np_log_softmax(f)[np.arange(len(y)), y]


def np_cos_matrix(x, w):
  return (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=0))


def np_uniformity(f, y, lam, divergence):
  out = []
  for fi, yi in zip(f, y):
    others = np.delete(fi, yi)
    q = np.exp(others - others.max())
    q /= q.sum()
    u = np.full_like(q, 1.0 / len(q))
    kl_qu = np.sum(q * np.log(q / u))
    kl_uq = np.sum(u * np.log(u / q))
    penalty = {"symmetric": 0.5 * (kl_qu + kl_uq), "q_u": kl_qu, "u_q": kl_uq}[divergence]
    out.append(-np_log_softmax(fi[None])[0, yi] + lam * penalty)
  return np.array(out)


def np_hsic(ws):
  """sum_{v} sum_{u != v} tr(K_v H K_u H), with the C x C kernels (reference only)."""
  c = ws.shape[2]
  h = np.eye(c) - np.ones((c, c)) / c
  unit = ws / np.linalg.norm(ws, axis=1, keepdims=True)
  kernels = [wv.T @ wv for wv in unit]
  return sum(
    np.trace(kernels[v] @ h @ kernels[u] @ h)
    for v in range(len(ws))
    for u in range(len(ws))
    if u != v
  )


def np_em(x, ws, y, margin, diversity):
  total = sum(np_ce_replaced(x @ wv, y, (x @ wv)[np.arange(len(y)), y] - margin) for wv in ws)
  return total + diversity * np_hsic(ws)


def stacked(w):
  """A second classifier that depends smoothly on w, for the EM cases."""
  return jnp.stack([w, 0.5 * w[::-1] + 0.3 * jnp.roll(w, 1, axis=1)])


def subcenters(w):
  """K = 3 sub-centres per class that depend smoothly on w (Sub-center ArcFace cases)."""
  return jnp.stack(
    [w, 0.5 * w[::-1] + 0.3 * jnp.roll(w, 1, axis=1), 0.2 * w - 0.7 * jnp.roll(w, 2, axis=1)]
  )


def np_margin_target(cos_y, m1, m2, m3, mode="plain"):
  """The combined-margin target cosine, via arccos, with the theta_overflow rules."""
  plain = np.cos(m1 * np.arccos(cos_y) + m2) - m3
  if mode == "easy":
    return np.where(cos_y > 0, plain, cos_y)
  if mode == "insightface":
    if m1 == 1:  # insightface: cos <= cos(pi - m) -> cos - m sin m
      threshold, shift, reached = math.cos(math.pi - m2), m2 * math.sin(m2), True
    else:  # past theta_0 = (pi - m2) / m1, shifted to drop as at m1 = 1
      theta_0 = (math.pi - m2) / m1
      threshold, reached = math.cos(theta_0), theta_0 <= math.pi
      shift = threshold + math.cos(m2) + m2 * math.sin(m2)
    return np.where((cos_y <= threshold) & reached, cos_y - shift - m3, plain)
  return plain


def np_combined(cos, y, s, m1, m2, m3, mode="plain"):
  cos_y = cos[np.arange(len(y)), y]
  return np_ce_replaced(s * cos, y, s * np_margin_target(cos_y, m1, m2, m3, mode))


def np_subcenter_cos(x, ws):
  return np.max([np_cos_matrix(x, wk) for wk in ws], axis=0)


# The face margins' settings for these inputs (||x|| about 0.8-3.5): AdaFace's
# indicator z takes both signs and both clips, MagFace's norm both clips.
ADAFACE = dict(scale=8.0, margin=0.4, h=1.0, norm_mean=1.8, norm_std=0.5)
MAGFACE = dict(
  scale=8.0, lower_margin=0.45, upper_margin=0.8, lower_norm=1.0, upper_norm=2.5, lambda_g=0.5
)


def np_adaface_z(x, h, norm_mean, norm_std):
  return np.clip(h * (np.linalg.norm(x, axis=1) - norm_mean) / (norm_std + 1e-3), -1, 1)


def np_adaface(x, w, y, scale, margin, h, norm_mean, norm_std, clip=False, z=None):
  """AdaFace's f_y = s (cos(theta_y + g_angle) - g_add), g_angle = -m z, g_add = m z + m
  (z given: held fixed, as the loss stops its gradient)."""
  z = np_adaface_z(x, h, norm_mean, norm_std) if z is None else z
  cos = np_cos_matrix(x, w)
  angle = np.arccos(cos[np.arange(len(y)), y]) - margin * z
  angle = np.clip(angle, 0, np.pi) if clip else angle
  return np_ce_replaced(scale * cos, y, scale * (np.cos(angle) - (margin * z + margin)))


def np_magface(x, w, y, scale, lower_margin, upper_margin, lower_norm, upper_norm, lambda_g):
  a = np.clip(np.linalg.norm(x, axis=1), lower_norm, upper_norm)
  m = (upper_margin - lower_margin) / (upper_norm - lower_norm) * (a - lower_norm) + lower_margin
  cos = np_cos_matrix(x, w)
  target = scale * np.cos(np.arccos(cos[np.arange(len(y)), y]) + m)
  return np_ce_replaced(scale * cos, y, target) + lambda_g * (1 / a + a / upper_norm**2)


def np_curricular(x, w, y, scale, margin, t):
  cos = np_cos_matrix(x, w)
  target = np.cos(np.arccos(cos[np.arange(len(y)), y]) + margin)
  negatives = np.where(cos > target[:, None], cos * (t + cos), cos)  # N(t, cos theta_j)
  return np_ce_replaced(scale * negatives, y, scale * target)


def np_elastic(x, w, y, xi, scale, margin, sigma, kind):
  m = margin + sigma * xi  # one draw per example
  cos = np_cos_matrix(x, w)
  cos_y = cos[np.arange(len(y)), y]
  target = np.cos(np.arccos(cos_y) + m) if kind == "arc" else cos_y - m
  return np_ce_replaced(scale * cos, y, scale * target)


# --------------------------------------------------------------- loss table
def _tagged(fn, case):
  """Marks ``case`` as a test of loss function ``fn`` (table coverage test)."""
  case.loss_fn = fn
  return case


def _features_case(fn, **kw):
  return _tagged(fn, lambda x, w, y, key: fn(x, w, y, **kw))


def _logits_case(fn, **kw):
  return _tagged(fn, lambda x, w, y, key: fn(x @ w, y, **kw))


LOSS_CASES = {
  "softmax": _logits_case(losses.softmax_loss),
  "l_softmax_m2": _features_case(losses.large_margin_softmax_loss, margin=2, lam=0.0),
  "l_softmax_m3_lam": _features_case(losses.large_margin_softmax_loss, margin=3, lam=0.5),
  "l_softmax_m4": _features_case(losses.large_margin_softmax_loss, margin=4, lam=0.0),
  "l_softmax_m6": _features_case(losses.large_margin_softmax_loss, margin=6, lam=0.0),
  "a_softmax_m4": _features_case(losses.a_softmax_loss, margin=4, lam=0.0),
  "noisy_annealed": _tagged(
    losses.noisy_softmax_loss,
    lambda x, w, y, key: losses.noisy_softmax_loss(x, w, y, key, alpha=0.3),
  ),
  "noisy_normal": _tagged(
    losses.noisy_softmax_loss,
    lambda x, w, y, key: losses.noisy_softmax_loss(x, w, y, key, alpha=0.3, noise="normal"),
  ),
  "virtual": _features_case(losses.virtual_softmax_loss),
  "m_softmax": _logits_case(losses.soft_margin_softmax_loss, margin=0.4),
  "em_softmax": _tagged(
    losses.ensemble_soft_margin_softmax_loss,
    lambda x, w, y, key: losses.ensemble_soft_margin_softmax_loss(
      x, stacked(w), y, margin=0.3, diversity=0.1
    ),
  ),
  "uniformity": _logits_case(losses.uniformity_regularized_softmax_loss, lam=0.3),
  "uniformity_q_u": _logits_case(
    losses.uniformity_regularized_softmax_loss, lam=0.3, divergence="q_u"
  ),
  "uniformity_u_q": _logits_case(
    losses.uniformity_regularized_softmax_loss, lam=0.3, divergence="u_q"
  ),
  "hinge": _logits_case(losses.multiclass_hinge_loss),
  "lsr": _logits_case(losses.label_smoothing_loss, smoothing=0.1),
  "normface": _features_case(losses.normface_loss, scale=8.0),
  "cosface": _features_case(losses.cosface_loss, scale=8.0, margin=0.35),
  "arcface": _features_case(losses.arcface_loss, scale=8.0, margin=0.5),
  "arcface_insightface": _features_case(
    losses.arcface_loss, scale=8.0, margin=0.5, theta_overflow="insightface"
  ),
  "arcface_easy": _features_case(losses.arcface_loss, scale=8.0, margin=0.5, theta_overflow="easy"),
  "combined_margin": _features_case(losses.combined_margin_loss, scale=8.0, m1=1.0, m2=0.3, m3=0.2),
  "combined_margin_insightface": _features_case(
    losses.combined_margin_loss, scale=8.0, m1=1.0, m2=0.3, m3=0.2, theta_overflow="insightface"
  ),
  "combined_margin_m1_2": _features_case(
    losses.combined_margin_loss, scale=8.0, m1=2, m2=0.1, m3=0.1
  ),
  "combined_margin_m1_1.5": _features_case(
    losses.combined_margin_loss, scale=8.0, m1=1.5, m2=0.2, m3=0.1
  ),
  "subcenter_arcface": _tagged(
    losses.subcenter_arcface_loss,
    lambda x, w, y, key: losses.subcenter_arcface_loss(x, subcenters(w), y, scale=8.0, margin=0.5),
  ),
  "center": _tagged(losses.center_loss, lambda x, w, y, key: losses.center_loss(x, w.T, y)),
  "adaface": _features_case(losses.adaface_loss, **ADAFACE),
  "adaface_clip": _features_case(losses.adaface_loss, **ADAFACE, theta_overflow="clip"),
  "magface": _features_case(losses.magface_loss, **MAGFACE),
  "curricularface": _features_case(losses.curricularface_loss, scale=8.0, margin=0.5, t=0.3),
  "elasticface_arc": _tagged(
    losses.elasticface_loss,
    lambda x, w, y, key: losses.elasticface_loss(x, w, y, key, scale=8.0, margin=0.5, sigma=0.1),
  ),
}


def test_the_table_holds_every_public_loss_and_the_cases_cover_it():
  public = {name for name in losses.__all__ if name.endswith("_loss")}
  assert {spec.fn.__name__ for spec in losses.TABLE.values()} == public
  for name, spec in losses.TABLE.items():
    assert spec.inputs in losses._spec.INPUTS and spec.classify in losses._spec.CLASSIFY
    # Stacked weights are EM-Softmax's classifiers (averaged) or sub-centres (max).
    assert (spec.classify in ("averaged", "subcenter")) == (spec.inputs == "stacked"), name
  tested = {case.loss_fn for case in LOSS_CASES.values()}
  for spec in losses.TABLE.values():
    assert spec.fn in tested, f"no case of LOSS_CASES tests {spec.name}"


# ------------------------------------------------------------------- values
def test_values_match_numpy_references():
  x, w, y = make_inputs()
  key = jax.random.key(3)
  xi = np.asarray(jax.random.normal(key, (B,), jnp.float64))  # how the loss draws xi
  logits = x @ w
  rows = np.arange(B)
  cos = np_cos_matrix(x, w)
  cos_y = cos[rows, y]
  unit_w = w / np.linalg.norm(w, axis=0)
  expected = {
    "softmax": -np_log_softmax(logits)[rows, y],
    "l_softmax_m2": np_l_softmax(x, w, y, 2),
    "l_softmax_m3_lam": np_l_softmax(x, w, y, 3, lam=0.5),
    "l_softmax_m4": np_l_softmax(x, w, y, 4),
    "l_softmax_m6": np_l_softmax(x, w, y, 6),
    "a_softmax_m4": np_l_softmax(x, unit_w, y, 4),
    "noisy_annealed": np_noisy(x, w, y, xi, 0.3, "annealed"),
    "noisy_normal": np_noisy(x, w, y, xi, 0.3, "normal"),
    "virtual": np_virtual(x, w, y),
    "m_softmax": np_ce_replaced(logits, y, logits[rows, y] - 0.4),
    "em_softmax": np_em(x, np.asarray(stacked(jnp.asarray(w))), y, 0.3, 0.1),
    "uniformity": np_uniformity(logits, y, 0.3, "symmetric"),
    "uniformity_q_u": np_uniformity(logits, y, 0.3, "q_u"),
    "uniformity_u_q": np_uniformity(logits, y, 0.3, "u_q"),
    "hinge": np.array(
      [np.sum(np.maximum(0, np.delete(f, t) - f[t] + 1)) / (C - 1) for f, t in zip(logits, y)]
    ),
    "lsr": -0.9 * np_log_softmax(logits)[rows, y] - 0.1 * np_log_softmax(logits).mean(axis=1),
    "normface": -np_log_softmax(8 * cos)[rows, y],
    "cosface": np_ce_replaced(8 * cos, y, 8 * (cos_y - 0.35)),
    "arcface": np_ce_replaced(8 * cos, y, 8 * np.cos(np.arccos(cos_y) + 0.5)),
    "arcface_insightface": np_combined(cos, y, 8.0, 1, 0.5, 0.0, "insightface"),
    "arcface_easy": np_combined(cos, y, 8.0, 1, 0.5, 0.0, "easy"),
    "combined_margin": np_combined(cos, y, 8.0, 1, 0.3, 0.2),
    "combined_margin_insightface": np_combined(cos, y, 8.0, 1, 0.3, 0.2, "insightface"),
    "combined_margin_m1_2": np_combined(cos, y, 8.0, 2, 0.1, 0.1),
    "combined_margin_m1_1.5": np_combined(cos, y, 8.0, 1.5, 0.2, 0.1),
    "subcenter_arcface": np_combined(
      np_subcenter_cos(x, np.asarray(subcenters(jnp.asarray(w)))), y, 8.0, 1, 0.5, 0.0
    ),
    "center": 0.5 * np.sum((x - w.T[y]) ** 2, axis=1),
    "adaface": np_adaface(x, w, y, **ADAFACE),
    "adaface_clip": np_adaface(x, w, y, **ADAFACE, clip=True),
    "magface": np_magface(x, w, y, **MAGFACE),
    "curricularface": np_curricular(x, w, y, 8.0, 0.5, 0.3),
    "elasticface_arc": np_elastic(x, w, y, xi, 8.0, 0.5, 0.1, "arc"),
  }
  assert set(expected) == set(LOSS_CASES)
  for name, fn in LOSS_CASES.items():
    got = jax.jit(fn)(jnp.asarray(x), jnp.asarray(w), jnp.asarray(y), key)
    assert got.shape == (B,) and got.dtype == jnp.float64, name
    np.testing.assert_allclose(got, expected[name], rtol=1e-10, atol=1e-10, err_msg=name)


def test_all_noise_types_match_reference():
  x, w, y = make_inputs(1)
  key = jax.random.key(7)
  xi = np.asarray(jax.random.normal(key, (B,), jnp.float64))
  for noise in losses._noisy_virtual.NOISE_TYPES:
    got = losses.noisy_softmax_loss(x, w, y, key, alpha=0.5, noise=noise)
    np.testing.assert_allclose(got, np_noisy(x, w, y, xi, 0.5, noise), rtol=1e-10, err_msg=noise)


def test_noisy_same_key_same_loss_and_noise_ignores_bias():
  x, w, y = make_inputs(2)
  key = jax.random.key(0)
  a = losses.noisy_softmax_loss(x, w, y, key, alpha=0.3)
  np.testing.assert_array_equal(a, losses.noisy_softmax_loss(x, w, y, key, alpha=0.3))
  assert not np.allclose(a, losses.noisy_softmax_loss(x, w, y, jax.random.key(1), alpha=0.3))
  bias = np.linspace(-1, 1, C)
  xi = np.asarray(jax.random.normal(key, (B,), jnp.float64))
  dot, norms, cos = np_target_geometry(x, w, y)
  expected = np_ce_replaced(x @ w + bias, y, dot + bias[y] - 0.3 * norms * (1 - cos) * abs(xi))
  np.testing.assert_allclose(
    losses.noisy_softmax_loss(x, w, y, key, alpha=0.3, bias=bias), expected, rtol=1e-10
  )


def test_psi_matches_definition_for_many_margins():
  theta = np.linspace(0, np.pi, 1001)
  for m in range(1, 9):
    np.testing.assert_allclose(
      losses.psi(jnp.cos(theta), margin=m), np_psi(theta, m), atol=1e-9, err_msg=f"m={m}"
    )
    # psi is monotone decreasing in theta, and continuous.
    assert np.all(np.diff(np.asarray(losses.psi(jnp.cos(theta), margin=m))) <= 1e-12)


def test_hsic_uses_no_class_by_class_matrix_and_matches_trace_form():
  rng = np.random.default_rng(0)
  ws = rng.normal(size=(3, D, C))
  np.testing.assert_allclose(losses.hsic_diversity(ws), np_hsic(ws), rtol=1e-10)
  assert losses.hsic_diversity(ws[:1]) == 0.0
  jaxpr = jax.make_jaxpr(losses.hsic_diversity)(jnp.ones((2, 3, 1000)))
  assert all(
    (1000, 1000) != tuple(v.aval.shape)[-2:] for eqn in jaxpr.jaxpr.eqns for v in eqn.outvars
  )


def test_inference_logits_and_ensemble_weights():
  x, w, _ = make_inputs()
  np.testing.assert_allclose(losses.inference_logits(x, w), x @ w, rtol=1e-12)
  np.testing.assert_allclose(
    losses.inference_logits(x, w, cosine=True), np_cos_matrix(x, w), rtol=1e-12
  )
  ws = np.stack([w, 2 * w])
  np.testing.assert_allclose(losses.ensemble_weights(ws), 1.5 * w)
  np.testing.assert_allclose(losses.inference_logits(x, ws), x @ (1.5 * w), rtol=1e-12)


def test_rho_hat_range():
  f = np.array([[5.0, 1.0, 1.0, 1.0], [5.0, 9.0, 0.0, -9.0]])
  np.testing.assert_allclose(
    losses.rho_hat(f, np.array([0, 0])), [np.log(3), np.log1p(np.exp(-9) + np.exp(-18))], rtol=1e-10
  )


def test_lambda_schedule_formula():
  schedule = losses.lambda_schedule(base=1000.0, gamma=0.12, power=1.0, lambda_min=5.0)
  steps = np.array([0, 10, 1000, 100000])
  np.testing.assert_allclose(
    schedule(steps), np.maximum(1000 * (1 + 0.12 * steps) ** -1.0, 5.0), rtol=1e-6
  )
  assert float(jax.jit(schedule)(0)) == 1000.0


# ----------------------------------------------- gradients vs closed forms
def softmax_probs(f):
  return np.exp(np_log_softmax(f))


def assemble_target_gradients(x, w, y, target_terms):
  """Full dL/dx, dL/dW of sum_i L_i when only the target logit is modified.

  ``target_terms(i) -> (f_y, df_y/dx_i, df_y/dW_y)`` from a paper's closed
  form; the other logits are W_j^T x, so dL/df is softmax(f) - onehot(y).
  """
  gx, gw = np.zeros_like(x), np.zeros_like(w)
  for i in range(len(y)):
    fy, dfy_dx, dfy_dw = target_terms(i)
    f = x[i] @ w
    f[y[i]] = fy
    dl_df = softmax_probs(f[None])[0]
    dl_df[y[i]] -= 1
    others = np.arange(w.shape[1]) != y[i]
    gx[i] = w[:, others] @ dl_df[others] + dl_df[y[i]] * dfy_dx
    gw[:, others] += np.outer(x[i], dl_df[others])
    gw[:, y[i]] += dl_df[y[i]] * dfy_dw
  return gx, gw


def test_l_softmax_gradient_matches_eqs_12_13_for_m2():
  x, w, y = make_inputs(4)
  grads = jax.grad(
    lambda x, w: jnp.sum(losses.large_margin_softmax_loss(x, w, y, margin=2, lam=0.0)),
    argnums=(0, 1),
  )(x, w)

  def target_terms(i):
    xi, wy = x[i], w[:, y[i]]
    dot, nx, nw = xi @ wy, np.linalg.norm(xi), np.linalg.norm(wy)
    k = 0 if dot / (nx * nw) > 0 else 1  # eq. 11 as corrected (the printed condition is inverted)
    s = (-1) ** k
    fy = s * 2 * dot**2 / (nw * nx) - (2 * k + s) * nw * nx  # eq. 11
    dfy_dx = (
      s * (4 * dot * wy / (nw * nx) - 2 * dot**2 * xi / (nw * nx**3)) - (2 * k + s) * nw * xi / nx
    )  # eq. 12
    dfy_dw = (
      s * (4 * dot * xi / (nw * nx) - 2 * dot**2 * wy / (nx * nw**3)) - (2 * k + s) * nx * wy / nw
    )  # eq. 13
    return fy, dfy_dx, dfy_dw

  gx, gw = assemble_target_gradients(x, w, y, target_terms)
  np.testing.assert_allclose(grads[0], gx, rtol=1e-9, atol=1e-10)
  np.testing.assert_allclose(grads[1], gw, rtol=1e-9, atol=1e-10)


def cos_m_power_coefficients(m):
  """a_p with cos(m theta) = sum_p a_p cos^p(theta): eq. 7 expanded in powers of cos."""
  a = np.zeros(m + 1)
  for n in range(m // 2 + 1):
    for i in range(n + 1):  # (1 - c^2)^n = sum_i C(n, i) (-c^2)^i
      a[m - 2 * n + 2 * i] += (-1) ** n * math.comb(m, 2 * n) * math.comb(n, i) * (-1) ** i
  return a


@pytest.mark.parametrize("m", [3, 4])
def test_l_softmax_gradient_matches_eqs_9_10(m):
  x, w, y = make_inputs(5)
  grads = jax.grad(
    lambda x, w: jnp.sum(losses.large_margin_softmax_loss(x, w, y, margin=m, lam=0.0)),
    argnums=(0, 1),
  )(x, w)
  coefficients = cos_m_power_coefficients(m)

  def target_terms(i):
    xi, wy = x[i], w[:, y[i]]
    dot, nx, nw = xi @ wy, np.linalg.norm(xi), np.linalg.norm(wy)
    k = int(np.minimum(np.floor(np.arccos(dot / (nx * nw)) * m / np.pi), m - 1))
    s = (-1) ** k
    # eq. 8: f_y = s * sum_p a_p (W^T x)^p / (|W||x|)^(p-1) - 2k |W||x|; eqs. 9-10 differentiate it.
    fy = (
      s * sum(a * dot**p / (nw * nx) ** (p - 1) for p, a in enumerate(coefficients))
      - 2 * k * nw * nx
    )
    dfy_dx = (
      s
      * sum(
        a
        * (
          p * dot ** (p - 1) * wy / (nw * nx) ** (p - 1)
          - (p - 1) * dot**p * xi / (nw ** (p - 1) * nx ** (p + 1))
        )
        for p, a in enumerate(coefficients)
        if a
      )
      - 2 * k * nw * xi / nx
    )
    dfy_dw = (
      s
      * sum(
        a
        * (
          p * dot ** (p - 1) * xi / (nw * nx) ** (p - 1)
          - (p - 1) * dot**p * wy / (nw ** (p + 1) * nx ** (p - 1))
        )
        for p, a in enumerate(coefficients)
        if a
      )
      - 2 * k * nx * wy / nw
    )
    return fy, dfy_dx, dfy_dw

  gx, gw = assemble_target_gradients(x, w, y, target_terms)
  np.testing.assert_allclose(grads[0], gx, rtol=1e-9, atol=1e-10)
  np.testing.assert_allclose(grads[1], gw, rtol=1e-9, atol=1e-10)


def test_noisy_gradient_matches_eqs_7_8():
  x, w, y = make_inputs(6)
  key, alpha = jax.random.key(11), 0.4
  xi_noise = np.abs(np.asarray(jax.random.normal(key, (B,), jnp.float64)))
  grads = jax.grad(
    lambda x, w: jnp.sum(losses.noisy_softmax_loss(x, w, y, key, alpha=alpha)), argnums=(0, 1)
  )(x, w)

  def target_terms(i):
    xv, wy = x[i], w[:, y[i]]
    nx, nw = np.linalg.norm(xv), np.linalg.norm(wy)
    fy = xv @ wy - alpha * (nw * nx - xv @ wy) * xi_noise[i]  # eq. 5
    dfy_dx = wy - alpha * xi_noise[i] * (xv * nw / nx - wy)  # eq. 7
    dfy_dw = xv - alpha * xi_noise[i] * (wy * nx / nw - xv)  # eq. 8
    return fy, dfy_dx, dfy_dw

  gx, gw = assemble_target_gradients(x, w, y, target_terms)
  np.testing.assert_allclose(grads[0], gx, rtol=1e-9, atol=1e-10)
  np.testing.assert_allclose(grads[1], gw, rtol=1e-9, atol=1e-10)


def test_virtual_gradient_matches_eqs_4_5():
  x, w, y = make_inputs(7)
  grads = jax.grad(lambda x, w: jnp.sum(losses.virtual_softmax_loss(x, w, y)), argnums=(0, 1))(x, w)
  gx, gw = np.zeros_like(x), np.zeros_like(w)
  for i in range(B):
    xv, wy = x[i], w[:, y[i]]
    nx, nw = np.linalg.norm(xv), np.linalg.norm(wy)
    p = softmax_probs(np.append(xv @ w, nw * nx)[None])[0]  # C real classes + the virtual one
    p_virtual = p[C]
    for j in range(C):
      if j == y[i]:  # eq. 4
        gw[:, j] += p[j] * xv + p_virtual * nx * wy / nw - xv
      else:  # eq. 5
        gw[:, j] += p[j] * xv
    # d/dx, by the same chain rule (the paper prints only the W gradients).
    gx[i] = w @ p[:C] + p_virtual * nw * xv / nx - wy
  np.testing.assert_allclose(grads[0], gx, rtol=1e-9, atol=1e-10)
  np.testing.assert_allclose(grads[1], gw, rtol=1e-9, atol=1e-10)


def test_uniformity_gradient_matches_eq_12_with_x_read_as_logits():
  x, w, y = make_inputs(8)
  f = x @ w
  lam = 0.3
  grad = jax.grad(lambda f: jnp.sum(losses.uniformity_regularized_softmax_loss(f, y, lam=lam)))(f)
  expected = np.zeros_like(f)
  for i in range(B):
    p = softmax_probs(f[i][None])[0]
    others = np.arange(C) != y[i]
    q = np.exp(f[i][others] - f[i][others].max())
    q /= q.sum()
    # eq. 12, with the printed x_c read as the logit f_c.
    expected[i, others] = p[others] + lam / 2 * (
      q * (f[i][others] - np.sum(f[i][others] * q)) + (q - 1 / (C - 1))
    )
    expected[i, y[i]] = p[y[i]] - 1
  np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12)


def test_hsic_gradient_matches_em_paper_form():
  """d/dW_v of the ordered-pair sum is 4 W_v K_v (paper: lambda W_v K_v, no constant),
  K_v = sum_{u != v} H W_u^T W_u H on the normalised columns, then the
  normalisation's projection (I - w w^T)/||w|| per column."""
  rng = np.random.default_rng(9)
  ws = rng.normal(size=(3, D, C))
  grad = jax.grad(losses.hsic_diversity)(ws)
  h = np.eye(C) - np.ones((C, C)) / C
  norms = np.linalg.norm(ws, axis=1, keepdims=True)
  unit = ws / norms
  for v in range(3):
    k_v = sum(h @ unit[u].T @ unit[u] @ h for u in range(3) if u != v)
    g_unit = 4 * unit[v] @ k_v
    projected = g_unit - unit[v] * np.sum(unit[v] * g_unit, axis=0)
    np.testing.assert_allclose(grad[v], projected / norms[v], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("divergence", ["symmetric", "q_u", "u_q"])
def test_uniformity_custom_jvp_matches_autodiff_of_the_plain_formula(divergence):
  x, w, y = make_inputs(18)
  f = (x @ w) * np.linspace(1.0, 40.0, B)[:, None]  # rows from narrow to wide
  f[1, y[1]] += 150.0  # a target 150 above every other logit: -log p_y underflows to 0

  def plain(f):  # the loss as written in the paper, differentiated by autodiff
    is_target = jax.nn.one_hot(y, C, dtype=bool)
    log_q = jnp.where(is_target, 0.0, jax.nn.log_softmax(jnp.where(is_target, -jnp.inf, f)))
    q = jnp.where(is_target, 0.0, jnp.exp(log_q))
    log_u = -np.log(C - 1)
    kl_qu = jnp.sum(q * (log_q - log_u), axis=1)
    kl_uq = jnp.sum(jnp.where(is_target, 0.0, np.exp(log_u) * (log_u - log_q)), axis=1)
    penalty = {"symmetric": 0.5 * (kl_qu + kl_uq), "q_u": kl_qu, "u_q": kl_uq}[divergence]
    return -jax.nn.log_softmax(f)[np.arange(B), y] + 0.3 * penalty

  def ours(f):
    return losses.uniformity_regularized_softmax_loss(f, y, lam=0.3, divergence=divergence)

  weights = np.linspace(0.5, 2.0, B)  # distinct cotangents per example
  expected, expected_grad = jax.value_and_grad(lambda f: jnp.sum(weights * plain(f)))(f)
  value, grad = jax.value_and_grad(lambda f: jnp.sum(weights * ours(f)))(f)
  np.testing.assert_allclose(value, expected, rtol=1e-10)
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-9, atol=1e-12)
  tangent = np.random.default_rng(19).normal(size=f.shape)

  def forward_mode(loss):  # the JVP of the per-example loss and a Hessian-vector product
    hvp = jax.jvp(jax.grad(lambda f: jnp.sum(weights * loss(f))), (f,), (tangent,))[1]
    return jax.jvp(loss, (f,), (tangent,))[1], hvp

  chex.assert_trees_all_close(forward_mode(ours), forward_mode(plain), rtol=1e-9, atol=1e-12)
  with jax.enable_x64(False):  # float32 against the float64 reference
    f32 = jnp.asarray(f, jnp.float32)
    value, grad = jax.value_and_grad(lambda f: jnp.sum(weights * ours(f)))(f32)
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  np.testing.assert_allclose(grad, expected_grad, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_check_grads_float64(name):
  x, w, y = make_inputs(10)
  fn = LOSS_CASES[name]
  if name.startswith("adaface"):  # z stops x's gradient: d/dx in the face margins' tests
    fn = lambda x, w, y, key, fn=fn, x0=jnp.asarray(x): fn(x0, w, y, key)
  check_grads(
    jax.jit(lambda x, w: fn(x, w, y, jax.random.key(0))),
    (jnp.asarray(x), jnp.asarray(w)),
    order=1,
    modes=["rev"],
  )


def use_plain_formulas(patch):
  """Replaces every custom JVP of the losses by its primal formula, which JAX
  then differentiates by plain autodiff."""
  for module, name in (
    (_common, "_take_target"),
    (_common, "_matmul_unit_columns"),
    (_logit_losses, "_uniformity_terms"),
    (_ensemble, "_hsic"),
  ):
    patch.setattr(module, name, getattr(module, name).fun)


@pytest.mark.parametrize("name", sorted(losses.TABLE))
def test_forward_mode_equals_autodiff_of_the_plain_formula(name):
  spec = losses.TABLE[name]
  x, w, y = (jnp.asarray(a) for a in make_inputs(33, b=4, d=3, c=5))
  rng = np.random.default_rng(34)
  tangents = (jnp.asarray(rng.normal(size=x.shape)), jnp.asarray(rng.normal(size=w.shape)))
  weights = np.linspace(0.5, 2.0, x.shape[0])  # distinct cotangents per example

  def loss(x, w):
    w = {"stacked": stacked(w), "centers": w.T}.get(spec.inputs, w)
    args = (x @ w,) if spec.inputs == "logits" else (x, w)
    key = (jax.random.key(0),) if spec.needs_key else ()
    return jnp.sum(weights * spec.fn(*args, y, *key, **spec.typical))

  def derivatives(x, w):  # jvp w.r.t. (x, W), Hessian w.r.t. the features
    return jax.jvp(loss, (x, w), tangents), jax.hessian(loss)(x, w)

  @jax.jit  # one program: ours, then the plain formulas (patched while tracing)
  def both(x, w):
    ours = derivatives(x, w), jax.jacfwd(loss, (0, 1))(x, w), jax.jacrev(loss, (0, 1))(x, w)
    with pytest.MonkeyPatch.context() as patch:
      use_plain_formulas(patch)
      return ours, derivatives(x, w)

  (got, forward, reverse), want = both(x, w)
  chex.assert_trees_all_close(got, want, rtol=1e-9, atol=1e-12)
  chex.assert_trees_all_close(forward, reverse, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------- reductions
def test_reductions_to_softmax():
  x, w, y = make_inputs(12)
  logits = jnp.asarray(x) @ jnp.asarray(w)  # the same XLA matmul the losses run
  softmax = losses.softmax_loss(logits, y)
  np.testing.assert_array_equal(
    losses.large_margin_softmax_loss(x, w, y, margin=1, lam=0.0), softmax
  )
  np.testing.assert_array_equal(
    losses.large_margin_softmax_loss(x, w, y, margin=1, lam=3.0), softmax
  )
  same = {
    "noisy alpha=0": losses.noisy_softmax_loss(x, w, y, jax.random.key(0), alpha=0.0),
    "soft margin 0": losses.soft_margin_softmax_loss(logits, y, margin=0.0),
    "uniformity lam=0": losses.uniformity_regularized_softmax_loss(logits, y, lam=0.0),
    "lsr 0": losses.label_smoothing_loss(logits, y, smoothing=0.0),
    "em V=1": losses.ensemble_soft_margin_softmax_loss(x, w[None], y, margin=0.0, diversity=0.0),
    "em V=2, margin 0, diversity 0, halves": losses.ensemble_soft_margin_softmax_loss(
      x, np.stack([w, w]), y, margin=0.0, diversity=0.0
    )
    / 2,
    "l_softmax huge lambda": losses.large_margin_softmax_loss(x, w, y, margin=4, lam=1e12),
  }
  for name, value in same.items():
    np.testing.assert_allclose(value, softmax, rtol=1e-9, err_msg=name)
  np.testing.assert_allclose(
    losses.soft_margin_softmax_loss(logits, y, margin=1.0),
    np_ce_replaced(logits, y, logits[np.arange(B), y] - 1.0),
  )


# ------------------------------------------------------------------- safety
def edge_inputs():
  x, w, y = make_inputs(13, b=8)
  x, w = x.astype(np.float32), w.astype(np.float32)
  x[0] = 0.0  # zero feature vector
  w[:, y[1]] = 0.0  # a zero weight column
  x[2] = 2.0 * w[:, y[2]]  # parallel to W_y
  x[3] = -3.0 * w[:, y[3]]  # antiparallel
  x[4] *= 1e4  # large norm
  return x, w, y


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_finite_value_and_gradient_on_edge_cases(name):
  fn = LOSS_CASES[name]
  with jax.enable_x64(False):
    for x, w, y in [
      edge_inputs(),
      (1e4 * make_inputs(14)[0], 1e4 * make_inputs(14)[1], make_inputs(14)[2]),
    ]:
      x, w = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
      value, grads = jax.jit(
        jax.value_and_grad(lambda x, w: jnp.sum(fn(x, w, y, jax.random.key(0))), argnums=(0, 1))
      )(x, w)
      assert np.isfinite(value), name
      assert all(np.all(np.isfinite(g)) for g in grads), name


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_bfloat16_close_to_float32(name):
  fn = LOSS_CASES[name]
  with jax.enable_x64(False):
    x, w, y = make_inputs(15)
    x32, w32 = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
    x16, w16 = x32.astype(jnp.bfloat16), w32.astype(jnp.bfloat16)
    reference = jax.jit(fn)(x16.astype(jnp.float32), w16.astype(jnp.float32), y, jax.random.key(0))
    per_example, grads = jax.jit(
      lambda x, w: (
        fn(x, w, y, jax.random.key(0)),
        jax.grad(lambda x, w: jnp.sum(fn(x, w, y, jax.random.key(0))), argnums=(0, 1))(x, w),
      )
    )(x16, w16)
    assert per_example.dtype == jnp.bfloat16, name
    assert all(np.all(np.isfinite(np.asarray(g, np.float32))) for g in grads), name
    np.testing.assert_allclose(
      np.asarray(per_example, np.float32), reference, rtol=0.05, atol=1e-2, err_msg=name
    )


def test_float64_stays_float64_and_float32_stays_float32():
  x, w, y = make_inputs()
  assert losses.virtual_softmax_loss(x, w, y).dtype == jnp.float64
  with jax.enable_x64(False):
    assert (
      losses.virtual_softmax_loss(x.astype(np.float32), w.astype(np.float32), y).dtype
      == jnp.float32
    )


# ---------------------------------------------------------- transformations
@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_jit_vmap_grad(name):
  fn = LOSS_CASES[name]
  x, w, y = make_inputs(16)
  x, w, y = jnp.asarray(x), jnp.asarray(w), jnp.asarray(y)
  key = jax.random.key(0)
  eager = fn(x, w, y, key)
  np.testing.assert_allclose(jax.jit(fn)(x, w, y, key), eager, rtol=1e-12)
  batched = jax.vmap(fn, in_axes=(0, None, 0, None))(
    jnp.stack([x, 2 * x]), w, jnp.stack([y, y]), key
  )
  np.testing.assert_allclose(batched[0], eager, rtol=1e-12)
  np.testing.assert_allclose(batched[1], fn(2 * x, w, y, key), rtol=1e-12)
  grads = jax.jit(jax.grad(lambda x, w: jnp.mean(fn(x, w, y, key)), argnums=(0, 1)))(x, w)
  assert grads[0].shape == x.shape and grads[1].shape == w.shape


def test_traced_hyperparameters_compile_once():
  x, w, y = make_inputs(17)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(x, w, lam, alpha, scale, margin, diversity, smoothing):
    return (
      losses.large_margin_softmax_loss(x, w, y, margin=4, lam=lam)
      + losses.a_softmax_loss(x, w, y, margin=2, lam=lam)
      + losses.noisy_softmax_loss(x, w, y, jax.random.key(0), alpha=alpha)
      + losses.cosface_loss(x, w, y, scale=scale, margin=margin)
      + losses.arcface_loss(x, w, y, scale=scale, margin=margin)
      + losses.arcface_loss(x, w, y, scale=scale, margin=margin, theta_overflow="insightface")
      + losses.combined_margin_loss(x, w, y, scale=scale, m2=margin, m3=margin)
      + losses.combined_margin_loss(
        x, w, y, scale=scale, m1=2, m2=margin, m3=margin, theta_overflow="insightface"
      )
      + losses.subcenter_arcface_loss(x, subcenters(w), y, scale=scale, margin=margin)
      + losses.normface_loss(x, w, y, scale=scale)
      + losses.soft_margin_softmax_loss(x @ w, y, margin=margin)
      + losses.ensemble_soft_margin_softmax_loss(
        x, stacked(w), y, margin=margin, diversity=diversity
      )
      + losses.uniformity_regularized_softmax_loss(x @ w, y, lam=lam)
      + losses.multiclass_hinge_loss(x @ w, y, margin=margin)
      + losses.label_smoothing_loss(x @ w, y, smoothing=smoothing)
    )

  schedule = losses.lambda_schedule()
  for t in range(4):
    step(x, w, schedule(1000 * t), 0.1 * t, 10.0 + t, 0.1 * t, 0.01 * t, 0.05 * t)
  chex.clear_trace_counter()


# ------------------------------------------------------------------- errors
def test_clear_errors_for_bad_input():
  x, w, y = make_inputs()
  with pytest.raises(ValueError, match="labels must have shape"):
    losses.softmax_loss(x @ w, y[:, None])
  with pytest.raises(ValueError, match="labels has 3 entries"):
    losses.virtual_softmax_loss(x, w, y[:3])
  with pytest.raises(ValueError, match=r"do not match features .*expected dim 5"):
    losses.large_margin_softmax_loss(x, w[:4], y, margin=2, lam=0.0)
  with pytest.raises(ValueError, match=r"\[num_classifiers, dim, num_classes\]"):
    losses.ensemble_soft_margin_softmax_loss(x, w, y, margin=0.0, diversity=0.0)
  with pytest.raises(ValueError, match=r"\[num_classifiers, dim, num_classes\]"):
    losses.subcenter_arcface_loss(x, w, y, scale=16.0, margin=0.5)
  with pytest.raises(ValueError, match=r"\[num_classifiers, dim, num_classes\]"):
    losses.subcenter_cosines(x, w)
  with pytest.raises(ValueError, match=r"do not match features .*expected dim 5 on axis 1"):
    losses.subcenter_cosines(x, subcenters(w)[:, :4])
  with pytest.raises(ValueError, match=r"dominant must be integers of shape \[num_classes\]"):
    losses.far_from_dominant_subcenter(x, subcenters(w), y, np.zeros(C - 1, int))
  for bad in (2, 2.0, True, 0):
    with pytest.raises(ValueError, match="num_classes must be a Python integer >= 3"):
      losses.adacos_fixed_scale(bad)
  for bad in (0, -1, 2.5, 2.0, True):
    with pytest.raises(ValueError, match="margin must be a Python integer >= 1"):
      losses.large_margin_softmax_loss(x, w, y, margin=bad, lam=0.0)
    with pytest.raises(ValueError, match="margin must be a Python integer >= 1"):
      losses.a_softmax_loss(x, w, y, margin=bad, lam=0.0)
  with pytest.raises(ValueError, match="noise='gaussian' is not one of"):
    losses.noisy_softmax_loss(x, w, y, jax.random.key(0), alpha=0.1, noise="gaussian")
  with pytest.raises(ValueError, match="divergence='kl' is not one of"):
    losses.uniformity_regularized_softmax_loss(x @ w, y, divergence="kl")
  with pytest.raises(TypeError, match="integer class indices"):
    losses.softmax_loss(x @ w, y.astype(np.float32))
  with pytest.raises(ValueError, match="bias must have shape"):
    losses.noisy_softmax_loss(x, w, y, jax.random.key(0), alpha=0.1, bias=np.zeros(C + 1))


def test_out_of_range_label_gives_nan_not_a_silent_value():
  x, w, y = make_inputs()
  y = y.copy()
  y[0] = C  # cannot be checked inside jit; documented to produce NaN
  out = jax.jit(losses.large_margin_softmax_loss, static_argnames="margin")(
    x, w, y, margin=2, lam=0.0
  )
  assert np.isnan(out[0]) and np.all(np.isfinite(out[1:]))


# Each case as fn(x, w, y, key, where): the table's loss with a mask.
def _masked_case(name):
  fn = LOSS_CASES[name].loss_fn
  inputs, kwargs = _CASE_CALLS[name]
  return lambda x, w, y, key, where: fn(*inputs(x, w, y, key), **kwargs, where=where)


_CASE_CALLS = {
  "softmax": (lambda x, w, y, key: (x @ w, y), {}),
  "l_softmax_m2": (lambda x, w, y, key: (x, w, y), {"margin": 2, "lam": 0.0}),
  "a_softmax_m4": (lambda x, w, y, key: (x, w, y), {"margin": 4, "lam": 0.5}),
  "noisy_annealed": (lambda x, w, y, key: (x, w, y, key), {"alpha": 0.3}),
  "virtual": (lambda x, w, y, key: (x, w, y), {}),
  "m_softmax": (lambda x, w, y, key: (x @ w, y), {"margin": 0.4}),
  "em_softmax": (lambda x, w, y, key: (x, stacked(w), y), {"margin": 0.3, "diversity": 0.1}),
  "uniformity": (lambda x, w, y, key: (x @ w, y), {"lam": 0.3}),
  "hinge": (lambda x, w, y, key: (x @ w, y), {}),
  "lsr": (lambda x, w, y, key: (x @ w, y), {"smoothing": 0.1}),
  "normface": (lambda x, w, y, key: (x, w, y), {"scale": 8.0}),
  "cosface": (lambda x, w, y, key: (x, w, y), {"scale": 8.0, "margin": 0.35}),
  "arcface": (lambda x, w, y, key: (x, w, y), {"scale": 8.0, "margin": 0.5}),
  "arcface_insightface": (
    lambda x, w, y, key: (x, w, y),
    {"scale": 8.0, "margin": 0.5, "theta_overflow": "insightface"},
  ),
  "combined_margin": (
    lambda x, w, y, key: (x, w, y),
    {"scale": 8.0, "m1": 1.0, "m2": 0.3, "m3": 0.2},
  ),
  "combined_margin_m1_1.5": (
    lambda x, w, y, key: (x, w, y),
    {"scale": 8.0, "m1": 1.5, "m2": 0.2, "m3": 0.1},
  ),
  "subcenter_arcface": (lambda x, w, y, key: (x, subcenters(w), y), {"scale": 8.0, "margin": 0.5}),
  "center": (lambda x, w, y, key: (x, w.T, y), {}),
  "adaface": (lambda x, w, y, key: (x, w, y), ADAFACE),
  "magface": (lambda x, w, y, key: (x, w, y), MAGFACE),
  "curricularface": (lambda x, w, y, key: (x, w, y), {"scale": 8.0, "margin": 0.5, "t": 0.3}),
  "elasticface_arc": (
    lambda x, w, y, key: (x, w, y, key),
    {"scale": 8.0, "margin": 0.5, "sigma": 0.1},
  ),
}


def test_masked_cases_cover_the_table():
  assert {LOSS_CASES[n].loss_fn for n in _CASE_CALLS} == {s.fn for s in losses.TABLE.values()}


@pytest.mark.parametrize("name", sorted(_CASE_CALLS))
@pytest.mark.parametrize("bad_label", [-1, C, -C - 1])
def test_a_label_outside_the_classes_gives_nan_under_jit(name, bad_label):
  x, w, y = make_inputs()
  y = y.copy()
  y[2] = bad_label
  out = jax.jit(_masked_case(name))(x, w, y, jax.random.key(0), None)
  assert np.isnan(out[2]), (name, out)
  assert np.all(np.isfinite(np.delete(np.asarray(out), 2))), name


@pytest.mark.parametrize("name", sorted(_CASE_CALLS))
def test_where_mask_gives_zero_loss_and_no_gradient(name):
  x, w, y = make_inputs()
  y = y.copy()
  y[1] = -1  # the usual "ignore" label, masked out below
  where = np.ones(B, bool)
  where[[1, 4]] = False
  key = jax.random.key(0)
  fn = jax.jit(_masked_case(name))
  out = fn(x, w, y, key, where)
  assert np.all(out[~where] == 0) and np.all(np.isfinite(out)), name
  full = fn(x, w, np.where(where, y, 0), key, None)
  np.testing.assert_allclose(out[where], full[where], rtol=1e-12, err_msg=name)
  gx, gw = jax.grad(lambda x, w: fn(x, w, y, key, where).sum(), argnums=(0, 1))(x, w)
  assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gw)), name
  np.testing.assert_array_equal(gx[~where], 0.0)
  # The gradient is that of the kept examples alone: the unmasked loss, with
  # the masked examples multiplied by 0.
  y_safe = np.where(where, y, 0)
  gx_ref, gw_ref = jax.grad(
    lambda x, w: (fn(x, w, y_safe, key, None) * where).sum(), argnums=(0, 1)
  )(x, w)
  np.testing.assert_allclose(gx, gx_ref, rtol=1e-10, atol=1e-12, err_msg=name)
  np.testing.assert_allclose(gw, gw_ref, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize(
  "call,message",
  [
    (
      lambda x, w, y: losses.arcface_loss(x, w, y, scale=16.0, margin=28.6),
      r"margin=28.6 must be >= 0.0 and < 3.14.*looks like degrees: math.radians\(28.6\) = 0.4992",
    ),
    (
      lambda x, w, y: losses.cosface_loss(x, w, y, scale=-16.0, margin=0.35),
      r"scale=-16.0 must be > 0.0",
    ),
    (lambda x, w, y: losses.normface_loss(x, w, y, scale=0), r"scale=0 must be > 0.0"),
    (
      lambda x, w, y: losses.arcface_loss(x, w, y, scale=16.0, margin=np.float32(28.6)),
      r"margin=28.6\d* must be >= 0.0 and < 3.14.*looks like degrees",
    ),
    (
      lambda x, w, y: losses.arcface_loss(x, w, y, scale=16.0, margin=jnp.float32(28.6)),
      r"margin=28.6\d* must be >= 0.0 and < 3.14.*looks like degrees",
    ),
    (
      lambda x, w, y: losses.cosface_loss(x, w, y, scale=jnp.asarray(-1.0), margin=0.35),
      r"scale=-1.0 must be > 0.0",
    ),
    (
      lambda x, w, y: losses.cosface_loss(x, w, y, scale=16.0, margin=35.0),
      r"margin=35.0 must be >= 0.0 and < 2.0",
    ),
    (
      lambda x, w, y: losses.combined_margin_loss(x, w, y, scale=16.0, m3=np.float64(2.5)),
      r"m3=2.5 must be >= 0.0 and < 2.0",
    ),
    (
      lambda x, w, y: losses.combined_margin_loss(x, w, y, scale=16.0, m2=28.6),
      r"m2=28.6 must be >= 0.0 and < 3.14.*looks like degrees",
    ),
    (
      lambda x, w, y: losses.combined_margin_loss(x, w, y, scale=16.0, m1=0),
      r"m1=0 must be > 0.0",
    ),
    (
      lambda x, w, y: losses.combined_margin_loss(x, w, y, scale=16.0, m3=-0.1),
      r"m3=-0.1 must be >= 0.0",
    ),
    (
      lambda x, w, y: losses.arcface_loss(x, w, y, scale=16.0, margin=0.5, theta_overflow="clip"),
      r"theta_overflow='clip' is not one of \['easy', 'insightface', 'plain'\]",
    ),
    (
      lambda x, w, y: losses.subcenter_arcface_loss(
        x, subcenters(w), y, scale=16.0, margin=0.5, theta_overflow="easy_margin"
      ),
      r"theta_overflow='easy_margin'",
    ),
    (
      lambda x, w, y: losses.subcenter_arcface_loss(x, subcenters(w), y, scale=16.0, margin=30.0),
      r"margin=30.0 must be >= 0.0 and < 3.14",
    ),
    (lambda x, w, y: losses.adacos_dynamic_scale(x, w, y, scale=0.0), r"scale=0.0 must be > 0.0"),
    (
      lambda x, w, y: losses.far_from_dominant_subcenter(
        x, subcenters(w), y, np.zeros(C, int), threshold_degrees=180.0
      ),
      r"threshold_degrees=180.0 must be >= 0.0 and < 180.0",
    ),
    (
      lambda x, w, y: losses.a_softmax_loss(x, w, y, margin=4, lam=-1.0),
      r"lam=-1.0 must be >= 0.0",
    ),
    (lambda x, w, y: losses.large_margin_softmax_loss(x, w, y, margin=2, lam=-0.5), r"lam=-0.5"),
    (
      lambda x, w, y: losses.noisy_softmax_loss(x, w, y, jax.random.key(0), alpha=-0.1),
      r"alpha=-0.1 must be >= 0.0",
    ),
    (
      lambda x, w, y: losses.label_smoothing_loss(x @ w, y, smoothing=1.0),
      r"smoothing=1.0 must be >= 0.0 and < 1.0",
    ),
    (lambda x, w, y: losses.uniformity_regularized_softmax_loss(x @ w, y, lam=-0.3), r"lam=-0.3"),
    (lambda x, w, y: losses.soft_margin_softmax_loss(x @ w, y, margin=-1.0), r"margin=-1.0"),
    (lambda x, w, y: losses.multiclass_hinge_loss(x @ w, y, margin=-1.0), r"margin=-1.0"),
    (
      lambda x, w, y: losses.ensemble_soft_margin_softmax_loss(
        x, stacked(w), y, margin=0.3, diversity=-1.0
      ),
      r"diversity=-1.0",
    ),
  ],
)
def test_static_hyperparameters_are_checked(call, message):
  x, w, y = make_inputs()
  with pytest.raises(ValueError, match=message):
    call(x, w, y)


def test_traced_hyperparameters_are_not_checked():
  x, w, y = make_inputs()
  out = jax.jit(lambda s: losses.cosface_loss(x, w, y, scale=s, margin=0.35))(-1.0)
  assert out.shape == (B,)


def test_l_softmax_has_no_silent_default_lambda():
  x, w, y = make_inputs()
  with pytest.raises(TypeError, match="lam"):
    losses.large_margin_softmax_loss(x, w, y, margin=2)
  with pytest.raises(TypeError, match="lam"):
    losses.a_softmax_loss(x, w, y, margin=4)


# ----------------------------------- combined margin and theta_overflow
_margin_target = losses._cosine_margins._margin_target
OVERFLOW_MODES = losses._cosine_margins.THETA_OVERFLOW


def inputs_past_pi(seed=20):
  """make_inputs with some examples near antiparallel to W_y (theta_y + m > pi)."""
  x, w, y = make_inputs(seed)
  rng = np.random.default_rng(seed)
  for i in (1, 3):
    x[i] = -w[:, y[i]] + 0.1 * rng.normal(size=D)
  return x, w, y


def test_combined_margin_reduces_to_cosface_and_arcface():
  x, w, y = inputs_past_pi()
  for dtype, rtol, atol in ((np.float32, 1e-5, 1e-6), (np.float64, 1e-12, 1e-14)):
    with jax.enable_x64(dtype == np.float64):
      xd, wd = x.astype(dtype), w.astype(dtype)
      combined = losses.combined_margin_loss(xd, wd, y, scale=16.0, m1=1, m2=0.0, m3=0.35)
      assert combined.dtype == dtype
      np.testing.assert_allclose(
        combined, losses.cosface_loss(xd, wd, y, scale=16.0, margin=0.35), rtol=rtol, atol=atol
      )
      for mode in OVERFLOW_MODES:
        for m1 in (1, 1.0):
          np.testing.assert_allclose(
            losses.combined_margin_loss(
              xd, wd, y, scale=16.0, m1=m1, m2=0.5, m3=0.0, theta_overflow=mode
            ),
            losses.arcface_loss(xd, wd, y, scale=16.0, margin=0.5, theta_overflow=mode),
            rtol=rtol,
            atol=atol,
            err_msg=mode,
          )


@pytest.mark.parametrize("mode", OVERFLOW_MODES)
@pytest.mark.parametrize(
  "m1,m2,m3",
  [(1, 0.5, 0.0), (1.0, 0.3, 0.2), (2, 0.3, 0.1), (3, 0.1, 0.0), (1.5, 0.2, 0.1), (0.9, 0.4, 0.15)],
)
def test_combined_margin_matches_numpy_reference(m1, m2, m3, mode):
  x, w, y = inputs_past_pi()
  fn = lambda x, w: losses.combined_margin_loss(
    x, w, y, scale=16.0, m1=m1, m2=m2, m3=m3, theta_overflow=mode
  )
  expected = np_combined(np_cos_matrix(x, w), y, 16.0, m1, m2, m3, mode)
  np.testing.assert_allclose(jax.jit(fn)(x, w), expected, rtol=1e-10, atol=1e-12)
  # arccos is differentiated only for a non-integer m1.
  uses_arccos = "acos" in str(jax.make_jaxpr(fn)(x, w))
  assert uses_arccos == (not float(m1).is_integer())


def test_combined_margin_traced_m1_takes_the_arccos_path_with_the_same_values():
  x, w, y = inputs_past_pi()
  for mode in OVERFLOW_MODES:
    static = losses.combined_margin_loss(
      x, w, y, scale=16.0, m1=2, m2=0.3, m3=0.1, theta_overflow=mode
    )
    traced = jax.jit(
      lambda m1: losses.combined_margin_loss(
        x, w, y, scale=16.0, m1=m1, m2=0.3, m3=0.1, theta_overflow=mode
      )
    )(2.0)
    np.testing.assert_allclose(traced, static, rtol=1e-9, err_msg=mode)


@pytest.mark.parametrize(
  "m1,m2,m3", [(1, 0.5, 0.0), (1, 0.3, 0.2), (2, 0.3, 0.1), (0.9, 0.4, 0.15), (1.5, 0.2, 0.0)]
)
def test_theta_overflow_target_matches_reference_across_theta(m1, m2, m3):
  theta = np.linspace(0.0, np.pi, 1801)
  theta_0 = (math.pi - m2) / m1
  threshold = math.cos(math.pi - m2) if m1 == 1 else math.cos(min(theta_0, math.pi))
  # The threshold itself and its neighbouring doubles (the rule is cos <= threshold).
  edges = [threshold, np.nextafter(threshold, 2.0), np.nextafter(threshold, -2.0), 0.0]
  cos = np.concatenate([np.cos(theta), edges])
  for mode in OVERFLOW_MODES:
    got = _margin_target(jnp.asarray(cos), m1=m1, m2=m2, m3=m3, theta_overflow=mode)
    atol = 1e-12 if float(m1).is_integer() else 1e-7  # the arccos path clips cos to 1 - eps
    np.testing.assert_allclose(
      got, np_margin_target(cos, m1, m2, m3, mode), atol=atol, err_msg=mode
    )
  # At the threshold the insightface rule has switched; one double above, not yet.
  at, above = _margin_target(
    jnp.asarray(edges[:2]), m1=m1, m2=m2, m3=m3, theta_overflow="insightface"
  )
  if theta_0 <= math.pi:
    shift = m2 * math.sin(m2) if m1 == 1 else threshold + math.cos(m2) + m2 * math.sin(m2)
    assert at == threshold - shift - m3
    assert abs(above - (-1.0 - m3)) < 1e-6  # cos(m1 theta_0 + m2) - m3 = -1 - m3
  # The loss applies the same target: read it back from a two-class probe
  # whose second class equals the first, loss = log(1 + e^{cos - t}) at s = 1.
  grid = np.radians(np.arange(0.0, 181.0, 1.0))
  x = np.stack([np.cos(grid), np.sin(grid)], axis=1)
  W = np.array([[1.0, 1.0], [0.0, 0.0]])
  y = np.zeros(len(grid), np.int32)
  cos_y = np_cos_matrix(x, W)[:, 0]
  for mode in OVERFLOW_MODES:
    loss = losses.combined_margin_loss(x, W, y, scale=1.0, m1=m1, m2=m2, m3=m3, theta_overflow=mode)
    t = cos_y - np.log(np.expm1(np.asarray(loss)))
    atol = 1e-9 if float(m1).is_integer() else 1e-7
    np.testing.assert_allclose(
      t, np_margin_target(cos_y, m1, m2, m3, mode), atol=atol, err_msg=mode
    )


@pytest.mark.parametrize(
  "m1,m2,m3",
  [(1, 0.5, 0.0), (1, 0.3, 0.2), (1, 1.2, 0.0), (1, 2.3, 0.0), (2, 0.3, 0.1), (3, 0.2, 0.0)]
  + [(0.9, 0.4, 0.15), (1.5, 0.5, 0.0)],
)
def test_insightface_target_is_monotone_in_theta(m1, m2, m3):
  theta = np.linspace(0.0, np.pi, 20001)
  cos = jnp.asarray(np.cos(theta))
  insightface = np.asarray(_margin_target(cos, m1=m1, m2=m2, m3=m3, theta_overflow="insightface"))
  assert np.all(np.diff(insightface) <= 1e-12)
  plain = np.asarray(_margin_target(cos, m1=m1, m2=m2, m3=m3, theta_overflow="plain"))
  if m1 * math.pi + m2 > math.pi + 0.01:  # plain cos(m1 theta + m2) rises again past pi
    assert np.max(np.diff(plain)) > 1e-6
  # arcface_loss's insightface mode is the m1 = 1 rule: its target logit, read back
  # from a two-class probe (loss = log(1 + e^{cos - t}) at s = 1), is monotone too.
  if m1 == 1 and m3 == 0:
    x = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    W = np.array([[1.0, 1.0], [0.0, 0.0]])
    loss = losses.arcface_loss(
      x, W, np.zeros(len(theta), np.int32), scale=1.0, margin=m2, theta_overflow="insightface"
    )
    t = np_cos_matrix(x, W)[:, 0] - np.log(np.expm1(np.asarray(loss)))
    assert np.all(np.diff(t) <= 1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_margin_gradients_are_finite_at_cos_plus_minus_one(dtype):
  x, w, y = make_inputs(21)
  x[0::2] = 2.0 * w[:, y[0::2]].T  # cos = +1
  x[1::2] = -0.5 * w[:, y[1::2]].T  # cos = -1
  calls = [
    lambda x, w, mode: losses.arcface_loss(x, w, y, scale=16.0, margin=0.5, theta_overflow=mode),
    lambda x, w, mode: losses.subcenter_arcface_loss(
      x, subcenters(w), y, scale=16.0, margin=0.5, theta_overflow=mode
    ),
  ] + [
    lambda x, w, mode, m1=m1: losses.combined_margin_loss(
      x, w, y, scale=16.0, m1=m1, m2=0.3, m3=0.2, theta_overflow=mode
    )
    for m1 in (1, 2, 3, 1.5, 0.9)
  ]
  with jax.enable_x64(dtype == np.float64):
    x, w = jnp.asarray(x, dtype), jnp.asarray(w, dtype)
    for call in calls:
      for mode in OVERFLOW_MODES:
        value, grads = jax.value_and_grad(lambda x, w: jnp.sum(call(x, w, mode)), argnums=(0, 1))(
          x, w
        )
        assert np.isfinite(value), mode
        assert all(np.all(np.isfinite(g)) for g in grads), mode


# ------------------------------------------------------ Sub-center ArcFace
def test_subcenter_arcface_with_one_subcenter_is_arcface():
  x, w, y = inputs_past_pi()
  with jax.enable_x64(False):
    x, w = x.astype(np.float32), w.astype(np.float32)
    for mode in OVERFLOW_MODES:
      np.testing.assert_allclose(
        losses.subcenter_arcface_loss(x, w[None], y, scale=16.0, margin=0.5, theta_overflow=mode),
        losses.arcface_loss(x, w, y, scale=16.0, margin=0.5, theta_overflow=mode),
        rtol=1e-5,
        atol=1e-6,
        err_msg=mode,
      )
    np.testing.assert_allclose(
      losses.subcenter_cosines(x, w[None]), losses.inference_logits(x, w, cosine=True), atol=1e-6
    )


def test_subcenter_arcface_matches_numpy_for_three_subcenters():
  x, w, y = inputs_past_pi()
  ws = np.asarray(subcenters(jnp.asarray(w)))
  cos = np_subcenter_cos(x, ws)
  # The max picks different sub-centres across the batch (the case is not K = 1 in disguise).
  assert len(np.unique(np.argmax([np_cos_matrix(x, wk) for wk in ws], axis=0))) == 3
  np.testing.assert_allclose(losses.subcenter_cosines(x, ws), cos, rtol=1e-12)
  for mode in OVERFLOW_MODES:
    np.testing.assert_allclose(
      losses.subcenter_arcface_loss(x, ws, y, scale=16.0, margin=0.5, theta_overflow=mode),
      np_combined(cos, y, 16.0, 1, 0.5, 0.0, mode),
      rtol=1e-10,
      err_msg=mode,
    )


def test_subcenter_test_logits_are_the_max_over_subcenters():
  x, w, _ = make_inputs(22)
  ws = np.asarray(subcenters(jnp.asarray(w)))
  bound = losses.by_name("subcenter_arcface", scale=16.0)
  np.testing.assert_allclose(bound.test_logits(x, ws), np_subcenter_cos(x, ws), rtol=1e-12)
  assert bound.spec.classify == "subcenter" and bound.spec.inputs == "stacked"
  combined = losses.by_name("combined_margin")
  assert dict(combined.hyperparameters) == {"scale": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2}
  np.testing.assert_allclose(combined.test_logits(x, w), np_cos_matrix(x, w), rtol=1e-12)


def test_dominant_subcenters_and_examples_far_from_them():
  e = np.eye(3)
  # Class 0's sub-centres along e1, e2, e3; class 1's along -e1, -e2, -e3.
  ws = np.stack([np.stack([e[k], -e[k]], axis=1) for k in range(3)])  # [K=3, d=3, C=2]
  deg = np.radians
  x = np.array(
    [
      [1.0, 0.05, 0.0],  # class 0, near e1
      [1.0, -0.05, 0.02],
      [1.0, 0.0, 0.1],
      [1.0, 0.1, -0.1],
      [np.cos(deg(60)), np.sin(deg(60)), 0.0],  # nearer e2 (30 deg) but 60 deg from e1
      [np.cos(deg(80)), np.sin(deg(80)), 0.0],  # nearer e2, 80 deg from e1: far
      [0.0, 0.1, -1.0],  # class 1, near -e3
      [0.05, 0.0, -1.0],
      [-1.0, 0.0, 0.1],  # class 1, near -e1: 84 deg from -e3, far
      [1.0, 0.0, 0.0],  # class 0, masked out below
      [1.0, 0.0, 0.0],  # a label outside the classes
    ]
  )
  y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 7])
  where = np.ones(len(y), bool)
  where[9] = False
  dominant, counts = losses.dominant_subcenters(x, ws, y, where=where)
  np.testing.assert_array_equal(counts, [[4, 2, 0], [1, 0, 2]])
  np.testing.assert_array_equal(dominant, [0, 2])
  assert dominant.dtype == jnp.int32 and counts.dtype == jnp.int32
  # Without the mask the masked example votes too; batches add up through the counts.
  _, all_counts = losses.dominant_subcenters(x, ws, y)
  np.testing.assert_array_equal(all_counts, [[5, 2, 0], [1, 0, 2]])
  _, first = losses.dominant_subcenters(x[:5], ws, y[:5])
  _, rest = losses.dominant_subcenters(x[5:], ws, y[5:], where=where[5:])
  np.testing.assert_array_equal(first + rest, counts)

  is_far, angles = jax.jit(losses.far_from_dominant_subcenter)(x, ws, y, dominant)
  unit = x / np.linalg.norm(x, axis=1, keepdims=True)
  dominant_centres = ws[np.asarray(dominant)[y[:10]], :, y[:10]]  # [10, d]
  expected = np.degrees(np.arccos(np.sum(unit[:10] * dominant_centres, axis=1)))
  np.testing.assert_allclose(angles[:10], expected, atol=1e-9)
  assert np.isnan(angles[10]) and not is_far[10]
  np.testing.assert_array_equal(np.flatnonzero(is_far), [5, 8])
  assert abs(angles[4] - 60.0) < 1e-9 and abs(angles[5] - 80.0) < 1e-9
  is_far_50, _ = losses.far_from_dominant_subcenter(x, ws, y, dominant, threshold_degrees=50.0)
  np.testing.assert_array_equal(np.flatnonzero(is_far_50), [4, 5, 8])


# ------------------------------------------------------------------ AdaCos
def np_adacos(x, w, y, s, keep=None):
  """Zhang et al. eqs. 15-16 written out with exp and np.median."""
  cos = np_cos_matrix(x, w)
  rows = np.arange(len(y)) if keep is None else np.flatnonzero(keep)
  b_avg = np.mean([np.sum(np.exp(s * np.delete(cos[i], y[i]))) for i in rows])
  theta_med = np.median(np.arccos(cos[rows, y[rows]]))
  return np.log(b_avg) / np.cos(min(np.pi / 4, theta_med))


def test_adacos_fixed_scale():
  for c in (3, 10, 1000, 85742):
    assert losses.adacos_fixed_scale(c) == math.sqrt(2) * math.log(c - 1)


def test_adacos_dynamic_scale_matches_numpy_reference():
  x, w, y = make_inputs(23)
  s0 = losses.adacos_fixed_scale(C)
  keep = np.ones(B, bool)
  keep[2] = False  # an odd count: the median is one of the angles
  for scale in (s0, 10.0):
    got = jax.jit(lambda x, w, s: losses.adacos_dynamic_scale(x, w, y, scale=s))(x, w, scale)
    assert got.shape == () and got.dtype == jnp.float64
    np.testing.assert_allclose(got, np_adacos(x, w, y, scale), rtol=1e-12)  # even count: B = 6
    masked = losses.adacos_dynamic_scale(x, w, y, scale=scale, where=keep)
    np.testing.assert_allclose(masked, np_adacos(x, w, y, scale, keep), rtol=1e-12)
  # The median angle above pi/4 is capped there (eq. 15's min).
  x_far = -x  # targets mostly past 45 degrees
  assert np.median(np.arccos(np_cos_matrix(x_far, w)[np.arange(B), y])) > np.pi / 4
  np.testing.assert_allclose(
    losses.adacos_dynamic_scale(x_far, w, y, scale=s0), np_adacos(x_far, w, y, s0), rtol=1e-12
  )
  # bf16 inputs give a float32 scale.
  with jax.enable_x64(False):
    half = losses.adacos_dynamic_scale(
      jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16), y, scale=s0
    )
    assert half.dtype == jnp.float32
    np.testing.assert_allclose(half, np_adacos(x, w, y, s0), rtol=0.05)


def test_adacos_dynamic_scale_is_state_without_gradient():
  x, w, y = make_inputs(24)
  grads = jax.grad(
    lambda x, w, s: losses.adacos_dynamic_scale(x, w, y, scale=s), argnums=(0, 1, 2)
  )(x, w, 10.0)
  assert all(np.all(np.asarray(g) == 0) for g in grads)

  # Algorithm 1: each step updates the scale from the last one, then trains with it.
  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(x, w, scale):
    scale = losses.adacos_dynamic_scale(x, w, y, scale=scale)
    loss, grad_w = jax.value_and_grad(
      lambda w: jnp.mean(losses.normface_loss(x, w, y, scale=scale))
    )(w)
    return w - 0.1 * grad_w, scale, loss

  reference = losses.adacos_fixed_scale(C)
  x, w, scale = jnp.asarray(x), jnp.asarray(w), jnp.asarray(reference, jnp.float64)
  for _ in range(3):
    reference = np_adacos(x, np.asarray(w), y, reference)
    w, scale, loss = step(x, w, scale)
    np.testing.assert_allclose(scale, reference, rtol=1e-10)
    assert np.isfinite(loss)
  chex.clear_trace_counter()


def test_adacos_dynamic_scale_edge_cases():
  x, w, y = make_inputs(25)
  # No example kept: the scale is unchanged.
  assert losses.adacos_dynamic_scale(x, w, y, scale=7.0, where=np.zeros(B, bool)) == 7.0
  y_bad = y.copy()
  y_bad[3] = C
  assert np.isnan(jax.jit(lambda y: losses.adacos_dynamic_scale(x, w, y, scale=7.0))(y_bad))
  keep = np.arange(B) != 3  # the bad label masked out: finite, as without that example
  np.testing.assert_allclose(
    losses.adacos_dynamic_scale(x, w, y_bad, scale=7.0, where=keep),
    np_adacos(x, w, y, 7.0, keep),
    rtol=1e-12,
  )


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("name", sorted(losses.TABLE))
def test_a_masked_example_changes_nothing_whatever_it_holds(name, bad):
  spec = losses.TABLE[name]
  x, w, y = (jnp.asarray(a) for a in make_inputs(31))
  x = x.astype(jnp.float32).at[0].set(bad)
  w = subcenters(w) if spec.inputs == "stacked" else w
  w = w.astype(jnp.float32)
  where = jnp.arange(x.shape[0]) != 0
  extra = {"centers": jnp.ones((w.shape[-1], x.shape[1]))} if spec.inputs == "centers" else {}
  loss = losses.by_name(name, **({"center_weight": 0.01} if extra else {}))

  def total(x, w):
    return loss(x, w, y, key=jax.random.key(0), where=where, **extra).sum()

  value, (gx, gw) = jax.value_and_grad(total, argnums=(0, 1))(x, w)
  assert np.isfinite(value) and np.all(np.isfinite(gw)), name
  assert np.all(np.isfinite(gx[1:])) and np.all(gx[0] == 0), name
  want = jax.grad(lambda w: loss(x[1:], w, y[1:], key=jax.random.key(0), **extra).sum())(w)
  if not spec.needs_key:  # the noise of the other rows depends on the batch size
    np.testing.assert_allclose(gw, want, rtol=2e-5, atol=1e-6, err_msg=name)
  if spec.inputs == "logits":  # the logit loss alone: zero gradient in the masked row
    logits = (x @ w).at[0].set(bad)
    g = jax.grad(lambda z: spec.fn(z, y, **spec.typical, where=where).sum())(logits)
    assert np.all(g[0] == 0) and np.all(np.isfinite(g)), name


# ------------------------------------------------------------- face margins
def numeric_grads(f, x, w, eps=1e-6):
  """Central differences of sum(f(x, w)) w.r.t. x and w (float64 NumPy)."""
  grads = []
  for i, a in enumerate((x, w)):
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
      plus, minus = [x.copy(), w.copy()], [x.copy(), w.copy()]
      plus[i][idx] += eps
      minus[i][idx] -= eps
      g[idx] = (f(*plus).sum() - f(*minus).sum()) / (2 * eps)
    grads.append(g)
  return grads


# ElasticFace-Cos: the cases' values and gradients are checked here only.
FACE_CASES = {
  **{name: LOSS_CASES[name] for name in ("adaface", "adaface_clip", "magface", "curricularface")},
  "elasticface_arc": LOSS_CASES["elasticface_arc"],
  "elasticface_cos": lambda x, w, y, key: losses.elasticface_loss(
    x, w, y, key, scale=8.0, margin=0.35, sigma=0.1, kind="cos"
  ),
}


@pytest.mark.parametrize("name", sorted(FACE_CASES))
def test_face_margin_gradients_match_the_equations(name):
  """Values, and d/dx and d/dW against central differences of the NumPy
  equations, with AdaFace's z and CurricularFace's t held fixed (no gradient
  through them)."""
  x, w, y = make_inputs(19)
  key = jax.random.key(5)
  xi = np.asarray(jax.random.normal(key, (B,), jnp.float64))
  z = np_adaface_z(x, ADAFACE["h"], ADAFACE["norm_mean"], ADAFACE["norm_std"])
  reference = {
    "adaface": lambda x, w: np_adaface(x, w, y, **ADAFACE, z=z),
    "adaface_clip": lambda x, w: np_adaface(x, w, y, **ADAFACE, clip=True, z=z),
    "magface": lambda x, w: np_magface(x, w, y, **MAGFACE),
    "curricularface": lambda x, w: np_curricular(x, w, y, 8.0, 0.5, 0.3),
    "elasticface_arc": lambda x, w: np_elastic(x, w, y, xi, 8.0, 0.5, 0.1, "arc"),
    "elasticface_cos": lambda x, w: np_elastic(x, w, y, xi, 8.0, 0.35, 0.1, "cos"),
  }[name]
  value, grads = jax.value_and_grad(
    lambda x, w: FACE_CASES[name](x, w, y, key).sum(), argnums=(0, 1)
  )(x, w)
  np.testing.assert_allclose(value, reference(x, w).sum(), rtol=1e-10, err_msg=name)
  for got, want in zip(grads, numeric_grads(reference, x, w)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("mode", OVERFLOW_MODES)
def test_face_margins_reduce_to_arcface_and_cosface(mode):
  x, w, y = inputs_past_pi()
  key = jax.random.key(0)
  arc = dict(scale=8.0, theta_overflow=mode)

  def arcface(margin):
    return losses.arcface_loss(x, w, y, margin=margin, **arc)

  def cosface(margin):
    return losses.cosface_loss(x, w, y, scale=8.0, margin=margin)

  same = {  # z = -1 (every norm far below the mean): ArcFace, whatever the rule past pi
    "adaface z=-1": (
      losses.adaface_loss(x, w, y, margin=0.4, h=1.0, norm_mean=1e3, norm_std=1.0, **arc),
      arcface(0.4),
    ),
    "magface l_m = u_m, lambda_g = 0": (
      losses.magface_loss(x, w, y, lower_margin=0.5, upper_margin=0.5, lambda_g=0.0, **arc),
      arcface(0.5),
    ),
    "elasticface arc sigma=0": (
      losses.elasticface_loss(x, w, y, key, margin=0.5, sigma=0.0, **arc),
      arcface(0.5),
    ),
    "elasticface cos sigma=0": (
      losses.elasticface_loss(x, w, y, key, scale=8.0, margin=0.35, sigma=0.0, kind="cos"),
      cosface(0.35),
    ),
  }
  if mode != "easy":  # (the easy margin drops the additive margin past 90 degrees too)
    same["adaface h=0"] = (
      losses.adaface_loss(x, w, y, margin=0.4, h=0.0, norm_mean=20.0, norm_std=100.0, **arc),
      cosface(0.4),
    )
  for name, (got, want) in same.items():
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=name)


def test_curricularface_without_hard_negatives_is_arcface():
  x, w, y = make_inputs(23)
  x = w[:, y].T + 0.05 * x  # near their class: every other cosine below cos(theta_y + m)
  for t in (0.0, 0.7):
    np.testing.assert_allclose(
      losses.curricularface_loss(x, w, y, scale=8.0, margin=0.5, t=t),
      losses.arcface_loss(x, w, y, scale=8.0, margin=0.5),
      rtol=1e-12,
    )


def test_adaface_clip_keeps_the_angle_in_0_pi():
  """``"clip"``: a high norm's negative angular margin stops at theta = 0 (target
  1 - g_add, no gradient); a low norm's positive one at pi (-1 - g_add)."""
  x, w, y = make_inputs(24)
  w = w.copy()
  w[:, y[0]] = x[0]  # theta_y = 0 for example 0, whose z will be 1
  w[:, y[1]] = -x[1]  # theta_y = pi for example 1, whose z will be -1
  x = x * np.where(np.arange(B) == 0, 10.0, 1.0)[:, None]
  x[1] *= 0.01
  kwargs = dict(scale=8.0, margin=0.4, h=1.0, norm_mean=2.0, norm_std=0.5, theta_overflow="clip")
  loss = losses.adaface_loss(x, w, y, **kwargs)
  cos = np_cos_matrix(x, w)
  targets = {0: 8.0 * (1.0 - 0.8), 1: 8.0 * (-1.0 - 0.0)}
  for i, target in targets.items():
    want = np_ce_replaced(8.0 * cos[i : i + 1], y[i : i + 1], np.array([target]))
    np.testing.assert_allclose(loss[i], want[0], rtol=1e-9)


def test_adaface_norm_stats_update():
  x, _, _ = make_inputs(21)
  norms = np.linalg.norm(x, axis=1)
  keep = np.arange(B) % 3 != 0
  for where, kept in ((None, norms), (keep, norms[keep])):
    mean, std = losses.adaface_norm_stats(x, 20.0, 100.0, where=where)
    np.testing.assert_allclose(mean, 0.99 * 20.0 + 0.01 * kept.mean(), rtol=1e-12)
    np.testing.assert_allclose(std, 0.99 * 100.0 + 0.01 * kept.std(ddof=1), rtol=1e-12)
  none = np.zeros(B, bool)
  assert losses.adaface_norm_stats(x, 20.0, 100.0, where=none) == (20.0, 100.0)
  grad = jax.grad(lambda x: sum(losses.adaface_norm_stats(x, 20.0, 100.0, momentum=0.5)))(x)
  np.testing.assert_array_equal(grad, 0.0)  # state, not a path for gradients


def test_curricularface_t_update():
  x, w, y = make_inputs(22)
  cos_y = np_cos_matrix(x, w)[np.arange(B), y]
  keep = np.arange(B) % 3 != 0
  y_bad = np.where(keep, y, -1)  # masked examples may hold any label
  np.testing.assert_allclose(
    losses.curricularface_t(x, w, y, 0.2, momentum=0.1), 0.9 * 0.2 + 0.1 * cos_y.mean()
  )
  np.testing.assert_allclose(
    losses.curricularface_t(x, w, y_bad, 0.2, where=keep), 0.99 * 0.2 + 0.01 * cos_y[keep].mean()
  )
  assert losses.curricularface_t(x, w, y, 0.2, where=np.zeros(B, bool)) == 0.2
  # Out-of-range labels without `where` are skipped as if masked: t stays finite.
  np.testing.assert_allclose(
    jax.jit(losses.curricularface_t)(x, w, y_bad, 0.2), 0.99 * 0.2 + 0.01 * cos_y[keep].mean()
  )
  grads = jax.grad(lambda x, w: losses.curricularface_t(x, w, y, 0.2), argnums=(0, 1))(x, w)
  assert all(np.all(g == 0) for g in grads)


def test_face_state_through_by_name():
  """`BoundLoss` starts the state at the table's values, updates it and
  feeds it to the loss; stateless losses carry none."""
  x, w, y = make_inputs(25)
  adaface = losses.by_name("adaface", scale=8.0)
  assert adaface.initial_state == {"norm_mean": 20.0, "norm_std": 100.0}
  state = adaface.update_state(x, w, y, adaface.initial_state)
  mean, std = losses.adaface_norm_stats(x, 20.0, 100.0)
  assert state == {"norm_mean": mean, "norm_std": std}
  np.testing.assert_allclose(
    adaface(x, w, y, state=state),
    losses.adaface_loss(x, w, y, scale=8.0, margin=0.4, norm_mean=mean, norm_std=std),
  )
  curricular = losses.by_name("curricularface")
  t = curricular.update_state(x, w, y, curricular.initial_state)["t"]
  assert t == losses.curricularface_t(x, w, y, 0.0)
  cosface = losses.by_name("cosface")
  assert cosface.initial_state == {} and cosface.update_state(x, w, y, {}) == {}


# One out-of-range value per hyperparameter-checking row of the table.
OUT_OF_RANGE = {
  "m_softmax": {"margin": -0.5},
  "uniformity": {"lam": -1.0},
  "hinge": {"margin": -1.0},
  "lsr": {"smoothing": 1.5},
  "l_softmax": {"lam": -1.0},
  "a_softmax": {"lam": -1.0},
  "noisy_softmax": {"alpha": -1.0},
  "e_softmax": {"diversity": -1.0},
  "em_softmax": {"margin": -1.0},
  "normface": {"scale": -16.0},
  "cosface": {"margin": 2.5},
  "arcface": {"margin": 28.6},  # degrees passed as radians
  "combined_margin": {"m2": 3.5},
  "subcenter_arcface": {"margin": 4.0},
  "adaface": {"norm_std": -1.0},
  "magface": {"upper_norm": 5.0},  # below lower_norm 10
  "curricularface": {"margin": 3.2},
  "elasticface": {"sigma": -0.1},
}


@pytest.mark.parametrize("name", sorted(OUT_OF_RANGE))
def test_traced_out_of_range_hyperparameter_is_nan_in_every_engine(name):
  spec = losses.TABLE[name]
  ((key_name, bad),) = OUT_OF_RANGE[name].items()
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
  shape = (2, 5, 12) if spec.inputs == "stacked" else (5, 12)
  w = jnp.asarray(rng.normal(size=shape), jnp.float32)
  y = jnp.asarray(rng.integers(0, 12, size=6), jnp.int32)
  good = spec.typical[key_name] if key_name in spec.typical else {"upper_norm": 110.0}[key_name]
  with pytest.raises(ValueError, match=key_name):  # a known value: a clear error
    losses.by_name(name, **{key_name: bad})(x, w, y, key=jax.random.key(0))
  for chunk_size in (None, 5):

    def loss(value, chunk_size=chunk_size):
      bound = losses.by_name(name, **{key_name: value})
      bound = bound if chunk_size is None else bound.streamed(chunk_size=chunk_size)
      return bound(x, w, y, key=jax.random.key(0))

    eager = loss(good)
    np.testing.assert_allclose(jax.jit(loss)(good), eager, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(eager)) and np.all(np.isnan(jax.jit(loss)(bad))), chunk_size


def test_every_checking_row_has_an_out_of_range_case():
  checking = {name for name, spec in losses.TABLE.items() if spec.checks is not None}
  assert checking == set(OUT_OF_RANGE)


def test_state_updates_skip_out_of_range_labels():
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(6, 5)) * 3.0, jnp.float32)
  w = jnp.asarray(rng.normal(size=(5, 12)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 12, size=6), jnp.int32)
  bad = y.at[1].set(-1).at[4].set(12)
  kept = jnp.array([True, False, True, True, False, True])
  for name in ("adaface", "curricularface"):
    bound = losses.by_name(name)
    got = bound.update_state(x, w, bad, bound.initial_state)
    want = bound.update_state(x, w, y, bound.initial_state, where=kept)
    for k in got:
      assert np.isfinite(got[k]), (name, k)
      np.testing.assert_allclose(got[k], want[k], rtol=1e-6)
