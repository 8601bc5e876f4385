"""Known answers for the evolution's pure search: fitness functions whose
fittest weighting is TARGET, exact or with the noise of proxy trainings,
and a helper that runs a search on them (tests/test_evolution_search.py,
tests/test_evolution.py)."""

from typing import List, Optional, Sequence, Tuple

import numpy as np

from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.evolution import runner
from airstreams_jax.evolution import settings as settings_lib
from airstreams_jax.training import losses

NAMES = losses.LOSS_NAMES
TARGET = np.array([0.9, 0.1, 0.05, 0.95, 0.7])


def paper_settings(**overrides) -> settings_lib.Settings:
  """The paper's search: population 10, tournaments of 3, 100 evaluations,
  one proxy per candidate, no racing."""
  return settings_lib.Settings(NAMES, **overrides)


def true_fitness(weights: Sequence[float]) -> float:
  """Minus the distance to TARGET: the fittest weighting is TARGET."""
  return -float(np.linalg.norm(np.asarray(weights) - TARGET))


def distance_fitness(jobs: Sequence[candidates_lib.Job]
                     ) -> List[Tuple[float, Optional[int]]]:
  """The exact fitness of each job (every repeat agrees)."""
  return [(true_fitness(j.candidate.weights), None) for j in jobs]


def noisy_fitness(noise_seed: int, sd: float, seed_sd: float):
  """Fitness as a proxy training measures it: the true fitness, plus an
  effect of the proxy seed shared by every candidate trained with it (sd
  `seed_sd`), plus noise of each training (sd `sd`). Both are fixed by
  (noise_seed, seed) and (noise_seed, candidate, repeat, rung), so a job
  answered twice (a resumed search) gets the same value."""
  def fitness(jobs):
    out = []
    for j in jobs:
      shared = np.random.default_rng([noise_seed, 1 << 20, j.seed]).normal()
      own = np.random.default_rng(
          [noise_seed, j.candidate.id, j.repeat, j.rung]).normal()
      out.append((true_fitness(j.candidate.weights) + seed_sd * shared +
                  sd * own, 400))
    return out
  return fitness


def fidelity_fitness(noise_seed: int, sd_full: float, full_steps: int):
  """Fitness of proxies whose noise shrinks with their length: sd_full at
  `full_steps` steps, sd_full * sqrt(full_steps / steps) at `steps` (the
  mean of fewer noisy steps), fixed by (noise_seed, candidate, repeat,
  rung)."""
  def fitness(jobs):
    return [(true_fitness(j.candidate.weights) + sd_full * np.sqrt(
        full_steps / j.steps) * np.random.default_rng(
            [noise_seed, j.candidate.id, j.repeat, j.rung]).normal(), None)
            for j in jobs]
  return fitness


def run_search(settings, history=(), fitness=distance_fitness,
               on_batch_done=None):
  search = runner.make_search(settings, history)
  runner.run(search, fitness, on_batch_done)
  return search


def snapshots(settings, fitness):
  """(the history, the history files an uninterrupted search writes: none
  yet and one after each batch, and the jobs answered after each file)."""
  texts, jobs_after = [''], [[]]
  answered = []

  def answer(jobs):
    answered.extend((j.candidate.id, j.repeat, j.rung) for j in jobs)
    return fitness(jobs)

  def save(search, _):
    texts.append(candidates_lib.format_history(search.history, NAMES))
    jobs_after.append(list(answered))
  search = run_search(settings, fitness=answer, on_batch_done=save)
  return search.history, texts, [answered[len(a):] for a in jobs_after]
