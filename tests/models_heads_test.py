"""The Linen and NNX classifier heads: same parameters, same outputs; and the
test-time helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from margin_jax import losses
from margin_jax import models
from margin_jax.models import nnx_heads

D, C, B = 6, 5, 8


@pytest.mark.parametrize(
  "settings",
  [
    {},
    {"num_classifiers": 3},
    {"use_bias": True},
    {"center_alpha": 0.5},
    {"param_dtype": jnp.float64, "dtype": jnp.float32},
  ],
  ids=["plain", "stacked", "bias", "centers", "dtypes"],
)
def test_linen_and_nnx_heads_agree(settings):
  features = jax.random.normal(jax.random.key(1), (B, D))
  labels = jnp.arange(B) % C
  with jax.enable_x64(True):
    linen = models.ClassifierHead(num_classes=C, **settings)
    variables = linen.init(jax.random.key(0), features)
    head = nnx_heads.ClassifierHead(D, C, **settings, rngs=nnx.Rngs(0))
    # The same initialiser and shapes; then identical parameters give
    # identical outputs.
    assert head.kernel[...].shape == variables["params"]["kernel"].shape
    assert head.kernel[...].dtype == variables["params"]["kernel"].dtype
    head.kernel[...] = variables["params"]["kernel"]
    if "use_bias" in settings:
      head.bias[...] = variables["params"]["bias"] + 1.0
      variables["params"]["bias"] = variables["params"]["bias"] + 1.0
    out_linen, state = linen.apply(variables, features, labels, train=True, mutable=["batch_stats"])
    out_nnx = head(features, labels, train=True)
    assert out_linen.keys() == out_nnx.keys()
    for key in out_linen:
      assert out_linen[key].dtype == out_nnx[key].dtype
      np.testing.assert_array_equal(out_linen[key], out_nnx[key])
    if "center_alpha" in settings:  # The center update is the same too.
      np.testing.assert_array_equal(state["batch_stats"]["centers"], head.centers[...])
      assert np.any(head.centers[...] != 0)


def test_linen_head_stores_one_classifier_as_d_by_c_and_trains_without_train_flag():
  variables = models.ClassifierHead(num_classes=C).init(jax.random.key(0), jnp.ones((2, D)))
  assert variables["params"]["kernel"].shape == (D, C)
  assert float(jnp.std(variables["params"]["kernel"])) < 0.02  # Gaussian, std 0.01


def test_test_logits_follow_the_table():
  features = jax.random.normal(jax.random.key(1), (B, D))
  weights = jax.random.normal(jax.random.key(2), (D, C))
  outputs = {"features": features, "weights": weights}
  np.testing.assert_allclose(models.test_logits(outputs, "softmax"), features @ weights, rtol=1e-6)
  np.testing.assert_allclose(
    models.test_logits(outputs, "arcface"),
    losses.inference_logits(features, weights, cosine=True),
    rtol=1e-6,
  )
  stacked = {"features": features, "weights": jnp.stack([weights, -weights, weights])}
  np.testing.assert_allclose(
    models.test_logits(stacked, "em_softmax"), features @ (weights / 3), rtol=1e-5, atol=1e-6
  )
  unit = models.embeddings(features)
  np.testing.assert_allclose(jnp.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
