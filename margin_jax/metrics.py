"""Evaluation metrics for the embeddings that margin losses produce.

Two families, both in pure JAX:

* **Retrieval** (:func:`retrieval_metrics`, :func:`precision_at_1`,
  :func:`r_precision`, :func:`mean_average_precision_at_r`): every embedding
  is a query against all the others, ranked by cosine similarity, with the
  definitions of pytorch-metric-learning's ``AccuracyCalculator`` (queries and
  references from the same source). The similarity matrix is built a chunk of
  queries at a time (``[chunk_size, N]``), never ``[N, N]`` at once.
* **Verification** on pairs (:func:`cosine_scores`, :func:`roc_curve`,
  :func:`tar_at_far`, :func:`equal_error_rate`, :func:`verification_accuracy`):
  a pair is accepted as "same identity" when its score is ``>=`` a threshold.

Usage::

  from margin_jax import metrics
  metrics.retrieval_metrics(embeddings, labels)
  metrics.verification_accuracy(metrics.cosine_scores(a, b), same)

Conventions of the retrieval metrics:

* A query never retrieves itself (its own index is masked out), but it does
  retrieve exact duplicates of itself at other indices.
* **Ties** in similarity are broken by index: among references with the same
  cosine, the lower index ranks first (the order of :func:`jax.lax.top_k`, and
  of a stable ``argsort`` of ``-similarity``).
* For a query of class ``c``, ``R`` is the number of *other* examples of class
  ``c``. Queries with ``R = 0`` (a class with a single example) are left out
  of all three averages, as PML does; if every query has ``R = 0`` the
  metrics are 0 (PML's value for that case).
* Averages are over queries (PML's ``avg_of_avgs=False``).
* Zero embeddings have cosine 0 with everything.

PML's default k-NN ranks by Euclidean distance; on L2-normalised embeddings
that is the same ranking as cosine similarity, so these metrics equal PML's
on ``normalize(embeddings)`` (up to how ties are broken).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from margin_jax import numerics
from margin_jax import sharding

__all__ = (
  "cosine_scores",
  "equal_error_rate",
  "mean_average_precision_at_r",
  "precision_at_1",
  "r_precision",
  "retrieval_metrics",
  "roc_curve",
  "tar_at_far",
  "verification_accuracy",
  "pca_fold_scores",
)


def _float_dtype(x) -> jnp.dtype:
  """float32 for integers and half precision; float32/float64 are kept."""
  return numerics.compute_dtype(numerics.result_dtype(x))


# ----------------------------------------------------------------- retrieval
def _check_embeddings(embeddings, labels):
  embeddings, labels = jnp.asarray(embeddings), jnp.asarray(labels)
  if embeddings.ndim != 2:
    raise ValueError(
      f"embeddings must have shape [num_embeddings, dim], got shape {embeddings.shape}."
    )
  if labels.shape != embeddings.shape[:1]:
    raise ValueError(
      f"labels must have shape [num_embeddings]=({embeddings.shape[0]},) to match "
      f"embeddings {embeddings.shape}, got shape {labels.shape}."
    )
  if not (jnp.issubdtype(labels.dtype, jnp.integer) or labels.dtype == jnp.bool_):
    raise TypeError(f"labels must be integer class ids, got dtype {labels.dtype}.")
  return embeddings.astype(_float_dtype(embeddings)), labels


def _max_other_count(labels) -> int | None:
  """max class count - 1, or None when labels are traced (inside jit)."""
  try:
    host = np.asarray(labels)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return None
  if host.size == 0:
    return 0
  return int(np.unique(host, return_counts=True)[1].max()) - 1


def _resolve_k(labels, num_embeddings: int, k: int | None) -> int:
  needed = _max_other_count(labels)
  if k is None:
    if needed is None:
      raise ValueError(
        "labels are traced (inside jit), so the number of neighbours cannot be "
        "computed from them: pass k= (an int >= max class count - 1)."
      )
    return needed
  k = int(k)
  if not 0 <= k <= max(num_embeddings - 1, 0):
    raise ValueError(
      f"k must be in [0, num_embeddings - 1]=[0, {max(num_embeddings - 1, 0)}], got {k}."
    )
  if needed is not None and k < needed:
    raise ValueError(
      f"k={k} is smaller than max class count - 1 = {needed}: R-precision and "
      "MAP@R need the R nearest neighbours of every query."
    )
  return k


@functools.partial(jax.jit, static_argnames=("k", "chunk_size"))
def _per_query(x, labels, *, k: int, chunk_size: int):
  """Per-query (R, hit@1, R-precision, AP@R), each ``[N]``, chunked over queries."""
  n = x.shape[0]
  x = numerics.normalize(x, axis=-1)
  num_chunks = -(-n // chunk_size)
  queries = jnp.arange(num_chunks * chunk_size)
  queries = jnp.where(queries < n, queries, 0).reshape(num_chunks, chunk_size)
  refs = jnp.arange(n)
  ranks = jnp.arange(1, k + 1, dtype=x.dtype)

  def chunk(q):
    q_labels = labels[q]
    sims = jnp.matmul(x[q], x.T, precision=lax.Precision.HIGHEST)  # [chunk, N]
    sims = jnp.where(refs[None, :] == q[:, None], -jnp.inf, sims)  # no self-match
    r = jnp.sum(labels[None, :] == q_labels[:, None], axis=1) - 1  # others of the class
    if k == 0:
      zeros = jnp.zeros(q.shape, x.dtype)
      return r, zeros, zeros, zeros
    _, neighbours = lax.top_k(sims, k)  # ties: lower index first
    match = labels[neighbours] == q_labels[:, None]  # [chunk, k]
    hits = match & (ranks[None, :] <= r[:, None])  # relevant and within the first R
    denom = jnp.maximum(r, 1).astype(x.dtype)
    precision_at_i = jnp.cumsum(hits, axis=1) / ranks
    r_prec = jnp.sum(hits, axis=1) / denom
    ap_at_r = jnp.sum(jnp.where(hits, precision_at_i, 0), axis=1) / denom
    return r, match[:, 0].astype(x.dtype), r_prec, ap_at_r

  outputs = lax.map(chunk, queries)
  return tuple(v.reshape(-1)[:n] for v in outputs)


def _mean_over_non_lone(r, values):
  valid = r > 0
  count = jnp.sum(valid)
  total = jnp.sum(jnp.where(valid, values, 0))
  return jnp.where(count > 0, total / jnp.maximum(count, 1), 0).astype(values.dtype)


def retrieval_metrics(
  embeddings: ArrayLike, labels: ArrayLike, *, chunk_size: int = 1024, k: int | None = None
) -> dict[str, jax.Array]:
  r"""Precision@1, R-precision and MAP@R of cosine retrieval, leave-one-out.

  Each embedding queries all the others, ranked by cosine similarity (ties:
  lower index first). For a query of class ``c`` with ``R`` other examples of
  ``c`` and ``rel(i) = 1`` when its ``i``-th neighbour has class ``c``:

  .. math::
    \text{P@1} = rel(1), \qquad
    \text{R-precision} = \frac{1}{R}\sum_{i=1}^{R} rel(i), \qquad
    \text{MAP@R} = \frac{1}{R}\sum_{i=1}^{R} P(i)\, rel(i),

  with ``P(i)`` the precision of the first ``i`` neighbours, each averaged over
  the queries with ``R > 0`` (queries of a single-example class are left out;
  if there is none, the metrics are 0).

  The queries are processed ``chunk_size`` at a time: each chunk builds a
  ``[chunk_size, N]`` similarity matrix and keeps its ``k`` best neighbours
  with :func:`jax.lax.top_k`, so memory is ``O(chunk_size * N)``.

  Args:
    embeddings: ``[num_embeddings, dim]`` floats (any scale; normalised here).
    labels: ``[num_embeddings]`` integer class ids.
    chunk_size: queries per chunk (need not divide ``num_embeddings``).
    k: neighbours retrieved per query. Default: max class count - 1, computed
      on the host from ``labels``. Pass it (an int >= that) to call this
      function inside ``jit`` with traced labels.

  Returns:
    ``{"precision_at_1", "r_precision", "mean_average_precision_at_r"}``, each
    a scalar.

  Example:
    >>> emb = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9],
    ...                  [0.7, 0.3]])
    >>> m = retrieval_metrics(emb, jnp.array([0, 1, 1, 0, 1]))
    >>> {name: round(float(v), 4) for name, v in m.items()}
    {'precision_at_1': 0.2, 'r_precision': 0.3, 'mean_average_precision_at_r': 0.2}

  References:
    pytorch-metric-learning, AccuracyCalculator,
    https://kevinmusgrave.github.io/pytorch-metric-learning/accuracy_calculation/;
    Musgrave et al., A Metric Learning Reality Check, ECCV 2020 (MAP@R).
  """
  x, labels = _check_embeddings(embeddings, labels)
  n = x.shape[0]
  if n == 0:
    raise ValueError(f"embeddings must not be empty, got shape {x.shape}.")
  if int(chunk_size) < 1:
    raise ValueError(f"chunk_size must be a positive int, got {chunk_size}.")
  k = _resolve_k(labels, n, k)
  r, hit1, r_prec, ap = _per_query(x, labels, k=k, chunk_size=min(int(chunk_size), n))
  return {
    "precision_at_1": _mean_over_non_lone(r, hit1),
    "r_precision": _mean_over_non_lone(r, r_prec),
    "mean_average_precision_at_r": _mean_over_non_lone(r, ap),
  }


def precision_at_1(
  embeddings: ArrayLike, labels: ArrayLike, *, chunk_size: int = 1024
) -> jax.Array:
  """Fraction of queries whose nearest other embedding has the same label.

  Cosine similarity, ties to the lower index, queries of single-example
  classes left out (see :func:`retrieval_metrics`). Retrieves one neighbour
  per query only.

  Args:
    embeddings: ``[num_embeddings, dim]`` floats.
    labels: ``[num_embeddings]`` integer class ids.
    chunk_size: queries per chunk.

  Returns:
    A scalar in ``[0, 1]``.

  Example:
    >>> emb = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> precision_at_1(emb, jnp.array([0, 0, 1, 1]))
    Array(1., dtype=float32)

  References:
    pytorch-metric-learning, AccuracyCalculator (``precision_at_1``).
  """
  x, labels = _check_embeddings(embeddings, labels)
  n = x.shape[0]
  if n == 0:
    raise ValueError(f"embeddings must not be empty, got shape {x.shape}.")
  if int(chunk_size) < 1:
    raise ValueError(f"chunk_size must be a positive int, got {chunk_size}.")
  k = min(1, n - 1)
  r, hit1, _, _ = _per_query(x, labels, k=k, chunk_size=min(int(chunk_size), n))
  return _mean_over_non_lone(r, hit1)


def r_precision(embeddings: ArrayLike, labels: ArrayLike, *, chunk_size: int = 1024) -> jax.Array:
  """Mean fraction of each query's R nearest neighbours that share its label.

  ``R`` is the number of other examples of the query's class; see
  :func:`retrieval_metrics` for ties and single-example classes.

  Args:
    embeddings: ``[num_embeddings, dim]`` floats.
    labels: ``[num_embeddings]`` integer class ids.
    chunk_size: queries per chunk.

  Returns:
    A scalar in ``[0, 1]``.

  Example:
    >>> emb = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    >>> r_precision(emb, jnp.array([0, 0, 1, 1]))
    Array(0., dtype=float32)

  References:
    pytorch-metric-learning, AccuracyCalculator (``r_precision``);
    Musgrave et al., A Metric Learning Reality Check, ECCV 2020.
  """
  return retrieval_metrics(embeddings, labels, chunk_size=chunk_size)["r_precision"]


def mean_average_precision_at_r(
  embeddings: ArrayLike, labels: ArrayLike, *, chunk_size: int = 1024
) -> jax.Array:
  r"""MAP@R: mean over queries of :math:`\frac{1}{R}\sum_{i \le R} P(i)\,rel(i)`.

  See :func:`retrieval_metrics` for the definition, ties and single-example
  classes.

  Args:
    embeddings: ``[num_embeddings, dim]`` floats.
    labels: ``[num_embeddings]`` integer class ids.
    chunk_size: queries per chunk.

  Returns:
    A scalar in ``[0, 1]``.

  Example:
    >>> emb = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.2]])
    >>> mean_average_precision_at_r(emb, jnp.array([0, 0, 0, 1]))
    Array(0.41666666, dtype=float32)

  References:
    Musgrave et al., A Metric Learning Reality Check, ECCV 2020, sec. 3.2;
    pytorch-metric-learning, AccuracyCalculator (``mean_average_precision_at_r``).
  """
  return retrieval_metrics(embeddings, labels, chunk_size=chunk_size)["mean_average_precision_at_r"]


# -------------------------------------------------------------- verification
def cosine_scores(a: ArrayLike, b: ArrayLike) -> jax.Array:
  """Cosine similarity of each pair ``(a[p], b[p])``.

  Args:
    a: ``[num_pairs, dim]`` first embeddings of the pairs.
    b: ``[num_pairs, dim]`` second embeddings.

  Returns:
    ``[num_pairs]`` cosines in ``[-1, 1]`` (0 for a zero embedding).

  Example:
    >>> cosine_scores(jnp.array([[1.0, 0.0], [3.0, 4.0]]),
    ...               jnp.array([[2.0, 0.0], [4.0, -3.0]]))
    Array([1., 0.], dtype=float32)
  """
  a, b = jnp.asarray(a), jnp.asarray(b)
  if a.ndim != 2:
    raise ValueError(f"a must have shape [num_pairs, dim], got shape {a.shape}.")
  if b.shape != a.shape:
    raise ValueError(f"b must have the shape of a {a.shape}, got shape {b.shape}.")
  dtype = _float_dtype(jnp.result_type(a, b))
  a, b = numerics.normalize(a.astype(dtype), axis=-1), numerics.normalize(b.astype(dtype), axis=-1)
  return jnp.sum(a * b, axis=-1)


def _check_pairs(scores, same):
  scores, same = (sharding.gathered(jnp.asarray(v)) for v in (scores, same))
  if scores.ndim != 1:
    raise ValueError(f"scores must have shape [num_pairs], got shape {scores.shape}.")
  if same.shape != scores.shape:
    raise ValueError(
      f"same must have the shape of scores [num_pairs]={scores.shape}, got shape {same.shape}."
    )
  if scores.shape[0] == 0:
    raise ValueError("scores must not be empty.")
  return scores.astype(_float_dtype(scores)), same.astype(bool)


def _sorted_with_group_ends(scores):
  """Scores sorted descending and, per position, the last index of its tie group."""
  n = scores.shape[0]
  ascending = jnp.sort(scores)
  descending = ascending[::-1]
  num_at_least = n - jnp.searchsorted(ascending, descending, side="left")
  return descending, num_at_least - 1


def _roc_counts(scores, same):
  """Sorted scores and the cumulative counts ``(tp, fp)`` at their tie-group ends."""
  order = jnp.argsort(scores)[::-1]
  s, y = scores[order], same[order]
  _, end = _sorted_with_group_ends(scores)
  return s, jnp.cumsum(y)[end], jnp.cumsum(~y)[end], end


@jax.jit
def _roc_points(scores, same):
  """All ``num_pairs + 1`` operating points, duplicated within tie groups.

  Point 0 is the threshold ``+inf`` (nothing accepted); point ``i >= 1`` is the
  threshold ``descending[i - 1]``. Returns (far, tar, thresholds, distinct).
  """
  s, tp, fp, end = _roc_counts(scores, same)
  dtype = scores.dtype
  tar = jnp.concatenate([jnp.zeros(1, int), tp]) / jnp.sum(same).astype(dtype)
  far = jnp.concatenate([jnp.zeros(1, int), fp]) / jnp.sum(~same).astype(dtype)
  thresholds = jnp.concatenate([jnp.full(1, jnp.inf, dtype), s])
  distinct = jnp.concatenate([jnp.ones(1, bool), end == jnp.arange(scores.shape[0])])
  return far.astype(dtype), tar.astype(dtype), thresholds, distinct


def roc_curve(scores: ArrayLike, same: ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array]:
  """False/true accept rates at every distinct threshold, ``score >= t`` accepted.

  The thresholds are ``+inf`` (accept nothing, the point ``(0, 0)``) followed
  by the distinct scores in decreasing order (the last accepts everything,
  the point ``(1, 1)``). Both classes must be present. Not jit-compatible
  (its length depends on the number of distinct scores).

  Args:
    scores: ``[num_pairs]`` similarity of each pair (higher = more alike).
    same: ``[num_pairs]`` booleans, True for a genuine (same-class) pair.

  Returns:
    ``(far, tar, thresholds)``, each ``[num_distinct_scores + 1]``: FAR is the
    fraction of impostor pairs accepted, TAR the fraction of genuine pairs
    accepted; both nondecreasing.

  Example:
    >>> far, tar, thr = roc_curve(jnp.array([0.9, 0.8, 0.7, 0.6]),
    ...                           jnp.array([True, False, True, False]))
    >>> print(far, tar, thr)
    [0.  0.  0.5 0.5 1. ] [0.  0.5 0.5 1.  1. ] [inf 0.9 0.8 0.7 0.6]

  References:
    Fawcett, An introduction to ROC analysis, Pattern Recognition Letters 2006.
  """
  scores, same = _check_pairs(scores, same)
  num_same = int(jnp.sum(same))
  if num_same in (0, same.shape[0]):
    raise ValueError(
      f"same must contain both genuine (True) and impostor (False) pairs, got "
      f"{num_same} genuine of {same.shape[0]}."
    )
  far, tar, thresholds, distinct = _roc_points(scores, same)
  keep = np.asarray(distinct)
  return far[keep], tar[keep], thresholds[keep]


@jax.jit
def _tar_at_far(scores, same, far_targets):
  _, tp, fp, _ = _roc_counts(scores, same)
  num_neg = jnp.sum(~same)
  # FAR = fp / num_neg <= f  <=>  fp <= floor(f * num_neg), compared in counts.
  # The float product of a decimal target (1e-2 * 1000 = 9.9999998 in float32)
  # is taken as the integer it stands for when within a relative 16 eps of it.
  dtype = scores.dtype
  product = far_targets * num_neg.astype(dtype)
  bound = jnp.floor(product * (1 + 16 * jnp.finfo(dtype).eps))
  bound = jnp.clip(bound, -1, num_neg.astype(dtype))
  max_fp = jnp.where(jnp.isnan(bound) | (far_targets < 0), -1, bound).astype(num_neg.dtype)
  return _tar_where_fp_at_most(scores, same, tp, fp, max_fp)


def _tar_where_fp_at_most(scores, same, tp, fp, max_fp):
  """Largest TAR over the operating points with ``fp <= max_fp`` (per target)."""
  tp = jnp.concatenate([jnp.zeros(1, tp.dtype), tp])
  fp = jnp.concatenate([jnp.zeros(1, fp.dtype), fp])
  tar = (tp / jnp.sum(same).astype(scores.dtype)).astype(scores.dtype)
  ok = fp[None, :] <= max_fp[:, None]
  return jnp.max(jnp.where(ok, tar[None, :], 0), axis=1)


def tar_at_far(scores: ArrayLike, same: ArrayLike, far_targets: ArrayLike) -> jax.Array:
  """True accept rate at each false accept rate target.

  For a target ``f`` it is the largest TAR over the thresholds whose FAR is
  ``<= f`` (0 when only "accept nothing" qualifies). Nondecreasing in ``f``.
  Jit-compatible; both classes must be present (else NaN).

  The comparison is in integer counts: with ``n_neg`` impostor pairs, a
  threshold accepting ``fp`` of them qualifies when ``fp <= floor(f * n_neg)``,
  so an operating point whose FAR equals the target counts (1e-2 with 1,000
  impostors admits 10 false accepts, not 9 as a float32 ``fp / n_neg <= f``
  may), eagerly and under ``jit``. ``f * n_neg`` within a relative
  ``16 * eps`` (of the scores' dtype) below an integer counts as that
  integer: the decimal a target is written as, not its float rounding.

  Args:
    scores: ``[num_pairs]`` pair similarities.
    same: ``[num_pairs]`` booleans, True for a genuine pair.
    far_targets: scalar or ``[num_targets]`` FAR targets in ``[0, 1]``.

  Returns:
    TAR, of the shape of ``far_targets``.

  Example:
    >>> tar_at_far(jnp.array([0.9, 0.8, 0.7, 0.6]),
    ...            jnp.array([True, False, True, False]),
    ...            jnp.array([0.0, 0.5, 1.0]))
    Array([0.5, 1. , 1. ], dtype=float32)

  References:
    Grother et al., Face Recognition Vendor Test (FRVT), NIST (TAR @ FAR);
    Fawcett, An introduction to ROC analysis, 2006.
  """
  scores, same = _check_pairs(scores, same)
  targets = jnp.asarray(far_targets, scores.dtype)
  return _tar_at_far(scores, same, targets.reshape(-1)).reshape(targets.shape)


@jax.jit
def _equal_error_rate(scores, same):
  far, tar, _, _ = _roc_points(scores, same)
  gap = (1 - tar) - far  # FRR - FAR: 1 at the first point, -1 at the last
  i = jnp.argmax(gap <= 0)  # first crossing; i >= 1
  g0, g1 = gap[i - 1], gap[i]
  t = g0 / (g0 - g1)
  return far[i - 1] + t * (far[i] - far[i - 1])


def equal_error_rate(scores: ArrayLike, same: ArrayLike) -> jax.Array:
  """The error rate where false accept rate equals false reject rate.

  FAR and FRR = 1 - TAR are joined linearly between the operating points of
  :func:`roc_curve`; the EER is the FAR where that piecewise-linear curve
  crosses FAR = FRR (0 for separable scores). Jit-compatible; both classes must
  be present (else NaN).

  Args:
    scores: ``[num_pairs]`` pair similarities.
    same: ``[num_pairs]`` booleans, True for a genuine pair.

  Returns:
    A scalar in ``[0, 1]``.

  Example:
    >>> equal_error_rate(jnp.array([0.9, 0.8, 0.7, 0.6]),
    ...                  jnp.array([True, False, True, False]))
    Array(0.5, dtype=float32)
    >>> equal_error_rate(jnp.array([0.9, 0.8, 0.3, 0.2]),
    ...                  jnp.array([True, True, False, False]))
    Array(0., dtype=float32)

  References:
    Fawcett, An introduction to ROC analysis, 2006; the biometric EER of
    ISO/IEC 19795-1.
  """
  scores, same = _check_pairs(scores, same)
  return _equal_error_rate(scores, same)


@functools.partial(jax.jit, static_argnames=("num_folds",))
def _fold_accuracies(fold_scores, same, fold_of_pair, *, num_folds: int):
  # fold_scores [1, n]: the scores of every fold, sorted once; [num_folds, n]: fold k's own.
  rows, n = fold_scores.shape
  positions = jnp.arange(n)
  orders = jnp.argsort(fold_scores, axis=1)[:, ::-1]
  ends = jax.vmap(lambda scores: _sorted_with_group_ends(scores)[1])(fold_scores)

  def one_fold(k):
    row = k % rows
    order, end = orders[row], ends[row]
    s, y, fold = fold_scores[row][order], same[order], fold_of_pair[order]
    train = fold != k
    tp = jnp.cumsum(y & train)
    fp = jnp.cumsum(~y & train)
    num_neg = fp[-1]
    # Training pairs classified correctly when accepting the scores >= s[i]
    # (candidates: the training scores only), and when accepting nothing.
    correct = jnp.where(train, tp[end] + num_neg - fp[end], -1)
    correct = jnp.concatenate([num_neg[None], correct])
    best = jnp.argmax(correct)  # first maximum: the highest threshold
    # The boundary lies midway to the next lower training score.
    next_train = lax.cummin(jnp.where(train, positions, n), reverse=True)
    next_train = jnp.concatenate([next_train, jnp.full(1, n)])[end + 1]
    lower = s[jnp.minimum(next_train, n - 1)]
    middle = jnp.where(next_train < n, s + (lower - s) / 2, -jnp.inf)
    boundary = jnp.concatenate([jnp.full(1, jnp.inf, s.dtype), middle])[best]
    test = ~train
    right = jnp.sum(((s > boundary) == y) & test)
    return right / jnp.sum(test).astype(s.dtype)

  return lax.map(one_fold, jnp.arange(num_folds))


def _fold_of_pair(num_pairs: int, num_folds: int, folds) -> tuple[np.ndarray, int]:
  """Each pair's fold: ``folds`` as given (ints 0..K-1), else ``num_folds``
  consecutive folds like ``numpy.array_split``."""
  if folds is not None:
    folds = np.asarray(folds)
    if folds.shape != (num_pairs,) or not np.issubdtype(folds.dtype, np.integer):
      raise ValueError(
        f"folds must be ints of shape ({num_pairs},), got {folds.dtype} {folds.shape}."
      )
    num_folds = int(folds.max()) + 1 if num_pairs else 0
    if folds.min() < 0 or len(np.unique(folds)) != num_folds or num_folds < 2:
      raise ValueError(
        f"folds must number at least 2 folds 0..K-1, each used; got {np.unique(folds)}."
      )
    return folds, num_folds
  if not 2 <= int(num_folds) <= num_pairs:
    raise ValueError(f"num_folds must be in [2, num_pairs]=[2, {num_pairs}], got {num_folds}.")
  num_folds = int(num_folds)
  sizes = [len(part) for part in np.array_split(np.arange(num_pairs), num_folds)]
  return np.repeat(np.arange(num_folds), sizes), num_folds


def verification_accuracy(
  scores: ArrayLike, same: ArrayLike, *, num_folds: int = 10, folds: ArrayLike | None = None
) -> tuple[jax.Array, jax.Array]:
  """LFW-protocol accuracy: threshold picked on 9 folds, tested on the 10th.

  The pairs, in the given order, are split into ``num_folds`` consecutive
  folds (sizes differ by at most one, the larger first, like
  ``numpy.array_split``), or into the given ``folds`` (e.g. LFW's own, from
  its ``pairs.txt``). For each fold, the threshold is chosen to maximise
  the accuracy on the other folds, over every candidate: the sorted unique
  training scores (accept ``score >= t``) and "accept nothing"; among equally
  accurate candidates the highest threshold wins. On the held-out fold the
  decision boundary is placed midway between the chosen training score and
  the next lower training score (``-inf`` below the lowest, ``+inf`` for
  "accept nothing"), then the fold's accuracy is measured. Jit-compatible in
  ``scores`` and ``same``.

  Args:
    scores: ``[num_pairs]`` pair similarities, or ``[num_folds, num_pairs]``:
      fold k's own scores in row k (e.g. after a PCA fitted on the other
      folds, `pca_fold_scores`).
    same: ``[num_pairs]`` booleans, True for a genuine pair.
    num_folds: number of folds, ``2 <= num_folds <= num_pairs`` (ignored
      when ``folds`` is given).
    folds: optional ``[num_pairs]`` ints 0..K-1, each pair's fold.

  Returns:
    ``(mean, std)`` of the per-fold accuracies (population std, ``ddof=0``).

  Example:
    >>> scores = jnp.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3])
    >>> same = jnp.array([True, False, True, False, True, False])
    >>> verification_accuracy(scores, same, num_folds=3)
    (Array(1., dtype=float32), Array(0., dtype=float32))

  References:
    Huang et al., Labeled Faces in the Wild: A Database for Studying Face
    Recognition in Unconstrained Environments, UMass TR 07-49, 2007 (the
    10-fold "View 2" protocol).
  """
  scores = sharding.gathered(jnp.asarray(scores))
  per_fold = scores.ndim == 2
  flat, same = _check_pairs(scores[0] if per_fold else scores, same)
  fold_of_pair, num_folds = _fold_of_pair(flat.shape[0], num_folds, folds)
  if per_fold:
    if scores.shape != (num_folds, flat.shape[0]):
      raise ValueError(
        f"per-fold scores must have shape (num_folds, num_pairs) = ({num_folds}, "
        f"{flat.shape[0]}), got {scores.shape}."
      )
    fold_scores = scores.astype(flat.dtype)
  else:
    fold_scores = flat[None]
  accuracies = _fold_accuracies(fold_scores, same, jnp.asarray(fold_of_pair), num_folds=num_folds)
  return jnp.mean(accuracies), jnp.std(accuracies)


def pca_fold_scores(
  a: ArrayLike,
  b: ArrayLike,
  *,
  dim: int,
  num_folds: int = 10,
  folds: ArrayLike | None = None,
) -> jax.Array:
  """Cosine scores of the pairs ``(a[p], b[p])`` after a PCA fitted on the other folds.

  For fold k, the mean and the top ``dim`` principal directions are fitted
  on the embeddings of every pair outside fold k (both members), all pairs
  are projected on them and scored by cosine similarity: row k of the result
  is fold k's scores for `verification_accuracy` (the held-out fold never
  enters its own PCA). L-Softmax (Sec. 5.4) and Noisy Softmax evaluate LFW
  with PCA on the features.

  Args:
    a: ``[num_pairs, d]`` embeddings of the pairs' first members.
    b: ``[num_pairs, d]`` embeddings of the second members.
    dim: the number of principal directions kept, ``1 <= dim <= d``.
    num_folds: consecutive folds, as `verification_accuracy`.
    folds: optional ``[num_pairs]`` fold of each pair.

  Returns:
    ``[num_folds, num_pairs]`` scores.
  """
  a, b = sharding.gathered(jnp.asarray(a)), sharding.gathered(jnp.asarray(b))
  if a.ndim != 2 or a.shape != b.shape:
    raise ValueError(f"a and b must be [num_pairs, d] alike, got {a.shape} and {b.shape}.")
  if not 1 <= int(dim) <= a.shape[1]:
    raise ValueError(f"dim must be in [1, d]=[1, {a.shape[1]}], got {dim}.")
  fold_of_pair, num_folds = _fold_of_pair(a.shape[0], num_folds, folds)
  dtype = numerics.compute_dtype(a.dtype)
  a, b = a.astype(dtype), b.astype(dtype)

  def fold_scores(k):
    train = jnp.asarray(fold_of_pair) != k
    weight = jnp.concatenate([train, train]).astype(dtype)[:, None]
    both = jnp.concatenate([a, b])
    mean = jnp.sum(weight * both, 0) / jnp.sum(weight)
    centred = (both - mean) * weight
    _, _, directions = jnp.linalg.svd(centred, full_matrices=False)
    project = lambda x: (x - mean) @ directions[: int(dim)].T
    return cosine_scores(project(a), project(b))

  return lax.map(fold_scores, jnp.arange(num_folds))
