"""The evolution's tournament search, pure and fast: selection against
known answers, repeats and racing against a noisy fitness whose best is
known, and exact resuming from every history the search writes."""

import json
import math

import numpy as np
import pytest

from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.evolution import runner
from airstreams_jax.evolution import settings as settings_lib
from airstreams_jax.evolution import tournament
from tests.synthetic_fitness import (NAMES, TARGET, distance_fitness,
                                     noisy_fitness, paper_settings,
                                     run_search, snapshots, true_fitness)


def test_groups_cut_population_and_children_separately():
  settings = paper_settings(population_size=10, parallel=4,
                            num_evaluations=23)
  assert [list(g) for g in tournament.groups(settings)] == [
      [0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [10, 11, 12, 13],
      [14, 15, 16, 17], [18, 19, 20, 21], [22]]


def test_tournament_picks_the_best_of_the_sampled():
  rng = np.random.default_rng(0)
  fitness = rng.uniform(size=10)
  winners = set()
  for _ in range(300):
    winner, sampled = tournament.tournament(fitness, 3, rng)
    assert len(set(sampled.tolist())) == 3  # Three distinct members.
    assert winner == sampled[np.argmax(fitness[sampled])]
    winners.add(winner)
  # Sampled, not the population's best every time; the 2 least fit members
  # can never win a tournament of 3 distinct members.
  assert len(winners) > 3
  assert not winners & set(np.argsort(fitness)[:2].tolist())
  # NaN and None (a diverged proxy) rank below everything.
  assert tournament.tournament([np.nan, 0.1], 2, rng)[0] == 1
  assert tournament.tournament([None, 0.1], 2, rng)[0] == 1


@pytest.mark.parametrize('removal', settings_lib.REMOVALS)
def test_a_child_redraws_exactly_one_weight_of_a_member(removal):
  search = runner.make_search(paper_settings(removal=removal))
  population_when_proposed = {}
  while not search.done:
    jobs = search.pending()
    for job in jobs:
      population_when_proposed[job.candidate.id] = {
          m.id for m in search.population}
    search.record([(j, j.result(f)) for j, (f, _) in
                   zip(jobs, distance_fitness(jobs))])
  history = search.history
  assert [c.id for c in history] == list(range(100))
  for child in history[10:]:
    parent = history[child.parent]
    # The parent is a member of the population the group was chosen from.
    assert child.parent in population_when_proposed[child.id]
    changed = np.flatnonzero(np.asarray(child.weights) !=
                             np.asarray(parent.weights))
    assert changed.tolist() == [child.mutated]
    assert 0.0 <= child.weights[child.mutated] <= 1.0
    assert child.generation == parent.generation + 1
  for member in history[:10]:
    assert member.parent is None and member.generation == 0
    assert all(0.0 <= w <= 1.0 for w in member.weights)
  assert len(search.population) == 10
  if removal == 'worst':  # The population holds the 10 fittest.
    assert ({c.id for c in search.population} ==
            {c.id for c in search.top(10)})
  else:  # The 10 youngest.
    assert [c.id for c in search.population] == list(range(90, 100))


@pytest.mark.parametrize('removal', settings_lib.REMOVALS)
def test_evolution_beats_random_search_and_finds_the_target(removal):
  seeds = range(20)
  evolved = [-run_search(paper_settings(seed=seed, removal=removal))
             .best().fitness for seed in seeds]
  # Random search with the same budget: the best of 100 uniform weightings.
  random = [np.linalg.norm(np.random.default_rng(1000 + seed).uniform(
      size=(100, 5)) - TARGET, axis=1).min() for seed in seeds]
  print(f'{removal}: median best distance {np.median(evolved):.3f}, random '
        f'search {np.median(random):.3f}')
  assert np.median(evolved) < 0.8 * np.median(random)
  assert np.median(evolved) < (0.2 if removal == 'worst' else 0.3)


def test_same_seed_same_history_other_seed_other_history():
  settings = paper_settings(num_evaluations=40)
  first = run_search(settings).history
  assert run_search(settings).history == first
  assert run_search(paper_settings(num_evaluations=40, seed=1)).history != \
      first


def test_the_paper_settings_draw_as_before_repeats():
  """With one repeat, no racing and U[0, 1], candidate k's weights come
  from default_rng([seed, k]) exactly as they did before repeats existed,
  so searches written then still replay."""
  history = run_search(paper_settings(num_evaluations=10)).history
  for c in history:
    expected = np.random.default_rng([0, c.id]).uniform(0.0, 1.0, 5)
    assert c.weights == tuple(float(w) for w in expected)
  old_line = json.dumps({'id': 0, 'fitness': 0.5, 'weights': dict(
      zip(NAMES, history[0].weights)), 'parent': None, 'mutated': None,
                         'generation': 0})
  old = candidates_lib.parse_history(old_line, NAMES)
  assert old[0].fitness == 0.5 and old[0].evaluations[0].seed is None
  resumed = runner.make_search(paper_settings(num_evaluations=10), old)
  assert [j.candidate.id for j in resumed.pending()] == [1, 2, 3, 4]


@pytest.mark.parametrize('overrides', [
    dict(parallel=1), dict(parallel=5),
    dict(parallel=3, proxy_repeats=2, race_repeats=2),
    dict(parallel=4, proxy_repeats=3, race_repeats=1, removal='oldest'),
])
def test_resuming_any_written_history_gives_the_uninterrupted_one(overrides):
  settings = paper_settings(num_evaluations=40, **overrides)
  fitness = noisy_fitness(3, sd=0.1, seed_sd=0.05)
  full, texts, still_to_answer = snapshots(settings, fitness)
  groups = len(tournament.groups(settings))
  # One file per batch: each group's base repeats, and its race if any.
  assert len(texts) >= 1 + groups
  if settings.race_repeats:
    assert len(texts) > 1 + groups
  for text, expected_jobs in zip(texts, still_to_answer):
    kept = candidates_lib.parse_history(text, NAMES)
    trained = []

    def answer(jobs, trained=trained):
      trained.extend((j.candidate.id, j.repeat, j.rung) for j in jobs)
      return fitness(jobs)
    resumed = run_search(settings, kept, answer)
    assert resumed.history == full
    assert trained == expected_jobs  # Nothing trained twice, none skipped.
  assert candidates_lib.parse_history(texts[-1], NAMES) == full


def test_history_of_other_settings_or_malformed_is_rejected():
  settings = paper_settings(num_evaluations=30, proxy_repeats=2,
                            race_repeats=1)
  history = run_search(settings).history
  with pytest.raises(ValueError, match='not the one these settings propose'):
    runner.make_search(paper_settings(num_evaluations=30, proxy_repeats=2,
                                      race_repeats=1, seed=1), history)
  with pytest.raises(ValueError, match='not the one these settings propose'):
    runner.make_search(paper_settings(num_evaluations=30, proxy_repeats=2,
                                      race_repeats=1, proxy_seed=5), history)
  with pytest.raises(ValueError, match=r'more than these settings ask for '
                     r'\(config.evolution.num_evaluations=20'):
    runner.make_search(paper_settings(num_evaluations=20, proxy_repeats=2,
                                      race_repeats=1), history)
  with pytest.raises(ValueError, match='more than these settings ask for'):
    runner.make_search(paper_settings(num_evaluations=30, proxy_repeats=1,
                                      race_repeats=1), history)
  with pytest.raises(ValueError, match='ids must run 0, 1, 2'):
    runner.make_search(settings, history[:5] + history[6:])
  text = candidates_lib.format_history(history[:3], NAMES) + '{"id": 3\n'
  with pytest.raises(ValueError, match='line 4 is not a candidate record'):
    candidates_lib.parse_history(text, NAMES)


def test_fitness_is_the_mean_of_the_repeats_with_its_errors():
  settings = paper_settings(num_evaluations=20, proxy_repeats=3)
  history = run_search(settings,
                       fitness=noisy_fitness(0, sd=0.1, seed_sd=0.0)).history
  for c in history:
    values = [e.fitness for e in c.evaluations]
    assert len(values) == 3
    assert c.fitness == pytest.approx(np.mean(values), abs=1e-12)
    assert c.se == pytest.approx(np.std(values, ddof=1) / np.sqrt(3))
  # The record keeps every evaluation and the summary beside them.
  record = json.loads(candidates_lib.format_history(history[:1], NAMES))
  assert [e['repeat'] for e in record['evaluations']] == [0, 1, 2]
  assert record['fitness'] == history[0].fitness
  assert record['se'] == history[0].se
  # The holdout's binomial error: sqrt(p (1 - p) / n) of the mean accuracy.
  c = history[0].proposal
  for r, p in enumerate((0.30, 0.36)):
    c = c.with_evaluation(candidates_lib.Evaluation(r, r, p, count=400))
  assert c.holdout_se == pytest.approx(math.sqrt(0.33 * 0.67 / 400))
  assert c.with_evaluation(candidates_lib.Evaluation(2, 2, math.nan)
                           ).fitness is None  # A diverged repeat ranks last.


def test_every_candidate_is_trained_with_the_same_seeds():
  """Paired repeats: the search hands every candidate the proxy seeds
  proxy_seed + 0 .. proxy_repeats - 1, and every raced one the same extra
  seeds after them."""
  settings = paper_settings(num_evaluations=40, proxy_repeats=2,
                            race_repeats=3, proxy_seed=7, parallel=4)
  handed = {}

  def answer(jobs):
    for j in jobs:
      handed.setdefault(j.candidate.id, []).append(j.seed)
      assert j.seed == 7 + j.repeat and j.steps == settings.proxy_steps
    return distance_fitness(jobs)
  search = run_search(settings, fitness=answer)
  raced = [i for i, seeds in handed.items() if len(seeds) > 2]
  assert raced and len(raced) < 40
  for i, seeds in handed.items():
    assert sorted(seeds) == ([7, 8, 9, 10, 11] if i in raced else [7, 8])
    assert [e.seed for e in search.history[i].evaluations] == seeds


def test_racing_crowns_only_raced_children_that_beat_the_best_paired():
  settings = paper_settings(num_evaluations=60, proxy_repeats=2,
                            race_repeats=2, parallel=3)
  search = runner.make_search(settings)
  fitness = noisy_fitness(1, sd=0.15, seed_sd=0.05)
  while not search.done:
    jobs = search.pending()
    if jobs[0].repeat < 2:  # A group's base repeats: who will race?
      crowned = [c for c in search.history if len(c.evaluations) == 4]
      best = search.best() if crowned else None
    answers = fitness(jobs)
    search.record([(j, j.result(f, n)) for j, (f, n) in zip(jobs, answers)])
    raced = sorted({j.candidate.id for j in search.pending()
                    if j.repeat >= 2})
    if raced:
      group = {j.candidate.id for j in jobs}
      base = {i: search.history[i].mean_of(0, 2) for i in group}
      bar = (max(base.values()) if best is None
             else best.mean_of(0, 2))
      expected = ([max(group, key=lambda i: (base[i], -i))] if best is None
                  else sorted(i for i in group if base[i] > bar))
      assert raced == expected
  crowned = [c for c in search.history if len(c.evaluations) == 4]
  assert search.best() == max(crowned, key=lambda c: (c.fitness, -c.id))
  assert set(search.top(len(crowned))) == set(crowned)  # Raced ones first.
  assert len(crowned) < len(search.history)


def test_repeats_and_racing_pick_the_true_best_more_often():
  """A noisy synthetic fitness whose true value is known: over 200 search
  seeds, how often the search's answer is the truly fittest of the
  weightings it evaluated, and how far below it the answer is."""
  def rates(**overrides):
    hits, regret = [], []
    for seed in range(200):
      search = run_search(
          paper_settings(num_evaluations=50, seed=seed, **overrides),
          fitness=noisy_fitness(seed, sd=0.1, seed_sd=0.05))
      truly_best = max(true_fitness(c.weights) for c in search.history)
      chosen = true_fitness(search.best().weights)
      hits.append(chosen == truly_best)
      regret.append(truly_best - chosen)
    return np.mean(hits), np.median(regret)
  single, single_regret = rates()
  raced, raced_regret = rates(race_repeats=2)
  both, both_regret = rates(proxy_repeats=2, race_repeats=2)
  print(f'true best chosen: one proxy {single:.2f} (median shortfall '
        f'{single_regret:.3f}), racing with 2 more {raced:.2f} '
        f'({raced_regret:.3f}), 2 repeats and racing {both:.2f} '
        f'({both_regret:.3f})')
  # Each rate has a standard error of about 0.035 over 200 seeds.
  assert both >= single + 0.08
  assert raced >= single + 0.05
  assert both_regret < 0.5 * single_regret


@pytest.mark.parametrize('key,value,message', [
    ('tournament_size', 11, 'tournament_size=11 must be in [1, '),
    ('num_evaluations', 9, 'num_evaluations=9 must be >= population_size'),
    ('parallel', 0, 'parallel=0 must be >= 1'),
    ('removal', 'random', "removal='random' must be one of"),
    ('proxy_repeats', 0, 'proxy_repeats=0 must be >= 1'),
    ('race_repeats', -1, 'race_repeats=-1 must be >= 0'),
])
def test_bad_settings_name_the_key(key, value, message):
  with pytest.raises(ValueError) as e:
    paper_settings(**{key: value}).check()
  assert f'config.evolution.{message}' in str(e.value)
