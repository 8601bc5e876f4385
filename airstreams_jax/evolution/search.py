"""Tournament-selection search over the loss weights (pure Python and NumPy).

The method of the paper: a population of 10 weightings, tournaments of 3, a
child copies the tournament winner and sets ONE randomly chosen weight to a
draw from U[0, 1]; 100 evaluated weightings in total, the initial (uniformly
random) population included. What a weighting is worth (its fitness) comes
from outside: `proxy_trainer.py` trains a short proxy model with it
(`evolve.py` drives the search).

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
    (one vmapped proxy training per group). The initial population is cut
    into groups the same way; then each child of a group is chosen by its
    own tournament over the population as it stands when the group starts,
    and the population takes the group's children, in order, when the whole
    group has been evaluated. With `parallel=1` this is the usual sequential
    steady-state tournament; larger groups trade a little selection
    freshness for running candidates side by side.
  * Determinism: candidate k draws its randomness from
    `np.random.default_rng([seed, k])`, so the search is a pure function of
    the settings and the fitness values. That is what makes resuming exact:
    replaying a history file rebuilds the population, checks that every
    recorded candidate is the one these settings propose, and continues with
    the first candidate not yet evaluated.
"""

import dataclasses
import json
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

HISTORY_FILE = 'evolution_history.jsonl'
REMOVALS = ('oldest', 'worst')


@dataclasses.dataclass(frozen=True)
class Settings:
  """The search's settings (`config.evolution` plus the weights' names)."""
  names: Tuple[str, ...]
  population_size: int = 10
  tournament_size: int = 3
  num_evaluations: int = 100
  parallel: int = 5
  seed: int = 0
  removal: str = 'worst'

  @classmethod
  def from_config(cls, evolution_config: Any,
                  names: Sequence[str]) -> 'Settings':
    """Settings from `config.evolution`; see `check` for the limits."""
    c = evolution_config
    return cls(names=tuple(names), population_size=int(c.population_size),
               tournament_size=int(c.tournament_size),
               num_evaluations=int(c.num_evaluations),
               parallel=int(c.parallel), seed=int(c.seed),
               removal=str(c.removal))

  def check(self) -> None:
    """Raises ValueError naming the `config.evolution` key to fix."""
    def bad(key, rule):
      raise ValueError(f'config.evolution.{key}={getattr(self, key)!r} must '
                       f'be {rule}.')
    if not self.names:
      raise ValueError('The search needs at least one weight name.')
    if self.population_size < 1:
      bad('population_size', '>= 1')
    if not 1 <= self.tournament_size <= self.population_size:
      bad('tournament_size', f'in [1, population_size={self.population_size}]')
    if self.num_evaluations < self.population_size:
      bad('num_evaluations',
          f'>= population_size={self.population_size} (the initial '
          'population counts)')
    if self.parallel < 1:
      bad('parallel', '>= 1')
    if self.removal not in REMOVALS:
      bad('removal', f'one of {REMOVALS}')


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One weighting: `weights` in `Settings.names` order.

  `parent` is the id of the tournament winner it copies (None for the
  initial population), `mutated` the index of the weight it redrew,
  `generation` its parent's plus one (0 for the initial population);
  `fitness` is None until evaluated.
  """
  id: int
  weights: Tuple[float, ...]
  parent: Optional[int] = None
  mutated: Optional[int] = None
  generation: int = 0
  fitness: Optional[float] = None

  def with_fitness(self, fitness: float) -> 'Candidate':
    return dataclasses.replace(self, fitness=float(fitness))

  def weights_dict(self, names: Sequence[str]) -> Dict[str, float]:
    return dict(zip(names, self.weights))

  def to_json(self, names: Sequence[str]) -> str:
    """One line of the history file."""
    return json.dumps({
        'id': self.id, 'fitness': self.fitness,
        'weights': self.weights_dict(names), 'parent': self.parent,
        'mutated': None if self.mutated is None else names[self.mutated],
        'generation': self.generation})

  @classmethod
  def from_json(cls, line: str, names: Sequence[str]) -> 'Candidate':
    """Parses a line written by `to_json`; KeyError/ValueError if malformed."""
    d = json.loads(line)
    weights = d['weights']
    if set(weights) != set(names):
      raise ValueError(f'weights need the keys {tuple(names)}, got '
                       f'{sorted(weights)}')
    mutated = d['mutated']
    return cls(id=int(d['id']),
               weights=tuple(float(weights[n]) for n in names),
               parent=None if d['parent'] is None else int(d['parent']),
               mutated=None if mutated is None else list(names).index(mutated),
               generation=int(d['generation']),
               fitness=float(d['fitness']))


def rank_key(fitness: Optional[float]) -> float:
  """Sort key of a fitness: higher is better; NaN and None rank last."""
  if fitness is None or math.isnan(fitness):
    return -math.inf
  return fitness


def tournament(fitness: Sequence[float], size: int,
               rng: np.random.Generator) -> Tuple[int, np.ndarray]:
  """Samples `size` distinct members; returns (the fittest, the sampled).

  Ties go to the member sampled first.
  """
  contestants = rng.choice(len(fitness), size=size, replace=False)
  winner = max(contestants, key=lambda i: rank_key(fitness[i]))
  return int(winner), contestants


def mutate(weights: Sequence[float],
           rng: np.random.Generator) -> Tuple[Tuple[float, ...], int]:
  """Sets one uniformly chosen weight to a U[0, 1) draw: (weights, index)."""
  index = int(rng.integers(len(weights)))
  child = list(weights)
  child[index] = float(rng.uniform(0.0, 1.0))
  return tuple(child), index


def groups(settings: Settings) -> List[range]:
  """The candidate ids evaluated together, in order.

  The initial population and the children are cut separately into groups of
  `parallel`, so a group never mixes the two.
  """
  p, n, g = settings.population_size, settings.num_evaluations, \
      settings.parallel
  return ([range(i, min(i + g, p)) for i in range(0, p, g)] +
          [range(i, min(i + g, n)) for i in range(p, n, g)])


class Search:
  """The search's state: history, population, and the group being evaluated.

  Usage: `while not s.done: s.record(evaluate(s.pending()))`, or `run`.
  """

  def __init__(self, settings: Settings, history: Sequence[Candidate] = ()):
    """Starts a search, or resumes one from its evaluated candidates.

    Args:
      settings: the search settings (checked here).
      history: candidates already evaluated, by id from 0 (e.g. read back
        with `parse_history`); they are not evaluated again.

    Raises:
      ValueError: bad settings, or a history these settings did not write.
    """
    settings.check()
    self.settings = settings
    self.history: List[Candidate] = []
    self.population: List[Candidate] = []  # Oldest first.
    self._groups = groups(settings)
    self._group_index = 0
    self._group: List[Candidate] = []
    self._propose_group()
    self._replay(history)

  @property
  def done(self) -> bool:
    return self._group_index >= len(self._groups)

  def pending(self) -> List[Candidate]:
    """The current group's candidates still to evaluate (empty when done)."""
    return self._group[len(self.history) - self._group[0].id:] \
        if self._group else []

  def record(self, evaluated: Sequence[Candidate]) -> None:
    """Adds evaluated candidates: the next ones of `pending()`, in order."""
    for candidate in evaluated:
      expected = self.pending()
      if not expected or candidate.fitness is None or (
          dataclasses.replace(candidate, fitness=None) != expected[0]):
        raise ValueError(f'Recorded candidate {candidate} is not the next '
                         f'pending one, {expected[:1]}, or has no fitness.')
      self.history.append(candidate)
      if len(self.pending()) == 0:
        self._finish_group()

  def best(self) -> Candidate:
    return self.top(1)[0]

  def top(self, k: int) -> List[Candidate]:
    """The k fittest evaluated candidates (earlier ids first on ties)."""
    return sorted(self.history, key=lambda c: (-rank_key(c.fitness), c.id))[:k]

  def _finish_group(self) -> None:
    for candidate in self._group:
      self.population.append(self.history[candidate.id])
      if len(self.population) > self.settings.population_size:
        if self.settings.removal == 'oldest':
          del self.population[0]
        else:  # The least fit; the oldest of equally unfit ones.
          worst = min(range(len(self.population)),
                      key=lambda i: rank_key(self.population[i].fitness))
          del self.population[worst]
    self._group_index += 1
    self._propose_group()

  def _propose_group(self) -> None:
    self._group = ([] if self.done else
                   [self._propose(i) for i in self._groups[self._group_index]])

  def _propose(self, candidate_id: int) -> Candidate:
    s = self.settings
    rng = np.random.default_rng([s.seed, candidate_id])
    if candidate_id < s.population_size:
      return Candidate(candidate_id, tuple(
          float(w) for w in rng.uniform(0.0, 1.0, len(s.names))))
    winner, _ = tournament([c.fitness for c in self.population],
                           min(s.tournament_size, len(self.population)), rng)
    parent = self.population[winner]
    weights, mutated = mutate(parent.weights, rng)
    return Candidate(candidate_id, weights, parent=parent.id, mutated=mutated,
                     generation=parent.generation + 1)

  def _replay(self, history: Sequence[Candidate]) -> None:
    for position, candidate in enumerate(history):
      expected = self.pending()
      if candidate.id != position:
        raise ValueError(f'the history lists candidate {candidate.id} at '
                         f'position {position}; ids must run 0, 1, 2, ...')
      if not expected:
        raise ValueError(f'the history has {len(history)} candidates, more '
                         'than config.evolution.num_evaluations='
                         f'{self.settings.num_evaluations}.')
      if dataclasses.replace(candidate, fitness=None) != expected[0]:
        raise ValueError(
            f'candidate {candidate.id} of the history is not the one these '
            'settings propose (it was written with another seed, population, '
            'tournament, parallel or removal setting): use the settings it '
            'was written with, or another workdir.')
      self.record([candidate])


def run(search: Search,
        evaluate: Callable[[List[Candidate]], Sequence[float]],
        on_group_done: Optional[Callable[[Search, List[Candidate]],
                                         None]] = None) -> List[Candidate]:
  """Evaluates the pending groups until the search is done.

  Args:
    search: a new or resumed search.
    evaluate: fitness of each candidate of a group (higher is better).
    on_group_done: called after each group with the search and the group's
      evaluated candidates (e.g. to save the history).

  Returns:
    The full history.
  """
  while not search.done:
    group = search.pending()
    fitness = list(evaluate(group))
    if len(fitness) != len(group):
      raise ValueError(f'evaluate returned {len(fitness)} values for '
                       f'{len(group)} candidates.')
    evaluated = [c.with_fitness(f) for c, f in zip(group, fitness)]
    search.record(evaluated)
    if on_group_done is not None:
      on_group_done(search, evaluated)
  return search.history


def format_history(history: Sequence[Candidate],
                   names: Sequence[str]) -> str:
  """The history file's text: one JSON line per evaluated candidate."""
  return ''.join(c.to_json(names) + '\n' for c in history)


def parse_history(text: str, names: Sequence[str]) -> List[Candidate]:
  """Reads a history file's text.

  Raises:
    ValueError: naming the first malformed line.
  """
  history = []
  for number, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    try:
      history.append(Candidate.from_json(line, names))
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(f'line {number} is not a candidate record ({e!r}): '
                       f'{line[:120]!r}') from None
  return history
