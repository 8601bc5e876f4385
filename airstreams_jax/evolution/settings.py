"""The search's settings: `config.evolution`, the weights' names, the
config's own weighting and the proxy seed, with the checks that name the
key to fix."""

import dataclasses
import math
from typing import Any, Optional, Sequence, Tuple

from airstreams_jax.evolution import search_space

REMOVALS = ('oldest', 'worst')
STRATEGIES = ('tournament', 'halving')


@dataclasses.dataclass(frozen=True)
class Settings:
  """What decides the candidates a search proposes and how each is scored.

  The defaults are the paper's search (one proxy per candidate, no racing,
  U[0, 1], random first generation); `configs/base.py` sets this project's
  defaults.
  """
  names: Tuple[str, ...]
  population_size: int = 10
  tournament_size: int = 3
  num_evaluations: int = 100
  parallel: int = 5
  seed: int = 0
  removal: str = 'worst'
  strategy: str = 'tournament'
  proxy_steps: int = 200
  # Proxy trainings per candidate; repeat r trains with proxy_seed + r.
  proxy_repeats: int = 1
  # Extra repeats of a child before it may become the best (racing).
  race_repeats: int = 0
  # Successive halving: rungs, and the fraction 1/halving_keep that each
  # rung keeps and retrains halving_keep times longer.
  halving_rungs: int = 3
  halving_keep: int = 3
  draw: str = 'uniform'
  weight_range: Tuple[float, float] = (0.0, 1.0)
  # The config's weighting (unscaled) that joins the first generation as
  # candidate 0; None: a fully random first generation.
  initial_weights: Optional[Tuple[float, ...]] = None
  proxy_seed: int = 0  # The config's seed.
  # After the search, its confirm_top best and the config's weights train
  # in full over confirm_seeds paired seeds (confirm.py); 0: no confirmation.
  confirm_seeds: int = 0
  confirm_top: int = 3

  @classmethod
  def from_config(cls, evolution_config: Any, names: Sequence[str],
                  initial_weights: Optional[Sequence[float]] = None,
                  proxy_seed: int = 0) -> 'Settings':
    """Settings from `config.evolution`; see `check` for the limits."""
    c = evolution_config
    return cls(
        names=tuple(names), population_size=int(c.population_size),
        tournament_size=int(c.tournament_size),
        num_evaluations=int(c.num_evaluations), parallel=int(c.parallel),
        seed=int(c.seed), removal=str(c.removal), strategy=str(c.strategy),
        proxy_steps=int(c.proxy_steps), proxy_repeats=int(c.proxy_repeats),
        race_repeats=int(c.race_repeats),
        halving_rungs=int(c.halving_rungs), halving_keep=int(c.halving_keep),
        draw=str(c.draw), weight_range=tuple(c.weight_range),
        initial_weights=(None if initial_weights is None else
                         tuple(float(w) for w in initial_weights)),
        proxy_seed=int(proxy_seed),
        confirm_seeds=int(c.confirm_seeds), confirm_top=int(c.confirm_top))

  @property
  def low(self) -> float:
    return float(self.weight_range[0])

  @property
  def high(self) -> float:
    return float(self.weight_range[1])

  def check(self) -> None:
    """Raises ValueError naming the `config.evolution` key to fix."""
    def bad(key, rule):
      raise ValueError(f'config.evolution.{key}={getattr(self, key)!r} must '
                       f'be {rule}.')
    if not self.names:
      raise ValueError('The search needs at least one weight name.')
    if self.strategy not in STRATEGIES:
      bad('strategy', f'one of {STRATEGIES}')
    if self.strategy == 'tournament':
      if self.population_size < 1:
        bad('population_size', '>= 1')
      if not 1 <= self.tournament_size <= self.population_size:
        bad('tournament_size',
            f'in [1, population_size={self.population_size}]')
      if self.num_evaluations < self.population_size:
        bad('num_evaluations',
            f'>= population_size={self.population_size} (the initial '
            'population counts)')
    elif self.num_evaluations < 1:
      bad('num_evaluations', '>= 1 (the weightings of the first rung)')
    if self.parallel < 1:
      bad('parallel', '>= 1')
    if self.removal not in REMOVALS:
      bad('removal', f'one of {REMOVALS}')
    if self.proxy_repeats < 1:
      bad('proxy_repeats', '>= 1 (proxy trainings per candidate)')
    if self.race_repeats < 0:
      bad('race_repeats', '>= 0 (0: no racing)')
    if self.halving_rungs < 1:
      bad('halving_rungs', '>= 1')
    if self.halving_keep < 2:
      bad('halving_keep', '>= 2 (each rung keeps 1/halving_keep)')
    shortest = self.halving_keep ** (self.halving_rungs - 1) \
        if self.strategy == 'halving' else 1
    if self.proxy_steps < shortest:
      bad('proxy_steps', f'>= {shortest}' + (
          f" with strategy='halving' (the first of {self.halving_rungs} "
          f'rungs trains proxy_steps / {shortest} steps)'
          if shortest > 1 else ''))
    if self.confirm_seeds < 0 or self.confirm_seeds == 1:
      bad('confirm_seeds', '0 (no confirmation) or >= 2 (one seed gives no '
          'standard error)')
    if self.confirm_top < 1:
      bad('confirm_top', '>= 1 (the best weightings retrained in full)')
    if self.draw not in search_space.DRAWS:
      bad('draw', f'one of {search_space.DRAWS}')
    self._check_range()
    if self.initial_weights is not None:
      try:
        search_space.scaled_into_range(self.initial_weights, self.high)
      except ValueError as e:
        raise ValueError(f'config.evolution.start_from_config: {e}; set '
                         'it to False or give the config nonzero loss '
                         'weights.') from None

  def _check_range(self) -> None:
    r = self.weight_range
    rule = ('two numbers (low, high) with 0 <= low < high' +
            (', low > 0 for the log-uniform draw' if self.draw == 'log_uniform'
             else ''))
    ok = (len(r) == 2 and all(isinstance(x, (int, float)) and math.isfinite(x)
                              for x in r) and 0 <= r[0] < r[1])
    if not ok or (self.draw == 'log_uniform' and r[0] <= 0):
      raise ValueError(f'config.evolution.weight_range={tuple(r)!r} must be '
                       f'{rule}.')
