"""Paired statistics over seeds: seed s gives every loss of a table the same
initialisation and data order, so losses are compared seed by seed."""

from __future__ import annotations

import math

import numpy as np

MIN_SEEDS = 3  # the protocol's minimum for a verdict

# Two-sided 95% quantiles of Student's t, by degrees of freedom.
_T975 = {
  1: 12.706,
  2: 4.303,
  3: 3.182,
  4: 2.776,
  5: 2.571,
  6: 2.447,
  7: 2.365,
  8: 2.306,
  9: 2.262,
  10: 2.228,
}


def mean_sd(values) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof 1; 0 for one value)."""
  values = np.asarray(values, float)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def paired_difference(run: dict[int, float], baseline: dict[int, float]):
  """Mean of ``run[s] - baseline[s]`` over the seeds both have, with its 95%
  confidence interval (Student's t); ``None`` with fewer than 2 pairs.

  Returns:
    ``(mean, low, high, n)``.
  """
  seeds = sorted(set(run) & set(baseline))
  if len(seeds) < 2:
    return None
  diffs = np.array([run[s] - baseline[s] for s in seeds], float)
  mean, sd = mean_sd(diffs)
  half = _T975[len(diffs) - 1] * sd / math.sqrt(len(diffs))
  return mean, mean - half, mean + half, len(diffs)


def scaled_effect(baseline_error: float, paper_baseline: float, paper_run: float) -> float:
  """The paper's effect carried to this baseline: its relative change of the
  error, ``paper_run / paper_baseline - 1``, times ``baseline_error``."""
  return baseline_error * (paper_run / paper_baseline - 1.0)


def verdict(difference, *, expected: str = "lower", paper_effect=None, fit_gap=None) -> str:
  """The label of a paired difference ``(mean, low, high, n)`` of test errors.

  When the interval excludes 0 in the paper's direction (``expected`` lower
  or higher than the baseline) it is set against ``paper_effect``, the
  paper's own difference scaled to this baseline (`scaled_effect`):
  ``"reproduced"`` when the interval holds it, ``"direction reproduced,
  effect smaller than the paper's"`` or ``"reproduced, effect larger than the
  paper's"`` when it lies outside, ``"direction reproduced"`` when no paper
  number is given. When it excludes 0 the other way the run either did not
  fit its training set (``"not trained to fit"``: ``fit_gap``, its paired
  excess of training error, is at least its excess of test error, so the
  test error says nothing about generalisation) or ``"contradicted"``.
  Otherwise ``"not resolved with n seeds"``; no verdict from fewer than
  `MIN_SEEDS` pairs (two equal differences, which test errors on a
  10,000-image test set often are, give a zero-width interval)."""
  if difference is None or difference[3] < MIN_SEEDS:
    return f"fewer than {MIN_SEEDS} paired seeds"
  mean, low, high, n = difference
  sign = 1.0 if expected == "lower" else -1.0  # flips "higher" onto "lower"
  mean, (low, high) = sign * mean, sorted((sign * low, sign * high))
  if high < 0:
    if paper_effect is None:
      return "direction reproduced"
    effect = sign * paper_effect
    if effect < low:
      return "direction reproduced, effect smaller than the paper's"
    if effect > high:
      return "reproduced, effect larger than the paper's"
    return "reproduced"
  if low > 0:
    not_fit = fit_gap is not None and sign * fit_gap >= mean
    return "not trained to fit" if not_fit else "contradicted"
  return f"not resolved with {n} seeds"
