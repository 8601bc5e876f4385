"""A searched weighting, its proxy evaluations, and the history file.

A candidate's fitness is not one number but the mean of its evaluations:
proxy trainings that differ in initialisation and batch order (repeat r
trains with the config's seed + r, the same seeds for every candidate, so
two candidates' means differ by the weighting and not by the seeds they
drew). Each evaluation also keeps how many held-out examples scored it, so
the history can say how much of the spread is the holdout's own binomial
noise, which repeats on the same holdout cannot average away.

The history file holds one JSON line per candidate with every evaluation;
the summary fields (`fitness`, `se`, `holdout_se`) are written for readers
and recomputed from the evaluations when the file is read back.
"""

import dataclasses
import json
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HISTORY_FILE = 'evolution_history.jsonl'


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """One proxy training of a candidate.

  `repeat` r trained with proxy seed `seed` (the config's seed + r; None
  in a history from before repeats, which trained with the config's seed
  alone); `rung`
  is the proxy length's index (0 in a tournament; successive halving
  retrains survivors at longer rungs); `fitness` is None when not finite;
  `count` is the number of held-out examples (None: unknown, or mAP, which
  has no binomial error).
  """
  repeat: int
  seed: Optional[int]
  fitness: Optional[float]
  rung: int = 0
  count: Optional[int] = None
  steps: Optional[int] = None  # The proxy's length (None: not recorded).

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Dict[str, Any]) -> 'Evaluation':
    fitness = d['fitness']
    seed = d.get('seed')
    return cls(repeat=int(d['repeat']),
               seed=None if seed is None else int(seed),
               fitness=None if fitness is None else float(fitness),
               rung=int(d.get('rung', 0)),
               count=None if d.get('count') is None else int(d['count']),
               steps=None if d.get('steps') is None else int(d['steps']))


def rank_key(fitness: Optional[float]) -> float:
  """Sort key of a fitness: higher is better; NaN and None rank last."""
  if fitness is None or math.isnan(fitness):
    return -math.inf
  return fitness


def mean(values: Sequence[Optional[float]]) -> Optional[float]:
  """The mean; None for no values or if any is None or NaN (a diverged
  proxy makes the whole candidate rank last rather than hiding behind its
  other repeats)."""
  if not values or any(v is None or math.isnan(v) for v in values):
    return None
  return math.fsum(values) / len(values)


def standard_error(values: Sequence[Optional[float]]) -> Optional[float]:
  """The standard error of the mean (sample sd / sqrt(n)); None below two
  values or with a non-finite one."""
  m = mean(values)
  if len(values) < 2 or m is None:
    return None
  variance = math.fsum((v - m) ** 2 for v in values) / (len(values) - 1)
  return math.sqrt(variance / len(values))


def binomial_se(accuracy: Optional[float],
                count: Optional[int]) -> Optional[float]:
  """sqrt(p (1 - p) / n): the noise of an accuracy measured on n examples."""
  if accuracy is None or not count or math.isnan(accuracy) or not (
      0.0 <= accuracy <= 1.0):
    return None
  return math.sqrt(accuracy * (1.0 - accuracy) / count)


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One weighting: `weights` in `Settings.names` order.

  `parent` is the id of the tournament winner it copies (None for the
  initial population), `mutated` the index of the weight it redrew,
  `generation` its parent's plus one (0 for the initial population);
  `evaluations` its proxy trainings so far, in the order they ended.
  """
  id: int
  weights: Tuple[float, ...]
  parent: Optional[int] = None
  mutated: Optional[int] = None
  generation: int = 0
  evaluations: Tuple[Evaluation, ...] = ()

  @property
  def proposal(self) -> 'Candidate':
    """The candidate as the search proposed it, before any evaluation."""
    return dataclasses.replace(self, evaluations=())

  def with_evaluation(self, evaluation: Evaluation) -> 'Candidate':
    return dataclasses.replace(self,
                               evaluations=self.evaluations + (evaluation,))

  def evaluation(self, repeat: int, rung: int = 0) -> Optional[Evaluation]:
    for e in self.evaluations:
      if (e.repeat, e.rung) == (repeat, rung):
        return e
    return None

  @property
  def top_rung(self) -> int:
    return max((e.rung for e in self.evaluations), default=0)

  def at_rung(self, rung: Optional[int] = None,
              repeats: Optional[int] = None) -> List[Evaluation]:
    """Evaluations at `rung` (the top one by default), optionally only
    repeats below `repeats` (the seeds every candidate shares)."""
    rung = self.top_rung if rung is None else rung
    return [e for e in self.evaluations if e.rung == rung and (
        repeats is None or e.repeat < repeats)]

  def mean_of(self, rung: Optional[int] = None,
              repeats: Optional[int] = None) -> Optional[float]:
    return mean([e.fitness for e in self.at_rung(rung, repeats)])

  @property
  def fitness(self) -> Optional[float]:
    """The mean of the evaluations at the top rung (None if none)."""
    return self.mean_of()

  @property
  def se(self) -> Optional[float]:
    """The standard error of `fitness` over the repeats."""
    return standard_error([e.fitness for e in self.at_rung()])

  @property
  def holdout_se(self) -> Optional[float]:
    """The binomial standard error of an accuracy of `fitness` on the
    holdout (None for mAP or an unknown holdout size)."""
    counts = {e.count for e in self.at_rung()}
    return binomial_se(self.fitness, counts.pop()) if len(counts) == 1 \
        else None

  def weights_dict(self, names: Sequence[str]) -> Dict[str, float]:
    return dict(zip(names, self.weights))

  def to_json(self, names: Sequence[str]) -> str:
    """One line of the history file."""
    return json.dumps({
        'id': self.id, 'fitness': self.fitness, 'se': self.se,
        'holdout_se': self.holdout_se,
        'weights': self.weights_dict(names), 'parent': self.parent,
        'mutated': None if self.mutated is None else names[self.mutated],
        'generation': self.generation,
        'evaluations': [e.to_dict() for e in self.evaluations]})

  @classmethod
  def from_json(cls, line: str, names: Sequence[str]) -> 'Candidate':
    """Parses a line written by `to_json`; KeyError/ValueError if malformed.

    A line of a search from before repeats (a `fitness`, no `evaluations`)
    reads as one evaluation, repeat 0 of an unrecorded seed, so such a
    search still resumes with `proxy_repeats=1`.
    """
    d = json.loads(line)
    weights = d['weights']
    if set(weights) != set(names):
      raise ValueError(f'weights need the keys {tuple(names)}, got '
                       f'{sorted(weights)}')
    mutated = d['mutated']
    if 'evaluations' in d:
      evaluations = tuple(Evaluation.from_dict(e) for e in d['evaluations'])
    else:
      evaluations = (Evaluation(repeat=0, seed=None,
                                fitness=d['fitness']),)
    return cls(id=int(d['id']),
               weights=tuple(float(weights[n]) for n in names),
               parent=None if d['parent'] is None else int(d['parent']),
               mutated=None if mutated is None else list(names).index(mutated),
               generation=int(d['generation']), evaluations=evaluations)


@dataclasses.dataclass(frozen=True)
class Job:
  """One proxy training a search asks for: `candidate` trained for `steps`
  steps with proxy seed `seed` (its repeat's), at `rung`."""
  candidate: Candidate
  repeat: int
  seed: int
  steps: int
  rung: int = 0

  def result(self, fitness: Optional[float],
             count: Optional[int] = None) -> Evaluation:
    """The evaluation that answers this job."""
    fitness = None if fitness is None or not math.isfinite(fitness) \
        else float(fitness)
    return Evaluation(repeat=self.repeat, seed=self.seed, fitness=fitness,
                      rung=self.rung, count=count, steps=self.steps)


def add_evaluations(candidates: Dict[int, Candidate],
                    pending: Callable[[], List[Job]],
                    answers: Sequence[Tuple[Job, Evaluation]]) -> None:
  """Adds each answer's evaluation to its candidate in `candidates`.

  Raises:
    ValueError: an answer to a job that `pending()` does not list.
  """
  for job, evaluation in answers:
    waiting = {(j.candidate.id, j.repeat, j.rung) for j in pending()}
    key = (job.candidate.id, job.repeat, job.rung)
    if key not in waiting or (evaluation.repeat, evaluation.rung) != key[1:]:
      raise ValueError(f'An evaluation of candidate {key[0]}, repeat '
                       f'{key[1]}, rung {key[2]} was not pending (or does '
                       'not answer its job).')
    candidates[key[0]] = candidates[key[0]].with_evaluation(evaluation)


def format_history(history: Sequence[Candidate],
                   names: Sequence[str]) -> str:
  """The history file's text: one JSON line per evaluated candidate."""
  return ''.join(c.to_json(names) + '\n' for c in history)


def parse_history(text: str, names: Sequence[str]) -> List[Candidate]:
  """Reads a history file's text.

  Raises:
    ValueError: naming the first malformed line.
  """
  return parse_lines(text, lambda line: Candidate.from_json(line, names),
                     'a candidate record')


def parse_lines(text: str, parse: Callable[[str], Any],
                what: str) -> List[Any]:
  """`parse` of each non-empty line of a JSON-lines file.

  Raises:
    ValueError: naming the first line `parse` fails on.
  """
  out = []
  for number, line in enumerate(text.splitlines(), 1):
    if not line.strip():
      continue
    try:
      out.append(parse(line))
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(f'line {number} is not {what} ({e!r}): '
                       f'{line[:120]!r}') from None
  return out
