"""Successive halving (`evolution.strategy='halving'`), pure and fast: its
rungs, its ranking, its cost against a search of the same compute, and
exact resuming."""

import numpy as np
import pytest

from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.evolution import halving
from tests.synthetic_fitness import (NAMES, distance_fitness,
                                     fidelity_fitness, paper_settings,
                                     run_search, snapshots, true_fitness)


def _halving(**overrides):
  return paper_settings(**dict(dict(strategy='halving', num_evaluations=27,
                                    proxy_steps=90), **overrides))


def test_rungs_keep_the_best_third_and_train_them_three_times_longer():
  settings = _halving()
  assert halving.rung_sizes(settings) == [27, 9, 3]
  assert halving.rung_steps(settings) == [10, 30, 90]
  # Each rung costs the same: 27 weightings ranked for the price of 9 full
  # proxies (a tournament of 9 would rank 9).
  assert halving.planned_steps(settings) == 9 * 90
  assert halving.rung_sizes(_halving(num_evaluations=10)) == [10, 4, 2]
  search = run_search(settings)
  by_rung = {}
  for c in search.history:
    for e in c.evaluations:
      by_rung.setdefault(e.rung, []).append(c.id)
      assert e.steps == [10, 30, 90][e.rung]
  assert [len(by_rung[k]) for k in range(3)] == [27, 9, 3]
  # With an exact fitness, each rung keeps the truly best of the one before.
  ranked = sorted(range(27), key=lambda i: -true_fitness(
      search.history[i].weights))
  assert sorted(by_rung[1]) == sorted(ranked[:9])
  assert sorted(by_rung[2]) == sorted(ranked[:3])
  assert search.best().id == ranked[0]
  # The top list: the last rung's, then the rung before's, by fitness.
  assert [c.id for c in search.top(5)] == ranked[:5]
  assert sum(len(c.evaluations) for c in search.history) == 39


def test_halving_beats_random_search_of_the_same_compute():
  """Proxies 9x shorter are 3x noisier (fidelity_fitness); still, halving
  27 weightings finds better ones than training 9 at full length."""
  halved, random = [], []
  for seed in range(100):
    search = run_search(_halving(seed=seed),
                        fitness=fidelity_fitness(seed, 0.05, 90))
    halved.append(-true_fitness(search.best().weights))
    draws = np.random.default_rng([seed, 77]).uniform(size=(9, 5))
    observed = [true_fitness(w) + 0.05 * np.random.default_rng(
        [seed, 78, i]).normal() for i, w in enumerate(draws)]
    random.append(-true_fitness(draws[int(np.argmax(observed))]))
  print(f'median distance to the optimum: halving {np.median(halved):.3f}, '
        f'9 full proxies {np.median(random):.3f}')
  assert np.median(halved) < 0.85 * np.median(random)


@pytest.mark.parametrize('overrides', [
    dict(), dict(proxy_repeats=2, parallel=4),
    dict(num_evaluations=10, halving_keep=2, halving_rungs=4, proxy_steps=40,
         proxy_repeats=3, parallel=3)])
def test_resuming_any_written_halving_history_gives_the_uninterrupted_one(
    overrides):
  settings = _halving(**overrides)
  fitness = fidelity_fitness(5, 0.05, settings.proxy_steps)
  full, texts, still_to_answer = snapshots(settings, fitness)
  for text, expected_jobs in zip(texts, still_to_answer):
    trained = []

    def answer(jobs, trained=trained):
      trained.extend((j.candidate.id, j.repeat, j.rung) for j in jobs)
      return fitness(jobs)
    resumed = run_search(settings, candidates_lib.parse_history(text, NAMES),
                         answer)
    assert resumed.history == full and trained == expected_jobs
  # Another rung length is another proxy: refused.
  with pytest.raises(ValueError, match='not the one these settings propose'):
    run_search(_halving(**dict(overrides, proxy_steps=2 * settings.proxy_steps)),
               candidates_lib.parse_history(texts[-1], NAMES))


@pytest.mark.parametrize('overrides,message', [
    (dict(strategy='bayes'), "strategy='bayes' must be one of ('tournament', "
     "'halving')"),
    (dict(halving_keep=1), 'halving_keep=1 must be >= 2'),
    (dict(halving_rungs=0), 'halving_rungs=0 must be >= 1'),
    (dict(proxy_steps=8), "proxy_steps=8 must be >= 9 with strategy='halving'"),
    (dict(num_evaluations=0), 'num_evaluations=0 must be >= 1'),
])
def test_bad_halving_settings_name_the_key(overrides, message):
  with pytest.raises(ValueError) as e:
    _halving(**overrides).check()
  assert f'config.evolution.{message}' in str(e.value)
  # A tournament's settings need no halving-sized proxies.
  paper_settings(proxy_steps=8).check()
