"""The search space (pure, fast): the config's own weighting in the first
generation, scaled into the range with its ratios; uniform and log-uniform
draws; the checks of the keys that set them."""

import itertools

import numpy as np
import pytest

from airstreams_jax.evolution import search_space
from tests.synthetic_fitness import paper_settings, run_search

# The synthetic config's fixed weights (base.use_small_cpu_model): rgb 1,
# merged 1, interm 4.
HAND_SET = (1.0, 0.0, 0.0, 1.0, 4.0)


def test_the_hand_set_point_joins_the_first_generation_with_its_ratios():
  # Outside U[0, 1] as it stands (interm 4) ...
  assert max(HAND_SET) > paper_settings().high
  search = run_search(paper_settings(initial_weights=HAND_SET,
                                     num_evaluations=40))
  first = search.history[0]
  # ... inside once scaled: the largest weight at the range's top, every
  # ratio kept (the same weighting under Adam).
  assert first.weights == (0.25, 0.0, 0.0, 0.25, 1.0)
  assert first.parent is None and first.evaluations
  # The rest of the generation is drawn as before.
  paper = run_search(paper_settings(num_evaluations=10)).history
  assert [c.weights for c in search.history[1:10]] == [
      c.weights for c in paper[1:10]]
  # In a range (0.5, 2] its top is 2.
  assert search_space.scaled_into_range(HAND_SET, 2.0) == (
      0.5, 0.0, 0.0, 0.5, 2.0)
  with pytest.raises(ValueError, match='one of them > 0'):
    search_space.scaled_into_range((0, 0, 0, 0, 0), 1.0)


def test_log_uniform_draws_stay_in_range_and_make_ratios_symmetric():
  rng = np.random.default_rng(0)
  uniform = search_space.draw(rng, 'uniform', 0.0, 1.0, 100000)
  log = search_space.draw(rng, 'log_uniform', 0.01, 1.0, 100000)
  assert 0.01 <= log.min() and log.max() <= 1.0
  # log λ is uniform: its median is the geometric middle, 0.1.
  assert np.median(log) == pytest.approx(0.1, rel=0.03)
  # A ratio above 4 between two weights: 1 pair in 8 under U[0, 1] (for
  # either order: 1 in 4), about half of all pairs log-uniformly in
  # [0.01, 1] (|log ratio| > log 4 of a triangle on [-log 100, log 100]).
  def share_beyond_4(w):
    a, b = w[::2], w[1::2]
    return np.mean(np.maximum(a / b, b / a) > 4)
  assert share_beyond_4(uniform) == pytest.approx(0.25, abs=0.01)
  assert share_beyond_4(log) == pytest.approx(
      (1 - np.log(4) / np.log(100)) ** 2, abs=0.01)
  # The search's children redraw within the range.
  search = run_search(paper_settings(draw='log_uniform',
                                     weight_range=(0.01, 1.0),
                                     initial_weights=HAND_SET,
                                     num_evaluations=40))
  for c in search.history[1:]:
    if c.mutated is not None:
      assert 0.01 <= c.weights[c.mutated] <= 1.0
    else:
      assert all(0.01 <= w <= 1.0 for w in c.weights)


@pytest.mark.parametrize('overrides,message', [
    (dict(draw='normal'),
     "draw='normal' must be one of ('uniform', 'log_uniform')"),
    (dict(weight_range=(1.0, 0.5)), 'weight_range=(1.0, 0.5) must be two '
     'numbers (low, high) with 0 <= low < high'),
    (dict(weight_range=(0.0, 1.0, 2.0)), 'weight_range=(0.0, 1.0, 2.0)'),
    (dict(weight_range=(0.0, 1.0), draw='log_uniform'),
     'weight_range=(0.0, 1.0) must be two numbers (low, high) with 0 <= low '
     '< high, low > 0 for the log-uniform draw.'),
    (dict(initial_weights=(0, 0, 0, 0, 0)),
     'start_from_config: the weighting (0, 0, 0, 0, 0) cannot be scaled'),
])
def test_bad_search_space_settings_name_the_key(overrides, message):
  with pytest.raises(ValueError) as e:
    paper_settings(**overrides).check()
  assert f'config.evolution.{message}' in str(e.value)
  assert '\n' not in str(e.value)


def test_every_pair_of_names_can_differ_by_an_order_of_magnitude():
  """What the hand-set point needs (interm 4 x rgb): log-uniformly, any
  two weights of a first generation can be 10x apart in either order."""
  settings = paper_settings(draw='log_uniform', weight_range=(0.01, 1.0),
                            num_evaluations=200, population_size=200)
  weights = np.array([c.weights for c in run_search(settings).history])
  for i, j in itertools.permutations(range(5), 2):
    assert np.mean(weights[:, i] > 10 * weights[:, j]) > 0.1
