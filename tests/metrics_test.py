"""Tests of margin_jax.metrics against brute-force NumPy references written here:
retrieval by a loop over queries on the full N x N similarity (stable argsort,
the same lower-index-first tie rule), verification by sweeps over every
threshold; plus hand-computed cases, chunking invariance, jit, input errors
and the docstring examples."""

import doctest
import fractions
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from margin_jax import metrics


@pytest.fixture
def float64():
  with jax.enable_x64(True):
    yield


# ------------------------------------------------------ retrieval reference
def np_retrieval(embeddings, labels):
  """PML definitions, one query at a time; R = 0 queries are left out."""
  x = np.asarray(embeddings, np.float64)
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  labels = np.asarray(labels)
  p1, rp, ap = [], [], []
  for q in range(len(x)):
    sims = np.sum(x[q] * x, axis=1)  # the same reduction for every reference
    sims[q] = -np.inf
    order = np.argsort(-sims, kind="stable")  # ties: lower index first
    assert order[-1] == q
    r = int(np.sum(labels == labels[q])) - 1
    if r == 0:
      continue
    rel = labels[order[:r]] == labels[q]
    p1.append(float(labels[order[0]] == labels[q]))
    rp.append(rel.sum() / r)
    precision = np.cumsum(rel) / np.arange(1, r + 1)
    ap.append(np.sum(precision * rel) / r)
  if not p1:
    return {"precision_at_1": 0.0, "r_precision": 0.0, "mean_average_precision_at_r": 0.0}
  return {
    "precision_at_1": np.mean(p1),
    "r_precision": np.mean(rp),
    "mean_average_precision_at_r": np.mean(ap),
  }


def random_retrieval_set(seed, n=45, d=6, num_classes=6, duplicates=6, singletons=3):
  """Clustered embeddings, a few exact duplicate rows and single-example classes."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, size=n)
  centres = rng.normal(size=(num_classes, d))
  x = centres[labels] + 1.2 * rng.normal(size=(n, d))
  # exact duplicates (same or other class): ties in similarity
  src = rng.choice(n, size=duplicates, replace=False)
  dst = rng.choice(np.setdiff1d(np.arange(n), src), size=duplicates, replace=False)
  x[dst] = x[src]
  labels[dst[: duplicates // 2]] = labels[src[: duplicates // 2]]
  # classes with a single example
  labels[rng.choice(n, size=singletons, replace=False)] = 100 + np.arange(singletons)
  return x, labels


def assert_metrics_close(got, want, **tol):
  assert set(got) == set(want)
  for name in want:
    np.testing.assert_allclose(np.asarray(got[name]), want[name], err_msg=name, **tol)


# -------------------------------------------------------------- retrieval
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrieval_matches_numpy(float64, seed):
  x, labels = random_retrieval_set(seed)
  want = np_retrieval(x, labels)
  got = metrics.retrieval_metrics(x, labels, chunk_size=7)  # 7 does not divide 45
  assert_metrics_close(got, want, rtol=1e-12)
  assert 0 < want["mean_average_precision_at_r"] < 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrieval_many_exact_ties(float64, seed):
  # {0, 1}^5 embeddings: 31 distinct directions for 50 points, cosines repeat
  # exactly, so the lower-index-first rule decides many ranks.
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 2, size=(50, 5)).astype(np.float64)
  x[x.sum(1) == 0, 0] = 1.0
  labels = rng.integers(0, 4, size=50)
  labels[:2] = [10, 11]  # two single-example classes
  want = np_retrieval(x, labels)
  got = metrics.retrieval_metrics(x, labels, chunk_size=9)
  assert_metrics_close(got, want, rtol=1e-12)


def test_retrieval_float32_matches_numpy():
  x, labels = random_retrieval_set(5, n=60, duplicates=4)
  got = metrics.retrieval_metrics(x.astype(np.float32), labels, chunk_size=16)
  assert all(v.dtype == jnp.float32 for v in got.values())
  assert_metrics_close(got, np_retrieval(x, labels), rtol=1e-6)


def test_chunk_size_does_not_change_results():
  x, labels = random_retrieval_set(7, n=53)
  x = jnp.asarray(x, jnp.float32)
  results = [metrics.retrieval_metrics(x, labels, chunk_size=c) for c in (1, 4, 10, 53, 1000)]
  for other in results[1:]:
    for name in results[0]:
      assert np.asarray(other[name]) == np.asarray(results[0][name]), name


def test_individual_functions_match_dict():
  x, labels = random_retrieval_set(11, n=40)
  both = metrics.retrieval_metrics(x, labels, chunk_size=6)
  assert metrics.precision_at_1(x, labels, chunk_size=6) == both["precision_at_1"]
  assert metrics.r_precision(x, labels, chunk_size=6) == both["r_precision"]
  assert (
    metrics.mean_average_precision_at_r(x, labels, chunk_size=6)
    == both["mean_average_precision_at_r"]
  )


def test_hand_computed_case():
  # Unit vectors at angles 0, 10, 25, 90, 100 degrees; classes 0 0 1 0 1.
  angles = np.deg2rad([0.0, 10.0, 25.0, 90.0, 100.0])
  x = np.stack([np.cos(angles), np.sin(angles)], 1)
  labels = np.array([0, 0, 1, 0, 1])
  # query 0 (R=2): 1, 2, 3, 4 -> rel 1 0   P@1 1  RP 1/2  AP 1/2
  # query 1 (R=2): 0, 2, 3, 4 -> rel 1 0   P@1 1  RP 1/2  AP 1/2
  # query 2 (R=1): 1, 0, 3, 4 -> rel 0     P@1 0  RP 0    AP 0
  # query 3 (R=2): 4, 2, 1, 0 -> rel 0 0   P@1 0  RP 0    AP 0
  # query 4 (R=1): 3, 2, 1, 0 -> rel 0     P@1 0  RP 0    AP 0
  got = metrics.retrieval_metrics(x, labels)
  want = np_retrieval(x, labels)
  assert_metrics_close(got, want, rtol=1e-6)
  assert_metrics_close(
    got,
    {"precision_at_1": 2 / 5, "r_precision": 1 / 5, "mean_average_precision_at_r": 1 / 5},
    rtol=1e-6,
  )


def test_exact_duplicate_ties_use_lower_index():
  # Query 0 has two exact duplicates, 1 (other class) and 2 (its class); R = 1.
  x = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
  low_first = metrics.retrieval_metrics(x, np.array([0, 1, 0, 1]))
  high_first = metrics.retrieval_metrics(x, np.array([0, 0, 1, 1]))
  # [0,1,0,1]: q0 -> 1 (wrong); q1 (R=1) -> 0 (wrong); q2 -> 0 (right); q3 -> 0 (wrong)
  np.testing.assert_allclose(low_first["precision_at_1"], 1 / 4)
  # [0,0,1,1]: q0 -> 1 (right); q1 -> 0 (right); q2 -> 0 (wrong); q3 -> 0 (wrong)
  np.testing.assert_allclose(high_first["precision_at_1"], 2 / 4)


def test_single_example_classes_are_left_out():
  x, labels = random_retrieval_set(3, n=30, singletons=0)
  labels_lone = labels.copy()
  labels_lone[:4] = 200 + np.arange(4)  # four single-example classes
  got = metrics.retrieval_metrics(x, labels_lone)
  assert_metrics_close(got, np_retrieval(x, labels_lone), rtol=1e-6)
  # the same as averaging only over the other queries, by hand
  hit = []
  xn = x / np.linalg.norm(x, axis=1, keepdims=True)
  for q in range(4, 30):
    sims = xn @ xn[q]
    sims[q] = -np.inf
    hit.append(labels_lone[np.argmax(sims)] == labels_lone[q])
  np.testing.assert_allclose(got["precision_at_1"], np.mean(hit), rtol=1e-6)
  # no query with R > 0: every metric is 0, as in PML
  all_lone = metrics.retrieval_metrics(x[:5], np.arange(5))
  assert all(v == 0.0 for v in all_lone.values())


def test_single_embedding():
  got = metrics.retrieval_metrics(np.ones((1, 3)), np.array([0]))
  assert all(v == 0.0 for v in got.values())


def test_k_argument_and_jit():
  x, labels = random_retrieval_set(4, n=32)
  kmax = int(np.unique(labels, return_counts=True)[1].max()) - 1
  base = metrics.retrieval_metrics(x, labels, chunk_size=5)
  bigger = metrics.retrieval_metrics(x, labels, chunk_size=5, k=kmax + 3)
  assert_metrics_close(bigger, {n: np.asarray(v) for n, v in base.items()}, rtol=0)
  with pytest.raises(ValueError, match="smaller than max class count"):
    metrics.retrieval_metrics(x, labels, k=kmax - 1)
  with pytest.raises(ValueError, match="k must be in"):
    metrics.retrieval_metrics(x, labels, k=32)
  jitted = jax.jit(functools.partial(metrics.retrieval_metrics, chunk_size=5, k=kmax))
  assert_metrics_close(jitted(x, labels), {n: np.asarray(v) for n, v in base.items()}, rtol=1e-6)
  with pytest.raises(ValueError, match="pass k="):
    jax.jit(metrics.retrieval_metrics)(x, labels)


def test_retrieval_input_errors():
  with pytest.raises(
    ValueError, match=r"embeddings must have shape \[num_embeddings, dim\].*\(5,\)"
  ):
    metrics.retrieval_metrics(np.ones(5), np.zeros(5, int))
  with pytest.raises(ValueError, match=r"labels must have shape \[num_embeddings\]=\(5,\).*\(4,\)"):
    metrics.retrieval_metrics(np.ones((5, 2)), np.zeros(4, int))
  with pytest.raises(ValueError, match="labels must have shape"):
    metrics.precision_at_1(np.ones((5, 2)), np.zeros((5, 1), int))
  with pytest.raises(TypeError, match="integer"):
    metrics.retrieval_metrics(np.ones((5, 2)), np.zeros(5))
  with pytest.raises(ValueError, match="chunk_size"):
    metrics.retrieval_metrics(np.ones((5, 2)), np.zeros(5, int), chunk_size=0)


# --------------------------------------------------- verification references
def np_operating_points(scores, same):
  """(far, tar) at +inf and at every distinct score, accept score >= t."""
  thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])
  far = np.array([np.mean(scores[~same] >= t) for t in thresholds])
  tar = np.array([np.mean(scores[same] >= t) for t in thresholds])
  return far, tar, thresholds


def np_tar_at_far(scores, same, targets):
  far, tar, _ = np_operating_points(scores, same)
  return np.array([tar[far <= f].max() for f in targets])


def np_eer(scores, same):
  far, tar, _ = np_operating_points(scores, same)
  frr = 1 - tar
  for i in range(1, len(far)):
    # segment from point i-1 to i; where does FAR - FRR change sign?
    a0, a1 = far[i - 1] - frr[i - 1], far[i] - frr[i]
    if a0 < 0 <= a1:
      w = -a0 / (a1 - a0)
      return far[i - 1] + w * (far[i] - far[i - 1])
  raise AssertionError("no crossing")


def np_verification_accuracy(scores, same, num_folds, folds=None):
  """``scores`` [n] or fold k's own scores in row k of [num_folds, n]."""
  n = same.shape[0]
  if folds is None:
    folds = np.repeat(
      np.arange(num_folds), [len(p) for p in np.array_split(np.arange(n), num_folds)]
    )
  accuracies = []
  for k in range(int(folds.max()) + 1):
    fold_scores = scores[k] if scores.ndim == 2 else scores
    test, train = np.flatnonzero(folds == k), np.flatnonzero(folds != k)
    s, y = fold_scores[train], same[train]
    candidates = np.unique(s)[::-1]  # highest first: ties go to the higher one
    best_correct, boundary = np.sum(~y), np.inf  # accept nothing
    for j, t in enumerate(candidates):
      correct = np.sum((s >= t) == y)
      if correct > best_correct:
        best_correct = correct
        boundary = (t + candidates[j + 1]) / 2 if j + 1 < len(candidates) else -np.inf
    accuracies.append(np.mean((fold_scores[test] > boundary) == same[test]))
  return np.mean(accuracies), np.std(accuracies)


def np_pca_fold_scores(a, b, folds, dim):
  """Fold k: mean and top ``dim`` eigenvectors of the covariance of the other
  folds' embeddings (float64 eigh), then cosine scores of the projections."""
  rows = []
  for k in range(int(folds.max()) + 1):
    both = np.concatenate([a[folds != k], b[folds != k]]).astype(np.float64)
    mean = both.mean(0)
    _, vectors = np.linalg.eigh((both - mean).T @ (both - mean))
    top = vectors[:, ::-1][:, :dim]
    pa, pb = (a - mean) @ top, (b - mean) @ top
    rows.append(np.sum(pa * pb, 1) / np.linalg.norm(pa, axis=1) / np.linalg.norm(pb, axis=1))
  return np.array(rows)


def random_pairs(seed, n=203, ties=False):
  rng = np.random.default_rng(seed)
  same = rng.random(n) < 0.4
  scores = np.where(same, 0.35, 0.0) + 0.3 * rng.normal(size=n)
  if ties:
    scores = np.round(scores, 1)
  return scores, same


# ----------------------------------------------------------- verification
def test_cosine_scores_matches_numpy():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(2, 9, 4))
  want = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
  np.testing.assert_allclose(metrics.cosine_scores(a, b), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics.cosine_scores(np.zeros((1, 3)), np.ones((1, 3))), [0.0])


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
def test_roc_curve_matches_numpy(float64, seed, ties):
  scores, same = random_pairs(seed, ties=ties)
  far, tar, thresholds = metrics.roc_curve(scores, same)
  want_far, want_tar, want_thr = np_operating_points(scores, same)
  np.testing.assert_array_equal(thresholds, want_thr)
  np.testing.assert_allclose(far, want_far, rtol=1e-12)
  np.testing.assert_allclose(tar, want_tar, rtol=1e-12)
  assert far[0] == tar[0] == 0 and far[-1] == tar[-1] == 1
  assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True)])
def test_tar_at_far_matches_numpy_and_is_monotone(float64, seed, ties):
  scores, same = random_pairs(seed, ties=ties)
  targets = np.array([0.0, 1e-3, 0.013, 0.05, 0.1, 0.25, 0.5, 0.9, 1.0])
  got = np.asarray(metrics.tar_at_far(scores, same, targets))
  np.testing.assert_allclose(got, np_tar_at_far(scores, same, targets), rtol=1e-12)
  dense = np.asarray(metrics.tar_at_far(scores, same, np.linspace(0, 1, 101)))
  assert np.all(np.diff(dense) >= 0)
  assert dense[-1] == 1.0
  assert metrics.tar_at_far(scores, same, 0.1).shape == ()


def test_tar_at_far_hand_case():
  scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
  same = np.array([True, False, True, True, False])
  # FAR 0 -> accept {0.9}: TAR 1/3; FAR 1/2 -> accept down to 0.6: TAR 1
  np.testing.assert_allclose(
    metrics.tar_at_far(scores, same, [0.0, 0.49, 0.5, 1.0]), [1 / 3, 1 / 3, 1.0, 1.0], rtol=1e-6
  )


def np_tar_at_far_exact(scores, same, targets):
  """TAR at each target (decimal strings), in integers: the threshold t qualifies
  when fp(t) * q <= p * n_neg for the target p / q, so FAR == target counts."""
  impostor, genuine = np.sort(scores[~same]), np.sort(scores[same])
  thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])
  fp = len(impostor) - np.searchsorted(impostor, thresholds, side="left")  # scores >= t
  tp = len(genuine) - np.searchsorted(genuine, thresholds, side="left")
  result = []
  for target in targets:
    f = fractions.Fraction(target)
    assert f.denominator * len(scores) < 2**62  # no int64 overflow below
    ok = fp * f.denominator <= f.numerator * len(impostor)
    result.append(tp[ok].max() / len(genuine))
  return np.array(result)


def far_boundary_pairs(num_impostors=1000, num_above=10):
  """11 genuine pairs around the ``num_above``-th highest of ``num_impostors`` impostors.

  Impostor i scores i / num_impostors (distinct in float32); 9 genuine pairs
  score 2.0 (above every impostor), one sits just below the ``num_above`` highest
  impostors and one just below the next impostor. Accepting the 10th genuine
  pair accepts exactly ``num_above`` impostors, the 11th one more.
  """
  impostor = np.arange(num_impostors) / num_impostors
  k = num_impostors - num_above  # impostors k .. n-1 are the num_above highest
  gap = 0.2 / num_impostors  # a fifth of the spacing of the impostor scores
  genuine = np.concatenate([np.full(9, 2.0), [impostor[k] - gap, impostor[k - 1] - gap]])
  scores = np.concatenate([genuine, impostor]).astype(np.float32)
  same = np.concatenate([np.ones(11, bool), np.zeros(num_impostors, bool)])
  return scores, same


def test_tar_at_far_counts_far_equal_to_target():
  # Issue 35: 10 of 1,000 impostors accepted is FAR = 1e-2 exactly. A float32
  # fp / n_neg (10 * (1 / 1000) = 0.0100000007) dropped that point: 9/11.
  scores, same = far_boundary_pairs()
  targets = ["0.01", "0.011", "0.0099", "0.009", "0"]
  want = np_tar_at_far_exact(scores, same, targets)
  np.testing.assert_allclose(want, [10 / 11, 1.0, 9 / 11, 9 / 11, 9 / 11], rtol=0)
  floats = np.array([float(t) for t in targets])
  for tar_at_far in (
    lambda s, y: metrics.tar_at_far(s, y, floats),  # eager
    jax.jit(lambda s, y: metrics.tar_at_far(s, y, floats)),  # traced scores and labels
    lambda s, y: jax.jit(metrics.tar_at_far)(s, y, floats),  # traced targets too
  ):
    got = tar_at_far(scores, same)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.dtype == jnp.float32
  for target in (1e-2, np.float32(1e-2), jnp.float32(1e-2), jnp.array([1e-2])[0]):
    np.testing.assert_allclose(metrics.tar_at_far(scores, same, target), 10 / 11, rtol=1e-6)
    jitted = jax.jit(lambda s, y, target=target: metrics.tar_at_far(s, y, target))
    np.testing.assert_allclose(jitted(scores, same), 10 / 11, rtol=1e-6)


def test_tar_at_far_far_just_above_target_does_not_count():
  # 999 impostors: 10 false accepts is FAR 10/999 = 0.01001 > 1e-2; only 9 qualify.
  scores, same = far_boundary_pairs(num_impostors=999)
  want = np_tar_at_far_exact(scores, same, ["0.01", "0.01002"])
  np.testing.assert_allclose(want, [9 / 11, 10 / 11], rtol=0)
  for tar_at_far in (metrics.tar_at_far, jax.jit(metrics.tar_at_far)):
    np.testing.assert_allclose(tar_at_far(scores, same, [1e-2]), want[:1], rtol=1e-6)
  jitted = jax.jit(lambda s, y: metrics.tar_at_far(s, y, 1e-2))
  np.testing.assert_allclose(jitted(scores, same), want[0], rtol=1e-6)
  # 1e-4 with 99,999 impostors: 10 false accepts (FAR 1.00001e-4) must not count.
  scores, same = far_boundary_pairs(num_impostors=99_999)
  want = np_tar_at_far_exact(scores, same, ["0.0001"])
  np.testing.assert_allclose(want, [9 / 11], rtol=0)
  np.testing.assert_allclose(metrics.tar_at_far(scores, same, 1e-4), want[0], rtol=1e-6)
  jitted = jax.jit(lambda s, y: metrics.tar_at_far(s, y, 1e-4))
  np.testing.assert_allclose(jitted(scores, same), want[0], rtol=1e-6)
  # ... while with 100,000 impostors 10 false accepts is FAR 1e-4 exactly and counts.
  scores, same = far_boundary_pairs(num_impostors=100_000)
  np.testing.assert_allclose(np_tar_at_far_exact(scores, same, ["0.0001"]), [10 / 11], rtol=0)
  np.testing.assert_allclose(jitted(scores, same), 10 / 11, rtol=1e-6)
  np.testing.assert_allclose(metrics.tar_at_far(scores, same, 1e-4), 10 / 11, rtol=1e-6)


def test_tar_at_far_out_of_range_targets():
  scores, same = far_boundary_pairs()
  targets = [-1e-9, np.nan, -np.inf, 1.0, 2.0, np.inf]
  want = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
  for tar_at_far in (metrics.tar_at_far, jax.jit(metrics.tar_at_far)):
    np.testing.assert_array_equal(tar_at_far(scores, same, targets), want)
  assert metrics.tar_at_far(scores, same, np.zeros((2, 0))).shape == (2, 0)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (5, True)])
def test_equal_error_rate_matches_numpy(float64, seed, ties):
  scores, same = random_pairs(seed, ties=ties)
  np.testing.assert_allclose(
    metrics.equal_error_rate(scores, same), np_eer(scores, same), rtol=1e-12
  )


def test_equal_error_rate_known_cases():
  sep_scores = np.array([0.3, 0.9, 0.1, 0.8, 0.2, 0.5])
  sep_same = sep_scores > 0.4
  assert metrics.equal_error_rate(sep_scores, sep_same) == 0.0
  # genuine 0.9, 0.4 / impostor 0.8, 0.7, 0.1: points (FAR, FRR)
  # (0, 1) (0, 1/2) (1/3, 1/2) (2/3, 1/2) (2/3, 0) ... crossing at FAR = 1/2.
  scores = np.array([0.9, 0.8, 0.7, 0.4, 0.1])
  same = np.array([True, False, False, True, False])
  np.testing.assert_allclose(metrics.equal_error_rate(scores, same), 0.5, rtol=1e-6)
  # genuine 0.9, 0.6 / impostor 0.8, 0.2, 0.1, 0.05: (0,1) (0,.5) (.25,.5) (.25,0)
  # crossing on the vertical segment FAR = 1/4.
  scores = np.array([0.9, 0.8, 0.6, 0.2, 0.1, 0.05])
  same = np.array([True, False, True, False, False, False])
  np.testing.assert_allclose(metrics.equal_error_rate(scores, same), 0.25, rtol=1e-6)
  # fully inverted scores: EER 1
  np.testing.assert_allclose(metrics.equal_error_rate([0.1, 0.9], [True, False]), 1.0)


@pytest.mark.parametrize(
  "seed,ties,num_folds", [(0, False, 10), (1, True, 10), (2, False, 7), (3, True, 4)]
)
def test_verification_accuracy_matches_numpy(float64, seed, ties, num_folds):
  scores, same = random_pairs(seed, ties=ties)  # 203 pairs: unequal folds
  mean, std = metrics.verification_accuracy(scores, same, num_folds=num_folds)
  want_mean, want_std = np_verification_accuracy(scores, same, num_folds)
  np.testing.assert_allclose(mean, want_mean, rtol=1e-12)
  np.testing.assert_allclose(std, want_std, rtol=1e-9, atol=1e-12)
  assert 0.5 < mean < 1


def test_verification_accuracy_separable_is_one():
  rng = np.random.default_rng(0)
  same = np.tile([True, False], 300)
  scores = np.where(same, rng.uniform(0.6, 1.0, 600), rng.uniform(-1.0, 0.3, 600))
  mean, std = metrics.verification_accuracy(scores, same)
  assert mean == 1.0 and std == 0.0


def test_verification_jit():
  scores, same = random_pairs(6, n=120)
  fns = [
    functools.partial(metrics.verification_accuracy, num_folds=10),
    metrics.equal_error_rate,
    lambda s, y: metrics.tar_at_far(s, y, jnp.array([0.01, 0.1])),
  ]
  for fn in fns:
    eager, jitted = fn(scores, same), jax.jit(fn)(scores, same)
    for e, j in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
      np.testing.assert_allclose(np.asarray(j), np.asarray(e), rtol=1e-6)


def test_verification_input_errors():
  with pytest.raises(ValueError, match=r"same must have the shape of scores.*\(4,\).*\(3,\)"):
    metrics.roc_curve(np.ones(4), np.ones(3, bool))
  with pytest.raises(ValueError, match=r"scores must have shape \[num_pairs\]"):
    metrics.equal_error_rate(np.ones((4, 1)), np.ones(4, bool))
  with pytest.raises(ValueError, match="same must have the shape of scores"):
    metrics.tar_at_far(np.ones(4), np.ones(5, bool), [0.1])
  with pytest.raises(ValueError, match="same must have the shape of scores"):
    metrics.verification_accuracy(np.ones(20), np.ones(19, bool))
  with pytest.raises(ValueError, match="num_folds"):
    metrics.verification_accuracy(np.ones(5), np.ones(5, bool), num_folds=6)
  with pytest.raises(ValueError, match="both genuine"):
    metrics.roc_curve(np.ones(4), np.ones(4, bool))
  with pytest.raises(ValueError, match=r"b must have the shape of a \(3, 2\)"):
    metrics.cosine_scores(np.ones((3, 2)), np.ones((3, 3)))
  with pytest.raises(ValueError, match=r"a must have shape \[num_pairs, dim\]"):
    metrics.cosine_scores(np.ones(3), np.ones(3))


# --------------------------------------------------------------- doctests
def test_docstring_examples():
  result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted >= 15
  assert result.failed == 0


def test_verification_with_given_folds_and_pca_matches_numpy(float64):
  """LFW's own folds (pairs.txt) and a PCA fitted on the other folds
  (L-Softmax, Noisy Softmax), against a float64 NumPy reference."""
  rng = np.random.default_rng(3)
  n, d = 120, 6
  same = rng.random(n) < 0.5
  a = rng.normal(size=(n, d))
  b = np.where(same[:, None], a + 0.8 * rng.normal(size=(n, d)), rng.normal(size=(n, d)))
  folds = rng.permutation(np.arange(n) % 4)
  scores = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
  mean, std = metrics.verification_accuracy(scores, same, folds=folds)
  np.testing.assert_allclose([mean, std], np_verification_accuracy(scores, same, 4, folds))
  per_fold = metrics.pca_fold_scores(a, b, dim=3, folds=folds)
  want = np_pca_fold_scores(a, b, folds, 3)
  np.testing.assert_allclose(per_fold, want, rtol=1e-9, atol=1e-9)
  mean, std = metrics.verification_accuracy(per_fold, same, folds=folds)
  np.testing.assert_allclose([mean, std], np_verification_accuracy(want, same, 4, folds))
  # Consecutive folds by default, as for the plain scores.
  np.testing.assert_allclose(
    metrics.pca_fold_scores(a, b, dim=3, num_folds=4),
    np_pca_fold_scores(a, b, np.repeat(np.arange(4), 30), 3),
    rtol=1e-9,
    atol=1e-9,
  )
  with pytest.raises(ValueError, match="per-fold scores must have shape"):
    metrics.verification_accuracy(per_fold[:3], same, folds=folds)
  with pytest.raises(ValueError, match="folds must number at least 2 folds"):
    metrics.verification_accuracy(scores, same, folds=np.zeros(n, int))
  with pytest.raises(ValueError, match="dim must be in"):
    metrics.pca_fold_scores(a, b, dim=7)
  # The trainer's and `experiments.evaluate`'s numbers (--pca DIM): the
  # accuracy after the per-fold PCA, TAR and EER on the plain cosine scores.
  from margin_jax.training import verification

  pairs = np.stack([a, b], 1).reshape(2 * n, d)
  numbers = verification.report(pairs, same, folds, pca_dim=3)
  np.testing.assert_allclose(
    [numbers["accuracy"], numbers["accuracy_std"]], np_verification_accuracy(want, same, 4, folds)
  )
  plain = verification.report(pairs, same, folds)
  np.testing.assert_allclose(
    [plain["accuracy"], plain["accuracy_std"]], np_verification_accuracy(scores, same, 4, folds)
  )
  assert {k: numbers[k] for k in ("tar_far_1e-3", "eer")} == {
    k: plain[k] for k in ("tar_far_1e-3", "eer")
  }


@pytest.mark.parametrize("axis_type", ["Explicit", "Auto"])
def test_verification_on_pairs_placed_on_a_mesh(axis_type):
  """As the guides place arrays: split over the batch of a `jax.make_mesh`
  mesh (JAX's default Explicit axes, and Auto), eagerly and under jit."""
  from jax.sharding import AxisType, NamedSharding, PartitionSpec

  rng = np.random.default_rng(4)
  n = 120
  same = rng.random(n) < 0.5
  a = rng.normal(size=(n, 8)).astype(np.float32)
  b = (a + rng.normal(size=(n, 8))).astype(np.float32)
  scores, folds = np.asarray(metrics.cosine_scores(a, b)), np.arange(n) % 4
  mesh = jax.make_mesh((4,), ("data",), axis_types=(getattr(AxisType, axis_type),))
  put = lambda x: jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
  accuracy = functools.partial(metrics.verification_accuracy, folds=folds)
  for fn, args, rtol in (
    (accuracy, (scores, same), 1e-6),
    (jax.jit(accuracy), (scores, same), 1e-6),
    (functools.partial(metrics.tar_at_far, far_targets=[1e-2, 0.1]), (scores, same), 1e-6),
    (metrics.equal_error_rate, (scores, same), 1e-6),
    # A float32 SVD of a split array rounds otherwise (about 1e-5 here).
    (functools.partial(metrics.pca_fold_scores, dim=3, folds=folds), (a, b), 1e-4),
  ):
    np.testing.assert_allclose(fn(*map(put, args)), fn(*args), rtol=rtol, atol=rtol / 10)
