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


def verdict(difference, *, expected: str = "lower") -> str:
  """``"reproduced"`` when the interval excludes 0 in the paper's direction
  (``expected`` lower or higher than the baseline), ``"contradicted"`` when it
  excludes 0 the other way, else ``"not resolved with n seeds"``; no verdict
  from fewer than `MIN_SEEDS` pairs (two equal differences, which test errors
  on a 10,000-image test set often are, give a zero-width interval)."""
  if difference is None or difference[3] < MIN_SEEDS:
    return f"fewer than {MIN_SEEDS} paired seeds"
  _, low, high, n = difference
  if (high < 0) if expected == "lower" else (low > 0):
    return "reproduced"
  if (low > 0) if expected == "lower" else (high < 0):
    return "contradicted"
  return f"not resolved with {n} seeds"
