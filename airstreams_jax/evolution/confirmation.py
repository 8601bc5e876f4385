"""The confirmation report: did the search's weights beat the fixed ones?

Pure: given each weighting's full-training results per seed (the same seeds
for every weighting), the table of `evolution_report.md` and its verdict.
A weighting beats the fixed weights beyond noise only when the mean of its
per-seed differences to them is positive and larger than that mean's
standard error (one SE: a weak bar, and the report says so; the seeds'
shared luck cancels in each difference, which is why the seeds are paired);
below -SE it is worse beyond noise, and in between the two are a draw.
"""

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from airstreams_jax.evolution import fidelity_stats

BEATS = 'beats the fixed weights beyond noise'
DRAW = 'is a draw with the fixed weights (the difference is within its noise)'
WORSE = 'is worse than the fixed weights beyond noise'


@dataclasses.dataclass(frozen=True)
class Entry:
  """One weighting of the confirmation: `values[i]` is its full-training
  metric with seed `seeds[i]`; `proxy` its search fitness (None for the
  fixed weights)."""
  label: str
  weights: Sequence[float]
  values: Sequence[float]
  proxy: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Row:
  entry: Entry
  mean: float
  se: Optional[float]  # sd / sqrt(n); None with one seed.
  difference: Optional[fidelity_stats.PairedDifference]  # None: the fixed.
  verdict: Optional[str]  # None: the fixed weights themselves.


def verdict(difference: fidelity_stats.PairedDifference) -> str:
  """BEATS, WORSE or DRAW for the paired difference (weighting - fixed)."""
  if difference.mean > 0 and difference.mean > difference.se:
    return BEATS
  if difference.mean < 0 and -difference.mean > difference.se:
    return WORSE
  return DRAW


def _se(values: Sequence[float]) -> Optional[float]:
  if len(values) < 2:
    return None
  return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def rows(searched: Sequence[Entry], fixed: Entry) -> List[Row]:
  """The fixed weights' row first, then each searched weighting's with its
  paired difference to them.

  Raises:
    ValueError: fewer than two seeds, or entries with different numbers of
      seeds (the differences pair seed i with seed i).
  """
  n = len(fixed.values)
  for e in searched:
    if len(e.values) != n:
      raise ValueError(f'{e.label} has {len(e.values)} seeds and the fixed '
                       f'weights {n}; the comparison pairs them by seed.')
  if n < 2:
    raise ValueError(f'the confirmation needs >= 2 seeds per weighting, got '
                     f'{n}: one seed gives no standard error.')
  result = [Row(fixed, float(np.mean(fixed.values)), _se(fixed.values),
                None, None)]
  for e in searched:
    d = fidelity_stats.paired_difference(e.values, fixed.values)
    result.append(Row(e, float(np.mean(e.values)), _se(e.values), d,
                      verdict(d)))
  return result


def _percent(value: Optional[float]) -> str:
  return '—' if value is None else f'{100 * value:.2f}'


def _weights_text(weights: Sequence[float], names: Sequence[str]) -> str:
  return ', '.join(f'{n} {w:.3g}' for n, w in zip(names, weights))


def summary_sentence(table: Sequence[Row]) -> str:
  """The verdict on the search's answer: its best weighting (the first
  searched row), not the best of the confirmed ones, which would pick the
  luckiest of several on the very seeds that judge it."""
  best = table[1]
  d = best.difference
  return (f'The search\'s best weighting ({best.entry.label}) '
          f'{best.verdict}: paired difference {100 * d.mean:+.2f} ± '
          f'{100 * d.se:.2f} points (mean ± SE over {d.n} seeds).')


def report_markdown(table: Sequence[Row], names: Sequence[str], metric: str,
                    seeds: Sequence[int], title: str = '') -> str:
  """`evolution_report.md`: the sentence, then the table."""
  label = 'mAP' if metric == 'mAP' else 'top-1'
  lines = [f'# {title or "Confirmation of the evolved weights"}', '',
           summary_sentence(table), '',
           f'Full training, test split, merged-head {label} (%), seeds '
           f'{", ".join(str(s) for s in seeds)} (the same for every row). '
           'Difference: the mean over seeds of (row - fixed weights) ± its '
           'standard error; "beats beyond noise" needs it > 0 and larger '
           'than its SE (a one-SE bar: more seeds make it stricter).', '',
           f'| weights | λ ({", ".join(names)}) | proxy fitness | '
           f'{label} mean ± SE | difference vs fixed | verdict |',
           '|---|---|---|---|---|---|']
  for row in table:
    e = row.entry
    se = '' if row.se is None else f' ± {_percent(row.se)}'
    if row.difference is None:
      difference, text = '—', 'the reference'
    else:
      difference = (f'{100 * row.difference.mean:+.2f} ± '
                    f'{100 * row.difference.se:.2f}')
      text = row.verdict
    lines.append(f'| {e.label} | {_weights_text(e.weights, names)} | '
                 f'{_percent(e.proxy)} | {_percent(row.mean)}{se} | '
                 f'{difference} | {text} |')
  lines += ['', 'Per seed:', '',
            '| weights | ' + ' | '.join(f'seed {s}' for s in seeds) + ' |',
            '|---' * (len(seeds) + 1) + '|']
  for row in table:
    lines.append(f'| {row.entry.label} | ' + ' | '.join(
        _percent(v) for v in row.entry.values) + ' |')
  return '\n'.join(lines) + '\n'


def record(table: Sequence[Row], seeds: Sequence[int],
           report_file: str) -> Dict[str, Any]:
  """The verdict for `best_weights.json` (its 'confirmation' key, which
  training ignores): about the search's best, the first searched row."""
  best = table[1]
  return dict(verdict=best.verdict, beats_fixed=best.verdict == BEATS,
              candidate=best.entry.label,
              mean=best.mean, fixed_mean=table[0].mean,
              difference=best.difference.mean, difference_se=best.difference.se,
              seeds=list(seeds), report=report_file)
