"""The statistics that say how far a proxy can be trusted (pure NumPy).

For the fidelity measurement of issue 33: K weightings, each scored by the
search's proxy (R repeats) and by full training (S seeds).
  * `spearman` and `bootstrap_interval`: does the proxy rank the weightings
    as full training does? Rank correlation, with a percentile bootstrap
    interval over the weightings (pairs resampled together; a resample
    whose ranks are all tied has no correlation and is left out).
  * `variance_components`: how much of the proxies' spread is between the
    weightings (signal) and how much between repeats of one weighting
    (noise): a one-way random-effects analysis of variance.
  * `paired_difference`: weights A against weights B trained with the same
    seeds: the mean of the per-seed differences and its standard error
    (the seeds' shared luck cancels in each difference).
"""

import dataclasses
from typing import Callable, Sequence, Tuple

import numpy as np


def ranks(values: Sequence[float]) -> np.ndarray:
  """1-based ranks, ties sharing the mean of their ranks."""
  x = np.asarray(values, np.float64)
  order = np.argsort(x, kind='stable')
  sorted_x = x[order]
  # Runs of equal values: each gets the mean of the positions it spans.
  starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
  ends = np.r_[starts[1:], len(x)]
  mean_rank = (starts + ends + 1) / 2.0  # Mean of starts+1 .. ends.
  out = np.empty(len(x))
  out[order] = np.repeat(mean_rank, ends - starts)
  return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
  """Spearman's rank correlation (Pearson's of the ranks); NaN when either
  side's ranks are all tied."""
  if len(x) != len(y) or len(x) < 2:
    raise ValueError(f'spearman needs two sequences of the same length >= '
                     f'2, got {len(x)} and {len(y)}')
  rx, ry = ranks(x) - (len(x) + 1) / 2.0, ranks(y) - (len(y) + 1) / 2.0
  denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
  return float((rx * ry).sum() / denominator) if denominator > 0 else np.nan


def bootstrap_interval(x: Sequence[float], y: Sequence[float],
                       statistic: Callable[[np.ndarray, np.ndarray],
                                           float] = spearman,
                       n_resamples: int = 9999, level: float = 0.95,
                       seed: int = 0) -> Tuple[float, float]:
  """Percentile bootstrap interval of `statistic(x, y)`, resampling the
  (x, y) pairs with replacement.

  Resample b takes the pairs `rng.integers(0, n, (n_resamples, n))[b]` of
  `np.random.default_rng(seed)`, as `scipy.stats.bootstrap(..., paired=True,
  method='percentile')` does with that generator, so the two agree.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  rng = np.random.default_rng(seed)
  indices = rng.integers(0, len(x), (n_resamples, len(x)))
  values = np.array([statistic(x[i], y[i]) for i in indices])
  alpha = (1.0 - level) / 2.0
  low, high = np.nanquantile(values, [alpha, 1.0 - alpha])
  return float(low), float(high)


@dataclasses.dataclass(frozen=True)
class VarianceComponents:
  """A one-way random-effects decomposition of proxy scores [K, R].

  `within`: the variance between repeats of one weighting (noise);
  `between`: the variance of the weightings' true means (signal), estimated
  as var(means) - within / R and clipped at 0; `snr`: between / within;
  `reliability`: the share of the variance of an R-repeat mean that is
  signal, between / (between + within / R) (0: the proxy's ranking is
  noise; 1: repeats would agree); `f_statistic`: the ANOVA F."""
  between: float
  within: float
  snr: float
  reliability: float
  f_statistic: float


def variance_components(scores: np.ndarray) -> VarianceComponents:
  """Signal and noise of proxy scores, one row per weighting, one column
  per repeat (the same R repeats for every weighting)."""
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 2 or scores.shape[0] < 2 or scores.shape[1] < 2:
    raise ValueError('variance_components needs scores [K >= 2 weightings, '
                     f'R >= 2 repeats], got shape {scores.shape}')
  repeats = scores.shape[1]
  within = float(scores.var(axis=1, ddof=1).mean())
  mean_square_between = repeats * float(scores.mean(axis=1).var(ddof=1))
  between = max(0.0, (mean_square_between - within) / repeats)
  return VarianceComponents(
      between=between, within=within,
      snr=between / within if within > 0 else np.inf,
      reliability=(between / (between + within / repeats)
                   if between + within > 0 else np.nan),
      f_statistic=(mean_square_between / within if within > 0 else np.inf))


@dataclasses.dataclass(frozen=True)
class PairedDifference:
  """Mean of a - b over paired seeds, its standard error, and n."""
  mean: float
  se: float
  n: int


def paired_difference(a: Sequence[float],
                      b: Sequence[float]) -> PairedDifference:
  """a[i] and b[i] trained with the same seed i: the mean difference and
  its standard error (sd of the differences / sqrt(n))."""
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  if np.ndim(a) != 1 or len(a) != len(b) or len(d) < 2:
    raise ValueError(f'paired_difference needs two 1-D sequences of the '
                     f'same length >= 2 (one value per seed), got {len(a)} '
                     f'and {len(b)}')
  return PairedDifference(mean=float(d.mean()),
                          se=float(d.std(ddof=1) / np.sqrt(len(d))),
                          n=len(d))
