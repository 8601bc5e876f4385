"""Tournament-selection search over the loss weights, with repeats and
racing (pure Python and NumPy).

The method of the paper: a population of 10 weightings, tournaments of 3, a
child copies the tournament winner and sets ONE randomly chosen weight to a
draw from U[0, 1]; 100 evaluated weightings in total, the initial
population included. What a weighting is worth comes from outside: each
`Job` the search asks for is one proxy training (`proxy_trainer.py`;
`evolve.py` drives the search through `runner.py`).

Choices the paper leaves open, made here:
  * Removal: the least fit member leaves when a child joins (steady-state
    tournament selection with worst-removal), not the oldest ("regularised
    evolution", Real et al. 2019, `removal='oldest'`). Ageing protects long
    searches from a lucky noisy evaluation, but this search is short: on a
    smooth synthetic fitness (minus the distance to a target weighting,
    60 seeds, groups of 5) the chosen best ended at a median distance of
    0.13 from the target with worst-removal against 0.21 with ageing, and
    it stayed ahead with Gaussian noise of sd 0.05 / 0.1 / 0.2 added to the
    fitness (0.18 / 0.24 / 0.34 against 0.24 / 0.28 / 0.40). With 100
    evaluations, ageing mostly throws away good parents.
  * Batched steady state: candidates are evaluated in groups of `parallel`
    (one vmapped proxy training per group and seed). The initial
    population is cut into groups the same way; then each child of a group
    is chosen by its own tournament over the population as it stands when
    the group starts, and the population takes the group's children, in
    order, when the whole group has been evaluated (and raced). With
    `parallel=1` this is the usual sequential steady-state tournament.
  * Repeats: a candidate's fitness is the mean of `proxy_repeats` proxy
    trainings, repeat r with the proxy seed + r for every candidate
    (paired: the seeds' own luck is common to all candidates). Selection
    (tournaments, removal) uses these means.
  * Racing: one lucky draw must not crown a winner. When a group's base
    repeats are done, each of its candidates whose mean beats the current
    best's mean over the same seeds (paired) is re-evaluated with
    `race_repeats` more seeds, the same extra seeds for every raced
    candidate, before the group joins the population. The best (`best`,
    the first of `top`) is the fittest of the raced candidates, all of
    which share those proxy_repeats + race_repeats seeds; a candidate that
    was never raced cannot be it. In the first group, with no best yet,
    only its fittest candidate races.
  * Determinism: candidate k draws its randomness from
    `np.random.default_rng([seed, k])`, so the search is a pure function of
    the settings and the evaluations. That is what makes resuming exact:
    `runner.replay` answers the jobs from a history file, checks that every
    recorded candidate is the one these settings propose, and the search
    continues with the first job not yet answered.
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.evolution import search_space
from airstreams_jax.evolution import settings as settings_lib

Candidate = candidates_lib.Candidate
Evaluation = candidates_lib.Evaluation
Job = candidates_lib.Job
Settings = settings_lib.Settings
rank_key = candidates_lib.rank_key


def tournament(fitness: Sequence[Optional[float]], size: int,
               rng: np.random.Generator) -> Tuple[int, np.ndarray]:
  """Samples `size` distinct members; returns (the fittest, the sampled).

  Ties go to the member sampled first.
  """
  contestants = rng.choice(len(fitness), size=size, replace=False)
  winner = max(contestants, key=lambda i: rank_key(fitness[i]))
  return int(winner), contestants


def groups(settings: Settings) -> List[range]:
  """The candidate ids evaluated together, in order.

  The initial population and the children are cut separately into groups of
  `parallel`, so a group never mixes the two.
  """
  p, n, g = settings.population_size, settings.num_evaluations, \
      settings.parallel
  return ([range(i, min(i + g, p)) for i in range(0, p, g)] +
          [range(i, min(i + g, n)) for i in range(p, n, g)])


def initial_candidate(settings: Settings, candidate_id: int,
                      rng: np.random.Generator) -> Candidate:
  """Member `candidate_id` of a first generation: the config's weighting
  scaled into the range for candidate 0 when there is one, else a draw."""
  s = settings
  if candidate_id == 0 and s.initial_weights is not None:
    weights = search_space.scaled_into_range(s.initial_weights, s.high)
  else:
    weights = tuple(float(w) for w in search_space.draw(
        rng, s.draw, s.low, s.high, len(s.names)))
  return Candidate(candidate_id, weights)


def sort_key(candidate: Candidate) -> Tuple[float, int]:
  """Fittest first, earlier ids first on ties."""
  return (-rank_key(candidate.fitness), candidate.id)


class Search:
  """A tournament search: its history, population and the jobs it waits for.

  Usage: `runner.run(search, evaluate)`, or by hand
  `while not s.done: s.record(answers to s.pending())`.
  """

  def __init__(self, settings: Settings):
    settings.check()
    self.settings = settings
    self._candidates: Dict[int, Candidate] = {}  # Proposed so far, by id.
    self.population: List[Candidate] = []  # Oldest first.
    self._groups = groups(settings)
    self._group_index = 0
    self._racing: List[int] = []  # Ids raced in the current group.
    self._stage = 'base'
    self._propose_group()

  @property
  def done(self) -> bool:
    return self._group_index >= len(self._groups)

  @property
  def history(self) -> List[Candidate]:
    """Every candidate with at least one evaluation, by id."""
    return [c for _, c in sorted(self._candidates.items()) if c.evaluations]

  @property
  def crown_repeats(self) -> int:
    """The repeats a candidate needs before it can be the best."""
    return self.settings.proxy_repeats + self.settings.race_repeats

  def pending(self) -> List[Job]:
    """The proxy trainings still to do before the search can move on
    (empty when done), repeat by repeat."""
    if self.done:
      return []
    s = self.settings
    if self._stage == 'base':
      ids, repeats = self._groups[self._group_index], range(s.proxy_repeats)
    else:
      ids, repeats = self._racing, range(s.proxy_repeats, self.crown_repeats)
    return [Job(self._candidates[i], r, s.proxy_seed + r, s.proxy_steps)
            for r in repeats for i in ids
            if self._candidates[i].evaluation(r) is None]

  def record(self, answers: Sequence[Tuple[Job, Evaluation]]) -> None:
    """Adds the evaluations of pending jobs (any order, any subset)."""
    candidates_lib.add_evaluations(self._candidates, self.pending, answers)
    if not self.done and not self.pending():
      self._next_stage()

  def best(self) -> Candidate:
    return self.top(1)[0]

  def top(self, k: int) -> List[Candidate]:
    """The k fittest candidates: the raced ones by their mean over their
    shared seeds first, then the others (earlier ids first on ties)."""
    crowned = [c for c in self.history if self._can_crown(c)]
    others = [c for c in self.history if not self._can_crown(c)]
    return (sorted(crowned, key=sort_key) + sorted(others, key=sort_key))[:k]

  def _can_crown(self, candidate: Candidate) -> bool:
    return len(candidate.at_rung(0)) >= self.crown_repeats

  def _next_stage(self) -> None:
    if self._stage == 'base':
      self._racing = self._to_race()
      if self._racing:
        self._stage = 'race'
        return
    self._finish_group()

  def _to_race(self) -> List[int]:
    """The group's candidates that would become the best: their mean over
    the base seeds beats the best's over the same seeds."""
    if not self.settings.race_repeats:
      return []
    group = [self._candidates[i] for i in self._groups[self._group_index]]
    base = lambda c: rank_key(c.mean_of(0, self.settings.proxy_repeats))
    crowned = [c for c in self.history if self._can_crown(c)]
    if not crowned:  # No best yet: the group's fittest races.
      fittest = max(group, key=lambda c: (base(c), -c.id))
      return [fittest.id] if math.isfinite(base(fittest)) else []
    bar = base(min(crowned, key=sort_key))
    return [c.id for c in group if base(c) > bar]

  def _finish_group(self) -> None:
    for candidate_id in self._groups[self._group_index]:
      self.population.append(self._candidates[candidate_id])
      if len(self.population) > self.settings.population_size:
        if self.settings.removal == 'oldest':
          del self.population[0]
        else:  # The least fit; the oldest of equally unfit ones.
          worst = min(range(len(self.population)),
                      key=lambda i: rank_key(self.population[i].fitness))
          del self.population[worst]
    self._group_index += 1
    self._stage, self._racing = 'base', []
    self._propose_group()

  def _propose_group(self) -> None:
    if not self.done:
      for i in self._groups[self._group_index]:
        self._candidates[i] = self._propose(i)

  def _propose(self, candidate_id: int) -> Candidate:
    s = self.settings
    rng = np.random.default_rng([s.seed, candidate_id])
    if candidate_id < s.population_size:
      return initial_candidate(s, candidate_id, rng)
    winner, _ = tournament([c.fitness for c in self.population],
                           min(s.tournament_size, len(self.population)), rng)
    parent = self.population[winner]
    weights, mutated = search_space.mutate(parent.weights, rng, s.draw, s.low,
                                           s.high)
    return Candidate(candidate_id, weights, parent=parent.id, mutated=mutated,
                     generation=parent.generation + 1)
