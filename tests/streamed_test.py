"""Tests of margin_jax.losses.chunked, the streamed head: values and gradients
equal to the materialised losses (themselves checked against the papers'
equations in losses_test.py), masks, half precision, traced hyperparameters,
errors, and the memory of value_and_grad at a million classes (compile only).
The class-sharded cases are in parallel_mesh_cases.py."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from margin_jax import losses

B, D = 6, 5

# (loss, keywords, takes logits): every loss chunked streams, with its variants.
STREAMED = [
  (losses.softmax_loss, {}, True),
  (losses.soft_margin_softmax_loss, {"margin": 0.5}, True),
  (losses.multiclass_hinge_loss, {"margin": 1.0}, True),
  (losses.label_smoothing_loss, {"smoothing": 0.1}, True),
  *[
    (losses.uniformity_regularized_softmax_loss, {"lam": 0.3, "divergence": d}, True)
    for d in ("symmetric", "u_q")
  ],
  (losses.large_margin_softmax_loss, {"margin": 1, "lam": 0.0}, False),
  (losses.large_margin_softmax_loss, {"margin": 2, "lam": 0.5}, False),
  (losses.large_margin_softmax_loss, {"margin": 4, "lam": 0.0}, False),
  (losses.a_softmax_loss, {"margin": 4, "lam": 0.0}, False),
  *[(losses.noisy_softmax_loss, {"alpha": 0.5, "noise": n}, False) for n in ("annealed", "normal")],
  (losses.virtual_softmax_loss, {}, False),
  (losses.normface_loss, {"scale": 16.0}, False),
  (losses.cosface_loss, {"scale": 16.0, "margin": 0.35}, False),
  *[
    (losses.arcface_loss, {"scale": 16.0, "margin": 0.5, "theta_overflow": t}, False)
    for t in ("plain", "insightface", "easy")
  ],
  (losses.combined_margin_loss, {"scale": 16.0, "m1": 1.0, "m2": 0.3, "m3": 0.2}, False),
  (losses.combined_margin_loss, {"scale": 16.0, "m1": 1.5, "m2": 0.1, "m3": 0.0}, False),
  (losses.subcenter_arcface_loss, {"scale": 16.0, "margin": 0.5}, False),
  # The norm-adaptive margins at norms around their statistics (x_0 is 10x).
  (
    losses.adaface_loss,
    {"scale": 16.0, "margin": 0.4, "h": 0.333, "norm_mean": 2.5, "norm_std": 1.0},
    False,
  ),
  (
    losses.magface_loss,
    {
      "scale": 16.0,
      "lower_margin": 0.45,
      "upper_margin": 0.8,
      "lower_norm": 1.0,
      "upper_norm": 4.0,
      "lambda_g": 3.0,
    },
    False,
  ),
  *[
    (losses.curricularface_loss, {"scale": 16.0, "margin": 0.5, "t": t, "theta_overflow": o}, False)
    for t, o in ((0.0, "plain"), (0.6, "insightface"))
  ],
  *[
    (losses.elasticface_loss, {"scale": 16.0, "margin": m, "sigma": 0.05, "kind": k}, False)
    for m, k in ((0.5, "arc"), (0.35, "cos"))
  ],
  *[
    (losses.ensemble_soft_margin_softmax_loss, {"margin": 0.5, "diversity": d}, False)
    for d in (0.1, 0.0)
  ],
]
STACKED = (losses.subcenter_arcface_loss, losses.ensemble_soft_margin_softmax_loss)
KEYED = (losses.noisy_softmax_loss, losses.elasticface_loss)


def case_id(case):
  fn, kwargs, _ = case
  return "-".join([fn.__name__, *(f"{k}={v}" for k, v in kwargs.items())])


def make_inputs(fn, num_classes, seed=0, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(B, D))
  x[0] *= 10.0  # a saturated example
  shape = (3, D, num_classes) if fn in STACKED else (D, num_classes)
  w = rng.normal(size=shape)
  bias = rng.normal(size=num_classes)
  y = rng.integers(0, num_classes, size=B).astype(np.int32)
  y[:2] = (0, num_classes - 1)  # the first and the last class
  return jnp.asarray(x, dtype), jnp.asarray(w, dtype), jnp.asarray(y), jnp.asarray(bias, dtype)


def materialised_and_streamed(fn, kwargs, takes_logits, chunk_size):
  """Both as ``(x, W, bias, y, where) -> [B]`` (feature losses without a bias
  ignore it; Noisy Softmax takes it and a fixed key)."""
  streamed = losses.chunked(fn, chunk_size=chunk_size)
  extra = (jax.random.key(7),) if fn in KEYED else ()
  biased = takes_logits or fn is losses.noisy_softmax_loss

  def materialised_fn(x, w, bias, y, where=None):
    if takes_logits:  # masked rows zeroed before the matmul, as by_name does
      x = x if where is None else jnp.where(where[:, None], x, 0.0)
      return fn(x @ w + bias, y, **kwargs, where=where)
    return fn(x, w, y, *extra, **kwargs, **({"bias": bias} if biased else {}), where=where)

  def streamed_fn(x, w, bias, y, where=None):
    return streamed(x, w, y, *extra, **kwargs, **({"bias": bias} if biased else {}), where=where)

  return materialised_fn, streamed_fn


def value_and_grads(fn, x, w, bias, y, where=None):
  def total(x, w, bias):
    per_example = fn(x, w, bias, y, where)
    return per_example.sum(), per_example

  (_, per_example), grads = jax.jit(jax.value_and_grad(total, argnums=(0, 1, 2), has_aux=True))(
    x, w, bias
  )
  return per_example, grads


def assert_close(got, want, rtol=1e-5):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("case", STREAMED, ids=case_id)
def test_streamed_equals_materialised(case):
  # 37 classes: four blocks of 8 and a block of 5.
  fn, kwargs, takes_logits = case
  x, w, y, bias = make_inputs(fn, 37)
  want_fn, got_fn = materialised_and_streamed(fn, kwargs, takes_logits, chunk_size=8)
  want, want_grads = value_and_grads(want_fn, x, w, bias, y)
  got, got_grads = value_and_grads(got_fn, x, w, bias, y)
  assert_close(got, want)
  for g, h in zip(got_grads, want_grads):
    assert_close(g, h, rtol=2e-5)


@pytest.mark.parametrize("num_classes, chunk_size", [(5, 8), (16, 8), (16, 1)])
def test_any_number_of_blocks(num_classes, chunk_size):
  x, w, y, bias = make_inputs(losses.cosface_loss, num_classes, seed=1)
  want_fn, got_fn = materialised_and_streamed(
    losses.cosface_loss, {"scale": 16.0, "margin": 0.35}, False, chunk_size
  )
  want, want_grads = value_and_grads(want_fn, x, w, bias, y)
  got, got_grads = value_and_grads(got_fn, x, w, bias, y)
  assert_close(got, want)
  for g, h in zip(got_grads, want_grads):
    assert_close(g, h, rtol=2e-5)


MASKED = (
  "softmax_loss",
  "large_margin_softmax_loss-margin=2-lam=0.5",
  "noisy_softmax_loss-alpha=0.5-noise=annealed",
)


@pytest.mark.parametrize(
  "case", [c for c in STREAMED if case_id(c).startswith(MASKED)], ids=case_id
)
def test_where_and_out_of_range_labels_as_the_materialised_loss(case):
  fn, kwargs, takes_logits = case
  x, w, y, bias = make_inputs(fn, 20, seed=2)
  x = x.at[3].set(jnp.nan)  # a masked-out row holding NaN
  where = jnp.array([True, True, True, False, True, True])
  want_fn, got_fn = materialised_and_streamed(fn, kwargs, takes_logits, chunk_size=6)
  want, want_grads = value_and_grads(want_fn, x, w, bias, y, where)
  got, got_grads = value_and_grads(got_fn, x, w, bias, y, where)
  assert got[3] == 0 and np.all(np.isfinite(got))
  assert_close(got, want)
  for g, h in zip(got_grads, want_grads):
    assert np.all(np.isfinite(g))
    assert_close(g, h, rtol=2e-5)
  bad = y.at[1].set(20).at[2].set(-1)  # out of range: NaN, as the materialised loss
  got = got_fn(jnp.nan_to_num(x), w, bias, bad)
  want = want_fn(jnp.nan_to_num(x), w, bias, bad)
  np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
  assert np.isnan(got[1]) and np.isnan(got[2]) and not np.isnan(got[0])


def test_half_precision_and_traced_hyperparameters():
  x, w, y, _ = make_inputs(losses.arcface_loss, 30, seed=3, dtype=jnp.bfloat16)
  streamed = losses.chunked(losses.arcface_loss, chunk_size=7)
  got = streamed(x, w, y, scale=16.0, margin=0.5)
  want = losses.arcface_loss(x, w, y, scale=16.0, margin=0.5)
  assert got.dtype == jnp.bfloat16
  assert_close(got, want, rtol=1e-2)
  grad = jax.grad(lambda w: streamed(x, w, y, scale=16.0, margin=0.5).astype(jnp.float32).sum())(w)
  assert grad.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(grad, np.float32)))

  @jax.jit
  def traced(scale, margin):
    return streamed(x.astype(jnp.float32), w.astype(jnp.float32), y, scale=scale, margin=margin)

  want = losses.arcface_loss(
    x.astype(jnp.float32), w.astype(jnp.float32), y, scale=20.0, margin=0.3
  )
  assert_close(traced(20.0, 0.3), want)


def test_float64_stays_float64_and_exact():
  with jax.enable_x64(True):
    x, w, y, _ = make_inputs(losses.large_margin_softmax_loss, 23, seed=4, dtype=jnp.float64)
    streamed = losses.chunked(losses.large_margin_softmax_loss, chunk_size=5)
    got = streamed(x, w, y, margin=2, lam=0.0)
    assert got.dtype == jnp.float64
    want = losses.large_margin_softmax_loss(x, w, y, margin=2, lam=0.0)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_errors_name_the_loss_and_the_value():
  for fn in (losses.center_loss, losses.rho_hat):
    with pytest.raises(ValueError, match=f"{fn.__name__} cannot be streamed"):
      losses.chunked(fn, chunk_size=8)
  for bad in (0, 8.0, True):
    with pytest.raises(ValueError, match="chunk_size"):
      losses.chunked(losses.softmax_loss, chunk_size=bad)
  x, w, y, _ = make_inputs(losses.cosface_loss, 10)
  streamed = losses.chunked(losses.cosface_loss, chunk_size=4)
  with pytest.raises(ValueError, match="scale=0.0"):  # the materialised loss's own checks
    streamed(x, w, y, scale=0.0, margin=0.35)
  with pytest.raises(ValueError, match="expected dim 5"):
    streamed(x, w.T, y, scale=16.0, margin=0.35)
  with pytest.raises(ValueError, match="expected dim 5"):
    losses.chunked(losses.softmax_loss, chunk_size=4)(x, w.T, y)
  with pytest.raises(ValueError, match=r"bias must have shape \[num_classes\]=\[10\]"):
    losses.chunked(losses.softmax_loss, chunk_size=4)(x, w, y, bias=jnp.zeros(9))
  with pytest.raises(TypeError, match="reverse mode only.*call the materialised cosface_loss"):
    jax.jvp(lambda w: streamed(x, w, y, scale=16.0, margin=0.35), (w,), (w,))
  with pytest.raises(TypeError, match="reverse mode only"):
    jax.jacfwd(lambda x: streamed(x, w, y, scale=16.0, margin=0.35))(x)
  # Reverse over reverse works: the Hessian w.r.t. one feature row (jitted:
  # eagerly its scan's operations take 20 s to dispatch).
  hessian = jax.jit(
    jax.hessian(lambda row: streamed(x.at[0].set(row), w, y, scale=16.0, margin=0.35)[0])
  )
  want = jax.hessian(
    lambda row: losses.cosface_loss(x.at[0].set(row), w, y, scale=16.0, margin=0.35)[0]
  )
  assert_close(hessian(x[0]), want(x[0]), rtol=1e-4)


def test_logit_loss_signature():
  import inspect

  signature = inspect.signature(losses.chunked(losses.multiclass_hinge_loss, chunk_size=4))
  assert list(signature.parameters) == [
    "features",
    "weights",
    "labels",
    "margin",
    "bias",
    "where",
    "shard",
  ]
  assert signature.parameters["margin"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize(
  "fn, kwargs",
  [
    (losses.softmax_loss, {}),
    (losses.large_margin_softmax_loss, {"margin": 4, "lam": 0.0}),
    (losses.cosface_loss, {"scale": 64.0, "margin": 0.35}),
    (losses.arcface_loss, {"scale": 64.0, "margin": 0.5}),
    (losses.adaface_loss, losses.TABLE["adaface"].typical),
    (losses.magface_loss, losses.TABLE["magface"].typical),
    (losses.curricularface_loss, {"scale": 64.0, "margin": 0.5, "t": 0.3}),
    (losses.elasticface_loss, losses.TABLE["elasticface"].typical),
    # V = 2 classifiers: blocks of 4096 classes hold as many logits as 8192 of
    # one; without the HSIC term (its [V, d, C] unit columns, as materialised).
    (losses.ensemble_soft_margin_softmax_loss, {"margin": 0.5, "diversity": 0.0}),
  ],
  ids=lambda v: getattr(v, "__name__", ""),
)
def test_memory_at_a_million_classes_is_a_few_blocks(fn, kwargs):
  # value_and_grad at B = 256, d = 512, C = 10^6, chunk 8192, compiled (not
  # run): its temporaries stay below 10% of one float32 [B, C] array.
  b, d, c = 256, 512, 10**6
  stacked = fn in STACKED
  streamed = losses.chunked(fn, chunk_size=4096 if stacked else 8192)
  extra = (jax.random.key(0),) if fn in KEYED else ()
  step = jax.jit(
    jax.value_and_grad(lambda x, w, y: streamed(x, w, y, *extra, **kwargs).mean(), argnums=(0, 1))
  )
  shapes = (
    jax.ShapeDtypeStruct((b, d), jnp.float32),
    jax.ShapeDtypeStruct((2, d, c) if stacked else (d, c), jnp.float32),
    jax.ShapeDtypeStruct((b,), jnp.int32),
  )
  temp = step.lower(*shapes).compile().memory_analysis().temp_size_in_bytes
  one_logits = 4 * b * c
  assert temp < 0.1 * one_logits, (fn.__name__, temp / one_logits)
  assert temp > 4 * b * 4096  # it does hold a block (the measurement is not empty)


def test_by_name_losses_stream_through_the_bound_loss():
  x, w, y, bias = make_inputs(losses.softmax_loss, 12, seed=5)
  centers = jnp.asarray(np.random.default_rng(5).normal(size=(12, D)), jnp.float32)
  for name in ("lsr", "noisy_softmax", "l_softmax", "center"):
    bound = losses.by_name(
      name, **{"l_softmax": {"lam": 0.1}, "center": {"center_weight": 0.1}}.get(name, {})
    )
    key = jax.random.key(0)
    call = dict(key=key, bias=bias if bound.spec.takes_bias else None, centers=centers)
    want = bound(x, w, y, **call)
    got = bound.streamed(chunk_size=5)(x, w, y, **call)
    assert_close(got, want)
    assert math.isfinite(float(want.sum()))


@pytest.mark.parametrize("name", ["softmax", "cosface", "subcenter_arcface"])
def test_top_k_over_class_blocks(name):
  bound = losses.by_name(name)
  rng = np.random.default_rng(6)
  shape = {"stacked": (2, D, 37)}.get(bound.spec.inputs, (D, 37))
  x, w = jnp.asarray(rng.normal(size=(B, D)), jnp.float32), jnp.asarray(rng.normal(size=shape))
  v = jnp.asarray(10.0 * rng.normal(size=D), jnp.float32)
  w = w.at[..., 3].set(v).at[..., 30].set(v)  # classes 3 and 30 tie, ahead of the others for x_0
  x = x.at[0].set(v)
  bias = jnp.asarray(0.01 * rng.normal(size=37), jnp.float32).at[30].set(0.0).at[3].set(0.0)
  logits = bound.test_logits(x, w) + bias
  want_scores, want_classes = jax.lax.top_k(logits, 3)
  for streamed in (bound.streamed(chunk_size=8), bound):
    classes, scores = streamed.top_k(x, w, k=3, bias=bias)
    np.testing.assert_array_equal(classes, want_classes)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)
    np.testing.assert_array_equal(
      streamed.predicted_class(x, w, bias=bias), losses.predicted_class(logits)
    )
  np.testing.assert_array_equal(classes[0, :2], [3, 30])  # the tie: the lower class first
  with pytest.raises(ValueError, match="k=38"):
    bound.top_k(x, w, k=38)
