"""How well the search's proxies predict full training (pure).

The measurement of `python -m airstreams_jax.tools.fidelity`: K weightings
(the config's, uniform, λ_merged alone, then random ones drawn as the
search draws them), each scored by the search's proxy (R repeats, proxy
seed config.seed + r, at one or more proxy lengths) and by full training
(S seeds, test split). For each proxy length, the report gives Spearman's
ρ between the weightings' mean proxy fitness and their mean full-training
top-1 with a bootstrap interval over the weightings, and the proxies'
between- and within-weighting variance (fidelity_stats.py). A proxy that
ranks as full training does (ρ near 1) makes the search worth its compute;
a ρ near 0 means the search ranks noise, whatever its repeats.

This module plans the weightings, keeps the proxies' results (one JSON
line per proxy training, so a killed measurement keeps what it trained) and
writes the report from the numbers; the command trains.
"""

import dataclasses
import json
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.evolution import fidelity_stats
from airstreams_jax.evolution import full_runs
from airstreams_jax.evolution import search_space

PLAN_FILE = 'fidelity_plan.json'
PROXIES_FILE = 'fidelity_proxies.jsonl'
REPORT_JSON = 'fidelity.json'
REPORT_MD = 'fidelity.md'
FIGURE_FILE = 'fidelity.png'
RUNS_DIR = 'full'  # WORKDIR/full/<label>_s<seed>: the full trainings.
MIN_WEIGHTINGS = 3  # Below 3, every pair of rankings has ρ = ±1.


@dataclasses.dataclass(frozen=True)
class Weighting:
  label: str
  weights: Tuple[float, ...]


def _ratios(weights: Sequence[float]) -> Tuple[float, ...]:
  """The weighting up to scale (the same under Adam; search_space.py)."""
  w = np.asarray(weights, np.float64)
  return tuple(np.round(w / w.max(), 9)) if w.max() > 0 else tuple(w)


def weightings(config_weights: Sequence[float], k: int, draw: str,
               low: float, high: float, seed: int,
               merged_index: int = 3) -> List[Weighting]:
  """K weightings: the config's, uniform (all 1), λ_merged alone, then
  random ones drawn by `search_space.draw` from `seed`, leaving out any
  that is another's multiple. The random ones come from one generator in
  order, so a larger K keeps the first K's weightings (and their results).
  """
  n = len(config_weights)
  merged = [0.0] * n
  merged[merged_index] = 1.0
  fixed = [('config', tuple(float(w) for w in config_weights)),
           ('uniform', (1.0,) * n), ('merged_only', tuple(merged))]
  out, seen = [], set()
  for label, weights in fixed:
    if _ratios(weights) not in seen and len(out) < k:
      seen.add(_ratios(weights))
      out.append(Weighting(label, weights))
  rng = np.random.default_rng(seed)
  number = 0
  while len(out) < k:
    weights = tuple(float(w) for w in search_space.draw(rng, draw, low, high,
                                                        n))
    if max(weights) > 0 and _ratios(weights) not in seen:
      seen.add(_ratios(weights))
      out.append(Weighting(f'random_{number}', weights))
    number += 1
  return out


@dataclasses.dataclass(frozen=True)
class ProxyScore:
  """One proxy training: `label` trained `steps` steps with proxy seed
  `seed` (repeat `repeat`); `fitness` None when not finite."""
  steps: int
  label: str
  repeat: int
  seed: int
  fitness: Optional[float]
  count: Optional[int] = None

  @property
  def key(self) -> Tuple[int, str, int]:
    return (self.steps, self.label, self.repeat)


def format_proxies(scores: Sequence[ProxyScore]) -> str:
  return ''.join(json.dumps(dataclasses.asdict(s)) + '\n' for s in scores)


def _proxy_from_json(line: str) -> ProxyScore:
  d = json.loads(line)
  return ProxyScore(int(d['steps']), str(d['label']), int(d['repeat']),
                    int(d['seed']),
                    None if d['fitness'] is None else float(d['fitness']),
                    None if d.get('count') is None else int(d['count']))


def parse_proxies(text: str) -> List[ProxyScore]:
  """Reads the proxies file.

  Raises:
    ValueError: naming the first malformed line.
  """
  return candidates_lib.parse_lines(text, _proxy_from_json, 'a proxy record')


def merge_plans(stored: Optional[Mapping[str, Any]],
                plan: Mapping[str, Any]) -> List[str]:
  """What forbids reusing a workdir's results: the keys of the training
  (config) that differ, and labels whose weights differ. Growing K, R, S or
  the proxy lengths is fine: their results are added."""
  if stored is None:
    return []
  problems = [f'config.{k}' for k in
              full_runs.differences(stored.get('training'),
                                    plan['training'])]
  new = dict(plan['weightings'])
  for label, weights in stored.get('weightings', []):
    if label in new and [float(w) for w in weights] != list(new[label]):
      problems.append(f'the weights of {label}')
  return problems


def _mean_se(values: Sequence[Optional[float]]) -> Tuple[float, float]:
  v = np.asarray([np.nan if x is None else x for x in values], np.float64)
  se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan
  return float(v.mean()), se


def _finite(x: float) -> Optional[float]:
  return float(x) if x is not None and math.isfinite(x) else None


def summarize(labels: Sequence[str],
              proxies: Mapping[int, Mapping[str, Sequence[Optional[float]]]],
              full: Mapping[str, Sequence[float]],
              n_resamples: int = 9999, seed: int = 0) -> Dict[str, Any]:
  """The report's numbers.

  Args:
    labels: the weightings, in order.
    proxies: {proxy steps: {label: fitness of each repeat}}.
    full: {label: full-training metric of each seed}.

  Returns:
    {'weightings': {label: full mean/se}, 'full_variance': components over
    the seeds (None with one seed), 'lengths': [per proxy length: steps,
    spearman, interval, variance components, each label's proxy mean/se]};
    NaN is written as None.
  """
  full_means = [_mean_se(full[l])[0] for l in labels]
  out: Dict[str, Any] = {
      'weightings': {l: dict(zip(('mean', 'se'), map(_finite,
                                                     _mean_se(full[l]))))
                     for l in labels},
      'full_variance': None, 'lengths': []}
  if min(len(full[l]) for l in labels) >= 2:
    out['full_variance'] = _components(
        [full[l][:min(len(full[m]) for m in labels)] for l in labels])
  for steps in sorted(proxies):
    scores = proxies[steps]
    means = [_mean_se(scores[l])[0] for l in labels]
    usable = all(math.isfinite(m) for m in means + full_means)
    rho = fidelity_stats.spearman(means, full_means) if usable else math.nan
    interval = (fidelity_stats.bootstrap_interval(
        means, full_means, n_resamples=n_resamples, seed=seed)
                if usable else (math.nan, math.nan))
    repeats = min(len(scores[l]) for l in labels)
    out['lengths'].append(dict(
        steps=int(steps), spearman=_finite(rho),
        interval=[_finite(x) for x in interval],
        variance=(_components([scores[l][:repeats] for l in labels])
                  if repeats >= 2 else None),
        proxy={l: dict(zip(('mean', 'se'), map(_finite,
                                               _mean_se(scores[l]))))
               for l in labels}))
  return out


def _components(rows: Sequence[Sequence[Optional[float]]]
                ) -> Optional[Dict[str, Optional[float]]]:
  values = np.asarray([[np.nan if x is None else x for x in r] for r in rows],
                      np.float64)
  if not np.isfinite(values).all():
    return None  # A diverged training: no honest decomposition.
  c = fidelity_stats.variance_components(values)
  return {k: _finite(v) for k, v in dataclasses.asdict(c).items()}


def best_length(summary: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
  """The proxy length whose ranking agrees best with full training."""
  ranked = [l for l in summary['lengths'] if l['spearman'] is not None]
  return max(ranked, key=lambda l: (l['spearman'], -l['steps'])) \
      if ranked else None


def _number(value: Optional[float], digits: int = 3) -> str:
  return '—' if value is None else f'{value:.{digits}f}'


def _percent(stat: Mapping[str, Optional[float]]) -> str:
  if stat['mean'] is None:
    return '—'
  se = '' if stat['se'] is None else f' ± {100 * stat["se"]:.2f}'
  return f'{100 * stat["mean"]:.2f}{se}'


def report_markdown(summary: Mapping[str, Any],
                    plan: Sequence[Weighting], names: Sequence[str],
                    metric: str, repeats: int, seeds: int,
                    full_steps: int) -> str:
  """fidelity.md: the verdict on each proxy length, then the numbers."""
  label = 'mAP' if metric == 'mAP' else 'top-1'
  best = best_length(summary)
  lines = ['# Proxy fidelity', '',
           f'{len(plan)} weightings, each scored by the search\'s proxy '
           f'({repeats} repeats per length) and by full training '
           f'({full_steps} steps, {seeds} seeds, test split, merged-head '
           f'{label}). ρ: Spearman\'s rank correlation between the mean '
           f'proxy fitness and the mean full {label} over the weightings, '
           'with a 95 % percentile bootstrap interval (weightings '
           'resampled). SNR: between-weighting over within-weighting '
           '(repeat) variance of the proxies; reliability: the share of '
           f'signal in a mean of {repeats} repeats.', '']
  if best is not None:
    lines += [f'Best proxy length here: {best["steps"]} steps, ρ = '
              f'{best["spearman"]:.2f} [{_number(best["interval"][0], 2)}, '
              f'{_number(best["interval"][1], 2)}].', '']
  lines += ['| proxy steps | ρ | 95 % interval | between | within | SNR | '
            'reliability |', '|---|---|---|---|---|---|---|']
  for l in summary['lengths']:
    v = l['variance'] or {}
    lines.append(
        f'| {l["steps"]} | {_number(l["spearman"], 2)} | '
        f'[{_number(l["interval"][0], 2)}, {_number(l["interval"][1], 2)}] '
        f'| {_number(v.get("between"), 5)} | {_number(v.get("within"), 5)} '
        f'| {_number(v.get("snr"), 2)} | {_number(v.get("reliability"), 2)} '
        '|')
  full_v = summary['full_variance']
  if full_v:
    lines += ['', f'Full training itself: between {full_v["between"]:.5f}, '
              f'within (seeds) {full_v["within"]:.5f}, SNR '
              f'{_number(full_v["snr"], 2)}: its own noise bounds how well '
              'any proxy can agree with it.']
  lines += ['', f'Per weighting ({label} %, mean ± SE):', '',
            f'| weighting | λ ({", ".join(names)}) | full | ' + ' | '.join(
                f'proxy {l["steps"]}' for l in summary['lengths']) + ' |',
            '|---' * (3 + len(summary['lengths'])) + '|']
  for w in plan:
    cells = [_percent(l['proxy'][w.label]) for l in summary['lengths']]
    lines.append(f'| {w.label} | ' + ', '.join(f'{x:.3g}' for x in w.weights)
                 + f' | {_percent(summary["weightings"][w.label])} | '
                 + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'
