"""Running a search of either strategy: answering the jobs it asks for, and
replaying a history so that a resumed search continues exactly where it
stopped."""

from typing import Callable, List, Optional, Sequence, Tuple, Union

from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.evolution import halving
from airstreams_jax.evolution import settings as settings_lib
from airstreams_jax.evolution import tournament

AnySearch = Union[tournament.Search, halving.Search]
Candidate = candidates_lib.Candidate
Job = candidates_lib.Job
# What a proxy training gives: (fitness, held-out examples or None).
Answer = Tuple[Optional[float], Optional[int]]


def make_search(settings: settings_lib.Settings,
                history: Sequence[Candidate] = ()) -> AnySearch:
  """A new search of `settings.strategy`, or one resumed from `history`.

  Raises:
    ValueError: bad settings, or a history these settings did not write.
  """
  search = (halving.Search(settings) if settings.strategy == 'halving'
            else tournament.Search(settings))
  replay(search, history)
  return search


def replay(search: AnySearch, history: Sequence[Candidate]) -> None:
  """Answers the search's jobs from `history` while it holds their answers.

  Raises:
    ValueError: the history's ids do not run 0, 1, 2, ..., a recorded
      candidate is not the one these settings propose, or the history holds
      evaluations these settings never ask for.
  """
  recorded = {}
  for position, candidate in enumerate(history):
    if candidate.id != position:
      raise ValueError(f'the history lists candidate {candidate.id} at '
                       f'position {position}; ids must run 0, 1, 2, ...')
    recorded[candidate.id] = candidate
  used = set()
  while not search.done:
    jobs = search.pending()
    answers = []
    for job in jobs:
      candidate = recorded.get(job.candidate.id)
      if candidate is None:
        continue
      _check_same(candidate, job)
      evaluation = candidate.evaluation(job.repeat, job.rung)
      if evaluation is not None:
        answers.append((job, evaluation))
        used.add((candidate.id, job.repeat, job.rung))
    if not answers:
      break
    search.record(answers)
  unused = [(c.id, e.repeat, e.rung) for c in history for e in c.evaluations
            if (c.id, e.repeat, e.rung) not in used]
  if unused:
    s = search.settings
    raise ValueError(
        f'the history holds {len(unused)} evaluations (the first: candidate '
        f'{unused[0][0]}, repeat {unused[0][1]}, rung {unused[0][2]}) more '
        f'than these settings ask for (config.evolution.num_evaluations='
        f'{s.num_evaluations}, proxy_repeats={s.proxy_repeats}, '
        f'race_repeats={s.race_repeats}, strategy={s.strategy!r}) before '
        'their next job; use the settings it was written with, or another '
        'workdir.')


def _check_same(candidate: Candidate, job: Job) -> None:
  evaluation = candidate.evaluation(job.repeat, job.rung)
  # Seed and length are None in a history from before they were recorded.
  other_proxy = evaluation is not None and (
      evaluation.seed not in (None, job.seed) or
      evaluation.steps not in (None, job.steps))
  if candidate.proposal != job.candidate.proposal or other_proxy:
    raise ValueError(
        f'candidate {candidate.id} of the history is not the one these '
        'settings propose (it was written with another seed, population, '
        'tournament, parallel, removal, strategy, halving, draw, '
        'weight_range, start_from_config, proxy length or config seed): use '
        'the settings it was written with, or another workdir.')


def run(search: AnySearch,
        evaluate: Callable[[List[Job]], Sequence[Answer]],
        on_batch_done: Optional[Callable[[AnySearch, List[Candidate]],
                                         None]] = None) -> List[Candidate]:
  """Answers the pending jobs until the search is done.

  Args:
    search: a new or resumed search.
    evaluate: (fitness, held-out examples) of each job of a batch.
    on_batch_done: called after each batch with the search and the
      candidates it evaluated, as they now stand (e.g. to save the history).

  Returns:
    The full history.
  """
  while not search.done:
    jobs = search.pending()
    answers = list(evaluate(jobs))
    if len(answers) != len(jobs):
      raise ValueError(f'evaluate returned {len(answers)} answers for '
                       f'{len(jobs)} jobs.')
    search.record([(job, job.result(fitness, count))
                   for job, (fitness, count) in zip(jobs, answers)])
    if on_batch_done is not None:
      ids = sorted({job.candidate.id for job in jobs})
      on_batch_done(search, [c for c in search.history if c.id in ids])
  return search.history
