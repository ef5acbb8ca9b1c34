"""`parallel.shard_classes` on 8 devices; run by tests/parallel_test.py in a
subprocess with ``--xla_force_host_platform_device_count=8``.

Every loss of the table, sharded on meshes (8, 1), (2, 4) and (1, 8), with a
class count the shard count divides and one it does not, must equal the
unsharded loss: values and gradients w.r.t. features and weights (or logits).
And as the guides place them (docs/guides/millions_of_classes.md): arrays put with ``NamedSharding`` on a
``jax.make_mesh`` mesh with its default (Explicit) axes, or Auto axes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from margin_jax import losses, parallel, sharding

assert jax.device_count() == 8, "run through tests/parallel_test.py (8 CPU devices)"

B, D = 16, 6
# (mesh shape, batch axis, num classes): padded and unpadded, batch split or replicated.
LAYOUTS = [
  ((8, 1), "data", 13),
  ((2, 4), "data", 13),
  ((2, 4), None, 16),
  ((1, 8), None, 13),
  ((1, 8), "data", 16),
]


def mesh_of(shape):
  return jax.make_mesh(shape, ("data", "model"))


def inputs(spec, num_classes, seed=0):
  """The loss's arguments in the order of its signature, the differentiated ones first."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(B, D)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(D, num_classes)), jnp.float32)
  y = jnp.asarray(rng.integers(0, num_classes, size=B), jnp.int32)
  differentiated = {
    "logits": (x @ w,),
    "features": (x, w),
    "stacked": (x, jnp.stack([w, 0.5 * w + 0.1])),
    "centers": (x, w.T),
  }[spec.inputs]
  extra = (jax.random.key(seed),) if spec.needs_key else ()
  return differentiated, (y, *extra)


def value_and_grads(fn, differentiated, rest, kwargs):
  def total(*args):
    per_example = fn(*args, *rest, **kwargs)
    return per_example.sum(), per_example

  grad_fn = jax.value_and_grad(total, argnums=tuple(range(len(differentiated))), has_aux=True)
  (_, per_example), grads = jax.jit(grad_fn)(*differentiated)
  return per_example, grads


@pytest.mark.parametrize(
  "layout", LAYOUTS, ids=lambda layout: f"{layout[0]}-{layout[1]}-C{layout[2]}"
)
@pytest.mark.parametrize("name", sorted(losses.TABLE))
def test_sharded_loss_equals_unsharded(name, layout):
  shape, batch_axis, num_classes = layout
  spec = losses.TABLE[name]
  differentiated, rest = inputs(spec, num_classes)
  sharded = parallel.shard_classes(spec.fn, mesh_of(shape), batch_axis=batch_axis)
  want, want_grads = value_and_grads(spec.fn, differentiated, rest, spec.typical)
  got, got_grads = value_and_grads(sharded, differentiated, rest, spec.typical)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  for g, w in zip(got_grads, want_grads):
    # Entries near 0 are sums of terms of the array's scale: absolute rounding.
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6 * np.abs(w).max())


def test_face_states_are_global_over_the_batch_shards():
  """AdaFace's norm statistics and CurricularFace's t with the batch split over
  "data" (and, for t, the classes over "model", as in the mesh trainer) and
  ``axis_name="data"`` equal the unsharded helpers on the whole batch."""
  (x, w), (y,) = inputs(losses.TABLE["curricularface"], 16)
  x = x * jnp.linspace(0.5, 3.0, B)[:, None]  # norms of several sizes
  where = jnp.arange(B) % 5 != 0
  mesh = sharding.make_mesh((2, 4))
  stats = jax.shard_map(
    lambda x, where: losses.adaface_norm_stats(x, 20.0, 100.0, where=where, axis_name="data"),
    mesh=mesh,
    in_specs=(P("data"), P("data")),
    out_specs=P(),
  )(x, where)
  want = losses.adaface_norm_stats(x, 20.0, 100.0, where=where)
  np.testing.assert_allclose(stats, want, rtol=1e-6)

  def sharded_t(x, w, y, where):
    shard = sharding.ClassShard("model", None, 16, "data")
    return losses.curricularface_t(x, w, y, 0.3, where=where, axis_name="data", shard=shard)

  batch, classes = P("data"), P(None, "model")
  t = jax.shard_map(sharded_t, mesh=mesh, in_specs=(batch, classes, batch, batch), out_specs=P())(
    x, w, y, where
  )
  np.testing.assert_allclose(t, losses.curricularface_t(x, w, y, 0.3, where=where), rtol=1e-6)


def test_hsic_diversity_sharded():
  w = jnp.asarray(np.random.default_rng(1).normal(size=(3, D, 13)), jnp.float32)
  sharded = parallel.shard_classes(losses.hsic_diversity, mesh_of((2, 4)))
  np.testing.assert_allclose(sharded(w), losses.hsic_diversity(w), rtol=1e-5)
  np.testing.assert_allclose(
    jax.grad(sharded)(w), jax.grad(losses.hsic_diversity)(w), rtol=1e-4, atol=1e-6
  )


@pytest.mark.parametrize("name", ["cosface", "em_softmax", "uniformity"])
def test_forward_mode_sharded(name):
  """jax.jvp of the jitted sharded loss equals the unsharded loss's: JAX traces
  the custom JVP rules only then, after the class shard's block has closed."""
  spec = losses.TABLE[name]
  differentiated, rest = inputs(spec, 13)
  rng = np.random.default_rng(3)
  tangents = tuple(jnp.asarray(rng.normal(size=a.shape), jnp.float32) for a in differentiated)
  sharded = parallel.shard_classes(spec.fn, mesh_of((2, 4)), batch_axis="data")

  def jvp(fn):
    return jax.jvp(jax.jit(lambda *a: fn(*a, *rest, **spec.typical)), differentiated, tangents)

  got, want = jvp(sharded), jvp(spec.fn)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-5 * np.abs(want[1]).max())


def test_padding_never_wins_and_gets_no_gradient():
  """C = 13 on 4 shards pads 3 classes with zero columns; even when every real
  logit is far below 0 (a padded logit would win), the loss is unchanged."""
  spec = losses.TABLE["softmax"]
  (logits,), (labels,) = inputs(spec, 13)
  logits = logits - 100.0
  sharded = parallel.shard_classes(losses.softmax_loss, mesh_of((2, 4)), batch_axis="data")
  np.testing.assert_allclose(
    sharded(logits, labels), losses.softmax_loss(logits, labels), rtol=1e-6
  )
  grad = jax.grad(lambda f: sharded(f, labels).sum())(logits)
  assert grad.shape == logits.shape
  np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-6)  # softmax rows sum to 1


def test_where_mask_bias_and_bad_labels():
  (x, w), (y, key) = inputs(losses.TABLE["noisy_softmax"], 13)
  y = y.at[3].set(13).at[5].set(-1)
  where = jnp.arange(B) % 3 != 0
  bias = jnp.linspace(-1.0, 1.0, 13)
  kwargs = dict(alpha=0.3, bias=bias, where=where)
  sharded = parallel.shard_classes(losses.noisy_softmax_loss, mesh_of((2, 4)), batch_axis="data")
  want = losses.noisy_softmax_loss(x, w, y, key, **kwargs)
  got = sharded(x, w, y, key, **kwargs)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # NaN where want is NaN
  assert np.isnan(got[5]) and got[3] == 0.0  # example 3 is masked out (3 % 3 == 0)


def test_no_class_sized_array_is_gathered():
  """The compiled sharded step moves only [B]-sized partials between devices."""
  spec = losses.TABLE["arcface"]
  (x, w), (y,) = inputs(spec, 4096)
  sharded = parallel.shard_classes(spec.fn, mesh_of((2, 4)), batch_axis="data")
  step = jax.jit(jax.grad(lambda x, w: sharded(x, w, y, **spec.typical).sum(), argnums=(0, 1)))
  hlo = step.lower(x, w).compile().as_text()
  assert "all-gather" not in hlo and "all-to-all" not in hlo
  assert "all-reduce" in hlo


def test_sampling_ignores_masked_labels():
  """A masked example's class is not kept for it: giving it another label
  (one the batch already has) samples the same classes, the same losses."""
  spec = losses.TABLE["cosface"]
  (x, w), (y,) = inputs(spec, 256)
  y = y.at[0].set(255).at[1:].set(y[1:] % 200)  # example 0 alone in class 255
  where = jnp.arange(B) != 0
  sampled = parallel.shard_classes(spec.fn, mesh_of((2, 4)), batch_axis="data", sample_rate=0.05)
  key = jax.random.key(4)
  a = sampled(x, w, y, where=where, sample_key=key, **spec.typical)
  b = sampled(x, w, y.at[0].set(y[1]), where=where, sample_key=key, **spec.typical)
  np.testing.assert_array_equal(a, b)


def test_sample_rate_one_is_the_full_loss_exactly():
  spec = losses.TABLE["cosface"]
  (x, w), (y,) = inputs(spec, 13)
  mesh = mesh_of((2, 4))
  full = parallel.shard_classes(spec.fn, mesh, batch_axis="data")
  sampled = parallel.shard_classes(spec.fn, mesh, batch_axis="data", sample_rate=1.0)
  key = jax.random.key(3)
  np.testing.assert_array_equal(
    sampled(x, w, y, sample_key=key, **spec.typical), full(x, w, y, **spec.typical)
  )


def test_sampling_keeps_targets_and_only_sampled_columns_learn():
  num_classes = 400
  (x, w), _ = inputs(losses.TABLE["cosface"], num_classes)
  y = jnp.asarray(np.random.default_rng(2).integers(0, num_classes, size=B), jnp.int32)
  mesh = mesh_of((2, 4))
  sampled = parallel.shard_classes(losses.cosface_loss, mesh, batch_axis="data", sample_rate=0.1)
  kwargs = dict(scale=30.0, margin=0.35)
  key = jax.random.key(0)
  loss = sampled(x, w, y, sample_key=key, **kwargs)
  np.testing.assert_array_equal(loss, sampled(x, w, y, sample_key=key, **kwargs))  # deterministic
  full = losses.cosface_loss(x, w, y, **kwargs)
  assert np.all(np.isfinite(loss)) and np.all(loss <= full + 1e-5)  # fewer negatives
  grad = jax.grad(lambda w: sampled(x, w, y, sample_key=key, **kwargs).sum())(w)
  learning = np.flatnonzero(np.abs(np.asarray(grad)).sum(axis=0) > 0)
  # Per shard of 100 classes: max(ceil(0.1 * 100), global batch 16) = 16 kept.
  assert set(np.asarray(y)) <= set(learning) and len(learning) <= 4 * 16
  other_key = sampled(x, w, y, sample_key=jax.random.key(1), **kwargs)
  assert not np.allclose(other_key, loss)


def test_sample_classes_unsharded():
  labels = jnp.array([7, 2, 7, 30])  # 30 is out of range: not sampled, maps to -1
  classes, remapped = parallel.sample_classes(
    jax.random.key(0), labels, num_classes=10, num_sampled=4
  )
  assert classes.shape == (4,) and np.all(np.diff(classes) > 0)
  np.testing.assert_array_equal(remapped[3], -1)
  np.testing.assert_array_equal(classes[remapped[:3]], labels[:3])
  everything, same = parallel.sample_classes(
    jax.random.key(0), labels, num_classes=10, num_sampled=10
  )
  np.testing.assert_array_equal(everything, np.arange(10))
  np.testing.assert_array_equal(same[:3], labels[:3])


def test_clear_errors():
  mesh = mesh_of((2, 4))
  with pytest.raises(ValueError, match="no class axis"):
    parallel.shard_classes(losses.lambda_schedule, mesh)
  # A function of its own that takes no class shard: named, with what to do.
  with pytest.raises(ValueError, match="my_loss takes no shard= argument"):

    def my_loss(logits, labels):
      return losses.softmax_loss(logits, labels)

    parallel.shard_classes(my_loss, mesh)
  with pytest.raises(ValueError, match="'classes' is not in the mesh"):
    parallel.shard_classes(losses.softmax_loss, mesh, class_axis="classes")
  with pytest.raises(ValueError, match="sample_rate"):
    parallel.shard_classes(losses.softmax_loss, mesh, sample_rate=0.0)
  sharded = parallel.shard_classes(losses.cosface_loss, mesh)
  x, w = jnp.ones((4, 3)), jnp.ones((5, 8))
  with pytest.raises(ValueError, match="expected dim 3"):
    sharded(x, w, jnp.zeros(4, jnp.int32), scale=30.0, margin=0.35)
  with pytest.raises(ValueError, match="sample_key"):
    sharded(
      x,
      jnp.ones((3, 8)),
      jnp.zeros(4, jnp.int32),
      sample_key=jax.random.key(0),
      scale=1.0,
      margin=0.1,
    )
  # A batch the data axis does not divide: named, not JAX's IndivisibleError.
  split = parallel.shard_classes(losses.cosface_loss, mesh, class_axis="model", batch_axis="data")
  with pytest.raises(
    ValueError, match="a batch of 7 examples does not split over the mesh axis 'data' of size 2"
  ):
    split(jnp.ones((7, 3)), jnp.ones((3, 8)), jnp.zeros(7, jnp.int32), scale=30.0, margin=0.35)


# Where the guide's placement puts each argument: the batch over "data", the
# classes over "model" (W [d, C], stacked [V, d, C], logits [B, C], centres [C, d]).
PLACEMENT = {
  "logits": (P("data", "model"),),
  "features": (P("data"), P(None, "model")),
  "stacked": (P("data"), P(None, None, "model")),
  "centers": (P("data"), P("model", None)),
}


@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto], ids=lambda t: t.name)
@pytest.mark.parametrize("name", sorted(losses.TABLE))
def test_arrays_placed_as_the_readme_places_them(name, axis_type):
  spec = losses.TABLE[name]
  mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(axis_type,) * 2)
  differentiated, (y, *extra) = inputs(spec, 16)
  placed = [
    jax.device_put(a, NamedSharding(mesh, p))
    for a, p in zip(differentiated, PLACEMENT[spec.inputs])
  ]
  rest = (jax.device_put(y, NamedSharding(mesh, P("data"))), *extra)
  want, want_grads = value_and_grads(spec.fn, differentiated, (y, *extra), spec.typical)
  sharded = parallel.shard_classes(spec.fn, mesh, class_axis="model", batch_axis="data")
  for fn in (sharded, spec.fn):  # the class-sharded and the plain loss
    got, got_grads = value_and_grads(fn, placed, rest, spec.typical)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for g, w, a in zip(got_grads, want_grads, placed):
      np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6 * np.abs(w).max())
      if fn is sharded or axis_type == AxisType.Explicit:  # (Auto: XLA's choice for the plain loss)
        assert g.sharding.is_equivalent_to(a.sharding, g.ndim), (name, g.sharding, a.sharding)


# The streamed head inside shard_classes: every table row (the center row is
# its softmax plus a [B, d] gather), on the guide's (Explicit) mesh and on Auto axes.
STREAMED_NAMES = [name for name, spec in sorted(losses.TABLE.items()) if spec.inputs != "centers"]
STREAMED_CASES = [(n, t) for n in STREAMED_NAMES for t in (AxisType.Explicit, AxisType.Auto)]


@pytest.mark.parametrize(
  "name, axis_type", STREAMED_CASES, ids=[f"{n}-{t.name}" for n, t in STREAMED_CASES]
)
def test_streamed_head_inside_shard_classes(name, axis_type):
  # W placed over "model" (40 classes: 10 local ones in blocks of 3, the last
  # block 1), the batch over "data"; then 37 classes (padded).
  spec = losses.TABLE[name]
  assert len(STREAMED_NAMES) == 20
  mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(axis_type,) * 2)
  sharded = parallel.shard_classes(
    losses.chunked(spec.fn, chunk_size=3), mesh, class_axis="model", batch_axis="data"
  )
  # Auto axes: the placed case only (the padded one does not depend on the axis type).
  for num_classes in (40, 37) if axis_type == AxisType.Explicit else (40,):
    if spec.inputs == "logits":
      differentiated, rest = inputs(losses.TABLE["cosface"], num_classes)
      want_fn = lambda x, w, *rest: spec.fn(x @ w, *rest, **spec.typical)  # noqa: E731
    else:
      differentiated, rest = inputs(spec, num_classes)
      want_fn = lambda *args: spec.fn(*args, **spec.typical)  # noqa: E731
    want, want_grads = value_and_grads(want_fn, differentiated, rest, {})
    layout = "stacked" if spec.inputs == "stacked" else "features"
    if num_classes == 40:
      differentiated = [
        jax.device_put(a, NamedSharding(mesh, p)) for a, p in zip(differentiated, PLACEMENT[layout])
      ]
      rest = (jax.device_put(rest[0], NamedSharding(mesh, P("data"))), *rest[1:])
    got, got_grads = value_and_grads(sharded, differentiated, rest, spec.typical)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for g, h in zip(got_grads, want_grads):
      np.testing.assert_allclose(g, h, rtol=1e-4, atol=1e-6 * np.abs(h).max())
    if num_classes == 40:
      w = differentiated[1]
      assert got_grads[1].sharding.is_equivalent_to(w.sharding, w.ndim), got_grads[1].sharding


# The public helpers that read W, features or embeddings, on arrays placed as
# the guides place them, eagerly and under jit; every public name of
# margin_jax.losses is a loss of the table, one of these, or takes no arrays.
def _helper_calls(x, w, stacked, y):
  bound = losses.by_name("curricularface")
  return {
    "target_cosine": lambda: losses.target_cosine(x, w, y),
    "curricularface_t": lambda: losses.curricularface_t(x, w, y, 0.3),
    "adaface_norm_stats": lambda: losses.adaface_norm_stats(x, 20.0, 100.0),
    "adacos_dynamic_scale": lambda: losses.adacos_dynamic_scale(x, w, y, scale=10.0),
    "dominant_subcenters": lambda: losses.dominant_subcenters(x, stacked, y),
    "far_from_dominant_subcenter": lambda: losses.far_from_dominant_subcenter(
      x, stacked, y, jnp.zeros(w.shape[1], jnp.int32)
    ),
    "inference_logits": lambda: losses.inference_logits(x, w, cosine=True),
    "subcenter_cosines": lambda: losses.subcenter_cosines(x, stacked),
    "ensemble_weights": lambda: losses.ensemble_weights(stacked),
    "hsic_diversity": lambda: losses.hsic_diversity(stacked),
    "predicted_class": lambda: losses.predicted_class(x @ w),
    "take_target": lambda: losses.take_target(x @ w, y),
    "rho_hat": lambda: losses.rho_hat(x @ w, y),
    "psi": lambda: losses.psi(losses.target_cosine(x, w, y), margin=2),
    "BoundLoss.update_state": lambda: bound.update_state(x, w, y, bound.initial_state),
    "BoundLoss.test_logits": lambda: bound.test_logits(x, w),
    "BoundLoss.top_k": lambda: bound.top_k(x, w, k=2),
    "BoundLoss.top_k streamed": lambda: bound.streamed(chunk_size=3).top_k(x, w, k=2),
    "BoundLoss.predicted_class streamed": lambda: bound.streamed(chunk_size=3).predicted_class(
      x, w
    ),
  }


TAKES_NO_ARRAYS = {
  "BoundLoss",
  "LossSpec",
  "PUBLISHED_LAMBDA",
  "StreamedHead",
  "TABLE",
  "adacos_fixed_scale",
  "by_name",
  "chunked",
  "declare_cosine_margin",
  "lambda_schedule",
  "register",
}


def test_every_public_name_is_covered():
  (x, w), (y,) = inputs(losses.TABLE["cosface"], 16)
  covered = {spec.fn.__name__ for spec in losses.TABLE.values()} | TAKES_NO_ARRAYS
  covered |= {name.split(".")[0] for name in _helper_calls(x, w, jnp.stack([w, w]), y)}
  assert set(losses.__all__) <= covered, set(losses.__all__) - covered


@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto], ids=lambda t: t.name)
def test_helpers_on_placed_arrays(axis_type):
  mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(axis_type,) * 2)
  (x, w), (y,) = inputs(losses.TABLE["cosface"], 16)
  stacked = jnp.stack([w, 0.5 * w + 0.1])
  want = {name: call() for name, call in _helper_calls(x, w, stacked, y).items()}
  placed = [
    jax.device_put(a, NamedSharding(mesh, p))
    for a, p in ((x, P("data")), (w, P(None, "model")), (stacked, P(None, None, "model")))
  ]
  y_placed = jax.device_put(y, NamedSharding(mesh, P("data")))
  for name, call in _helper_calls(*placed, y_placed).items():
    eager = call()
    jitted = jax.jit(lambda x, w, stacked, y, name=name: _helper_calls(x, w, stacked, y)[name]())(
      *placed, y_placed
    )
    for got in (eager, jitted):
      for g, h in zip(jax.tree.leaves(got), jax.tree.leaves(want[name])):
        np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-6, err_msg=name)
