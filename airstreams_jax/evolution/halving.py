"""Successive halving over the loss weights (pure Python and NumPy).

`evolution.strategy='halving'`: many short proxies, the best of them
retrained longer. Rung 0 scores `num_evaluations` weightings (the config's
own first when there is one, then draws; the same first generation as a
tournament with that population) with proxies of proxy_steps / keep^(K-1)
steps; each rung keeps the best 1/keep (at least one) by their mean over
the shared seeds and retrains them from scratch, keep times longer, with
the learning-rate schedule fitted to the new length; the last rung trains
`proxy_steps` steps. Every rung costs about the same, so K rungs cost K
full-length rungs of num_evaluations / keep^(K-1) candidates: with K = 3
and keep = 3, 27 weightings are ranked for the price of 9 full proxies (Li
et al., "Hyperband", JMLR 2018, one bracket; Jamieson & Talwalkar 2016).

The answer is the fittest candidate of the last rung; a candidate that
survived more rungs ranks before any that survived fewer (its fitness is
at a longer proxy). There is no racing here: the last rung is already a
re-evaluation of the few candidates that were best at shorter lengths.
Determinism and resuming are as in `tournament.py`.
"""

import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.evolution import settings as settings_lib
from airstreams_jax.evolution import tournament

Candidate = candidates_lib.Candidate
Evaluation = candidates_lib.Evaluation
Job = candidates_lib.Job
Settings = settings_lib.Settings
rank_key = candidates_lib.rank_key


def rung_sizes(settings: Settings) -> List[int]:
  """How many candidates each rung trains."""
  return [max(1, math.ceil(settings.num_evaluations /
                           settings.halving_keep ** k))
          for k in range(settings.halving_rungs)]


def rung_steps(settings: Settings) -> List[int]:
  """Each rung's proxy length, the last one `proxy_steps`."""
  k_last = settings.halving_rungs - 1
  return [max(1, round(settings.proxy_steps /
                       settings.halving_keep ** (k_last - k)))
          for k in range(settings.halving_rungs)]


def planned_steps(settings: Settings) -> int:
  """Proxy training steps the whole search takes (a tournament without
  racing takes num_evaluations * proxy_repeats * proxy_steps)."""
  return settings.proxy_repeats * sum(
      n * s for n, s in zip(rung_sizes(settings), rung_steps(settings)))


class Search:
  """Successive halving with the interface of `tournament.Search`."""

  def __init__(self, settings: Settings):
    settings.check()
    self.settings = settings
    self._sizes, self._steps = rung_sizes(settings), rung_steps(settings)
    self._candidates: Dict[int, Candidate] = {}
    for i in range(settings.num_evaluations):
      rng = np.random.default_rng([settings.seed, i])
      self._candidates[i] = tournament.initial_candidate(settings, i, rng)
    self._rung = 0
    self._members = list(range(settings.num_evaluations))
    self._group_start = 0

  @property
  def done(self) -> bool:
    return self._rung >= len(self._sizes)

  @property
  def history(self) -> List[Candidate]:
    return [c for _, c in sorted(self._candidates.items()) if c.evaluations]

  def pending(self) -> List[Job]:
    """The current group's proxy trainings at the current rung."""
    if self.done:
      return []
    s = self.settings
    ids = self._members[self._group_start:self._group_start + s.parallel]
    return [Job(self._candidates[i], r, s.proxy_seed + r,
                self._steps[self._rung], self._rung)
            for r in range(s.proxy_repeats) for i in ids
            if self._candidates[i].evaluation(r, self._rung) is None]

  def record(self, answers: Sequence[Tuple[Job, Evaluation]]) -> None:
    """Adds the evaluations of pending jobs (any order, any subset)."""
    candidates_lib.add_evaluations(self._candidates, self.pending, answers)
    if not self.done and not self.pending():
      self._group_start += self.settings.parallel
      if self._group_start >= len(self._members):
        self._next_rung()

  def _next_rung(self) -> None:
    ranked = sorted(self._members, key=lambda i: (
        -rank_key(self._candidates[i].mean_of(self._rung)), i))
    self._rung += 1
    self._group_start = 0
    if not self.done:
      # In id order, so a rung's groups do not depend on ties in ranking.
      self._members = sorted(ranked[:self._sizes[self._rung]])

  def best(self) -> Candidate:
    return self.top(1)[0]

  def top(self, k: int) -> List[Candidate]:
    """The k fittest: the furthest rung first, then the mean there."""
    return sorted(self.history, key=lambda c: (
        -c.top_rung, -rank_key(c.fitness), c.id))[:k]
