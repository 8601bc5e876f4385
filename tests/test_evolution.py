"""Evolution of the loss weights: the search against known answers, the
vmapped proxy training against separate runs, and `--mode=evolve`."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from airstreams_jax import errors
from airstreams_jax import mesh as mesh_lib
from airstreams_jax.evolution import figure
from airstreams_jax.evolution import evolve as evolve_lib
from airstreams_jax.evolution import proxy_trainer as proxies
from airstreams_jax.evolution import search as search_lib
from airstreams_jax.training import losses
from airstreams_jax.training import config_checks
from airstreams_jax.training import setup as setup_lib
from configs import synthetic
from airstreams_jax.tools import fault_injection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = losses.LOSS_NAMES
TARGET = np.array([0.9, 0.1, 0.05, 0.95, 0.7])


def _paper_settings(**overrides):
  """The paper's search: population 10, tournaments of 3, 100 evaluations."""
  return search_lib.Settings(NAMES, **overrides)


def _distance_fitness(group):
  """Known answer: the fittest weighting is TARGET."""
  return [-float(np.linalg.norm(np.asarray(c.weights) - TARGET))
          for c in group]


def _search(settings, history=(), fitness=_distance_fitness):
  search = search_lib.Search(settings, history)
  search_lib.run(search, fitness)
  return search


def test_groups_cut_population_and_children_separately():
  settings = _paper_settings(population_size=10, parallel=4,
                             num_evaluations=23)
  assert [list(g) for g in search_lib.groups(settings)] == [
      [0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [10, 11, 12, 13],
      [14, 15, 16, 17], [18, 19, 20, 21], [22]]


def test_tournament_picks_the_best_of_the_sampled():
  rng = np.random.default_rng(0)
  fitness = rng.uniform(size=10)
  winners = set()
  for _ in range(300):
    winner, sampled = search_lib.tournament(fitness, 3, rng)
    assert len(set(sampled.tolist())) == 3  # Three distinct members.
    assert winner == sampled[np.argmax(fitness[sampled])]
    winners.add(winner)
  # Sampled, not the population's best every time; the 2 least fit members
  # can never win a tournament of 3 distinct members.
  assert len(winners) > 3
  assert not winners & set(np.argsort(fitness)[:2].tolist())
  # NaN (a diverged proxy) ranks below everything.
  assert search_lib.tournament([np.nan, 0.1], 2, rng)[0] == 1


@pytest.mark.parametrize('removal', search_lib.REMOVALS)
def test_a_child_redraws_exactly_one_weight_of_a_member(removal):
  settings = _paper_settings(removal=removal)
  search = search_lib.Search(settings)
  population_when_proposed = {}
  while not search.done:
    group = search.pending()
    for c in group:
      population_when_proposed[c.id] = {m.id for m in search.population}
    search.record([c.with_fitness(f)
                   for c, f in zip(group, _distance_fitness(group))])
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


@pytest.mark.parametrize('removal', search_lib.REMOVALS)
def test_evolution_beats_random_search_and_finds_the_target(removal):
  seeds = range(20)
  evolved = [-_search(_paper_settings(seed=seed, removal=removal))
             .best().fitness for seed in seeds]
  # Random search with the same budget: the best of 100 uniform weightings.
  random = [np.linalg.norm(np.random.default_rng(1000 + seed).uniform(
      size=(100, 5)) - TARGET, axis=1).min() for seed in seeds]
  print(f'{removal}: median best distance {np.median(evolved):.3f}, random '
        f'search {np.median(random):.3f}')
  assert np.median(evolved) < 0.8 * np.median(random)
  assert np.median(evolved) < (0.2 if removal == 'worst' else 0.3)


def test_same_seed_same_history_other_seed_other_history():
  settings = _paper_settings(num_evaluations=40)
  first = _search(settings).history
  assert _search(settings).history == first
  assert _search(_paper_settings(num_evaluations=40, seed=1)).history != first


@pytest.mark.parametrize('parallel', [1, 5])
def test_resuming_a_truncated_history_gives_the_uninterrupted_one(parallel):
  settings = _paper_settings(parallel=parallel)
  full = _search(settings).history
  text = search_lib.format_history(full, NAMES)
  assert len(text.splitlines()) == 100
  for cut in (0, 3, 10, 12, 57, 99, 100):
    kept = search_lib.parse_history(
        ''.join(text.splitlines(keepends=True)[:cut]), NAMES)
    trained = []

    def fitness(group, trained=trained):
      trained.extend(c.id for c in group)
      return _distance_fitness(group)
    resumed = _search(settings, kept, fitness)
    assert resumed.history == full, cut
    assert trained == list(range(cut, 100)), cut  # Nothing trained twice.


def test_history_of_other_settings_or_malformed_is_rejected():
  history = _search(_paper_settings(num_evaluations=30)).history
  with pytest.raises(ValueError, match='not the one these settings propose'):
    search_lib.Search(_paper_settings(num_evaluations=30, seed=1), history)
  with pytest.raises(ValueError, match='more than'):
    search_lib.Search(_paper_settings(num_evaluations=20), history)
  with pytest.raises(ValueError, match='ids must run 0, 1, 2'):
    search_lib.Search(_paper_settings(), history[:5] + history[6:])
  text = search_lib.format_history(history[:3], NAMES) + '{"id": 3\n'
  with pytest.raises(ValueError, match='line 4 is not a candidate record'):
    search_lib.parse_history(text, NAMES)


@pytest.mark.parametrize('key,value,message', [
    ('tournament_size', 11, 'tournament_size=11 must be in [1, '),
    ('num_evaluations', 9, 'num_evaluations=9 must be >= population_size'),
    ('parallel', 0, 'parallel=0 must be >= 1'),
    ('removal', 'random', "removal='random' must be one of"),
])
def test_bad_settings_name_the_key(key, value, message):
  with pytest.raises(ValueError) as e:
    _paper_settings(**{key: value}).check()
  assert f'config.evolution.{message}' in str(e.value)


def test_top_weights_image_draws_each_weight_as_a_bar():
  top = _search(_paper_settings(num_evaluations=20)).top(5)
  height = 100
  image = evolve_lib.top_weights_image(top, bar_width=10, height=height)
  assert image.dtype == np.uint8 and image.shape[2] == 3
  colours = evolve_lib.TERM_COLOURS
  for p, candidate in enumerate(top):
    for t, weight in enumerate(candidate.weights):
      # The bar's column: count the pixels of its colour.
      panel = image[:, p * (image.shape[1] - 1) // 5:
                    (p + 1) * (image.shape[1] - 1) // 5]
      is_term = (panel == colours[t]).all(-1)
      bar_height = is_term.sum() / (is_term.any(0).sum() or 1)
      assert bar_height == pytest.approx(weight * height, abs=1.0)


@pytest.fixture(scope='module')
def smoke_config(data_dir):
  config = synthetic.get_config('smoke')
  with config.unlocked():
    config.dataset.data_dir = data_dir
    # SGD: its update is linear in the gradient. Adam's m/sqrt(v) would turn
    # float rounding in near-zero gradients into full-size steps.
    config.optimizer.name = 'sgd'
  return config


def _one_device_mesh():
  # On the 8 fake CPU devices, XLA gathers the batch for the grouped
  # convolutions that vmap makes of per-candidate kernels: a vmapped step
  # runs 10x slower there than on one device (twice a single step).
  return mesh_lib.make_mesh((('data', -1),), jax.devices()[:1])


def test_group_step_shards_the_batch_and_not_the_candidates(smoke_config):
  s = setup_lib.setup(smoke_config, mesh_lib.make_mesh((('data', -1),)))
  (state_in, batch_in, weights_in), (state_out, _) = (
      proxies.group_step_shardings(s))
  assert batch_in.spec == jax.sharding.PartitionSpec('data')
  assert len(batch_in.device_set) == 8
  assert weights_in.spec == jax.sharding.PartitionSpec()
  assert state_out == state_in
  kernel = state_in.params['merged_head']['Dense_0']['kernel']
  assert kernel.spec == jax.sharding.PartitionSpec(None)
  assert len(kernel.device_set) == 8  # Replicated on every device.
  # With a model axis, each array keeps its own split behind the candidates.
  config = smoke_config.copy_and_resolve_references()
  config.mesh = (('data', 4), ('model', 2))
  config.sharding_rules = (('kernel$', ('model',)),)
  s = setup_lib.setup(config)
  (state_in, _, _), _ = proxies.group_step_shardings(s)
  assert state_in.params['merged_head']['Dense_0']['kernel'].spec == (
      jax.sharding.PartitionSpec(None, None, 'model'))


@pytest.fixture(scope='module')
def search_config(smoke_config):
  """A tiny search: population 2, 3 evaluations in groups of 2 (the initial
  pair, then one child in a padded group), proxies of the smoke length."""
  return _evolve_config(smoke_config, num_evaluations=3,
                        proxy_steps=smoke_config.num_train_steps)


@pytest.fixture(scope='module')
def proxy_setup(search_config):
  # SGD, one device and the smoke schedule: the init and the single step are
  # then the programs of tests/test_train.py's sharded-step test, which the
  # persistent compilation cache shares.
  return setup_lib.setup(proxies.proxy_config(search_config), _one_device_mesh())


@pytest.fixture(scope='module')
def proxy_trainer(proxy_setup, search_config):
  """The trainer `evolve` builds for the search config (on CPU, candidates
  one after another; `resolve_group_step`)."""
  return proxies.ProxyTrainer(proxy_setup, group_size=2,
                              group_step=proxies.resolve_group_step(
                                  search_config))


def test_group_step_is_sequential_on_cpu_unless_asked_and_checked(
    search_config):
  assert proxies.resolve_group_step(search_config) == 'sequential'
  config = search_config.copy_and_resolve_references()
  config.evolution.group_step = 'vmap'
  assert proxies.resolve_group_step(config) == 'vmap'
  config.evolution.group_step = 'pmap'
  with pytest.raises(errors.ConfigError, match=r"group_step='pmap' is "
                     r"unknown; use one of \('auto', 'vmap', "
                     r"'sequential'\)"):
    proxies.check_evolution(config)


@pytest.mark.slow
def test_vmapped_proxy_training_equals_separate_runs(proxy_setup):
  proxy_trainer = proxies.ProxyTrainer(proxy_setup, group_size=2,
                                       group_step='vmap')
  s = proxy_trainer.s
  initial = jax.device_get(proxy_trainer.initial)
  rng = np.random.default_rng(0)
  d = s.config.dataset
  batches = [mesh_lib.global_batch({
      'video': rng.integers(0, 256, (8, d.num_frames, d.image_size,
                                     d.image_size, 3), dtype=np.uint8),
      'masks': rng.integers(0, s.meta.num_seg_classes,
                            (8, d.num_frames, d.image_size, d.image_size),
                            dtype=np.uint8),
      'label': rng.integers(0, 6, (8,)).astype(np.int32)},
                                     s.batch_sharding) for _ in range(2)]
  weights = np.array([[1.0, 0.0, 0.0, 1.0, 1.0],
                      [0.2, 0.9, 0.6, 0.3, 0.05]], np.float32)

  group_step = proxy_trainer.step
  states = proxy_trainer.stack(proxy_trainer.initial)
  stacked_shardings = jax.tree.map(lambda x: x.sharding, states)
  for batch in batches:
    before = states
    states, metrics = group_step(states, batch,
                                 jax.device_put(weights, s.replicated))
    assert all(x.is_deleted() for x in jax.tree.leaves(before))  # Donated.
  # One compile; the donated states come back laid out as they went in.
  assert group_step._cache_size() == 1  # pylint: disable=protected-access
  assert jax.tree.map(lambda x: x.sharding, states) == stacked_shardings
  vmapped = jax.device_get((states.params, states.batch_stats))
  losses_vmapped = jax.device_get(metrics.loss.total)

  step = setup_lib.jit_train_step(s)
  alone = []
  for i, w in enumerate(weights):
    state = jax.device_put(initial, s.state_sharding)
    for batch in batches:
      state, metrics = step(state, batch, jax.device_put(w, s.replicated))
    alone.append(jax.device_get((state.params, state.batch_stats)))
    np.testing.assert_allclose(losses_vmapped[i],
                               float(metrics.loss.total), rtol=1e-5)
    taken = proxy_trainer.take(states, i)
    assert jax.tree.map(lambda x: x.sharding, taken) == s.state_sharding
    np.testing.assert_array_equal(
        jax.device_get(taken.params['merged_head']['Dense_0']['kernel']),
        vmapped[0]['merged_head']['Dense_0']['kernel'][i])

  for i in range(2):
    for a, b in zip(jax.tree.leaves(alone[i]),
                    jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i],
                                                 vmapped))):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # The weights matter: at these tolerances the candidates differ.
  assert not all(np.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(
      jax.tree.leaves(alone[0]), jax.tree.leaves(alone[1])))


def _events_tags(workdir):
  return {v.tag for name in os.listdir(workdir)
          if name.startswith('events.out.tfevents')
          for event in tf.compat.v1.train.summary_iterator(
              os.path.join(workdir, name))
          for v in event.summary.value}


def test_figure_bars_are_as_tall_as_the_weights():
  """Every term's colour covers exactly its bars (BAR_WIDTH x weight x
  PLOT_HEIGHT, summed over the top 5) plus its legend swatch."""
  rng = np.random.default_rng(0)
  top = [(i, 0.9 - 0.1 * i, tuple(rng.uniform(0, 1, len(NAMES))))
         for i in range(5)]
  fitness = [0.5, None, 0.7, 0.6, float('nan'), 0.9, 0.8, 0.85]
  image = np.asarray(figure.draw(top, fitness, NAMES))
  assert image.shape == (figure.HEIGHT, figure.WIDTH, 3)
  for t, colour in enumerate(figure.TERM_COLOURS):
    covered = int(np.all(image == colour, axis=-1).sum())
    expected = sum(figure.BAR_WIDTH * int(round(w[t] * figure.PLOT_HEIGHT))
                   for _, _, w in top) + figure.SWATCH ** 2
    assert covered == expected, (NAMES[t], covered, expected)
  # The fittest weighting's first bar stands where bar_left says, as tall as
  # its weight.
  left = figure.bar_left(0, 0, len(NAMES))
  column = np.all(image[figure.PLOT_TOP:, left] == figure.TERM_COLOURS[0],
                  axis=-1)
  assert column.sum() == int(round(top[0][2][0] * figure.PLOT_HEIGHT))
  # The fitness panel is drawn (dots and the best-so-far line).
  panel = image[figure.PLOT_TOP:figure.PLOT_TOP + figure.PLOT_HEIGHT,
                figure.FIT_LEFT + 2:figure.FIT_RIGHT]
  assert (panel < 200).any()


@pytest.fixture(scope='module')
def evolved_search(tmp_path_factory, search_config, proxy_trainer):
  """The tiny search, run once in this process and shared: (its workdir, a
  copy of its config, its results, its history file's text)."""
  workdir = str(tmp_path_factory.mktemp('evolved_search') / 'evolve')
  config_of_run = search_config.copy_and_resolve_references()
  results = evolve_lib.evolve(search_config, workdir, trainer=proxy_trainer)
  with open(os.path.join(workdir, search_lib.HISTORY_FILE)) as f:
    return workdir, config_of_run, results, f.read()


@pytest.mark.slow
def test_evolve_writes_weights_that_training_accepts(smoke_config,
                                                     evolved_search):
  workdir, config_of_run, results, _ = evolved_search
  config_of_run = config_of_run.copy_and_resolve_references()  # Changed below.
  assert results['num_evaluated'] == results['num_trained'] == 3
  assert results['metric'] == 'top1'

  with open(os.path.join(workdir, search_lib.HISTORY_FILE)) as f:
    history = search_lib.parse_history(f.read(), NAMES)
  assert [c.id for c in history] == [0, 1, 2]
  assert history[2].parent in (0, 1)
  assert all(0.0 <= c.fitness <= 1.0 for c in history)
  best = max(history, key=lambda c: (c.fitness, -c.id))
  assert results['best']['id'] == best.id
  with open(os.path.join(workdir, evolve_lib.TOP_FILE)) as f:
    assert json.load(f) == results['top5'] and len(results['top5']) == 3
  best_file = os.path.join(workdir, evolve_lib.BEST_FILE)
  assert results['best_weights_file'] == best_file
  with open(best_file) as f:
    assert json.load(f) == best.weights_dict(NAMES)
  assert {'evolution/fitness', 'evolution/best_fitness',
          'evolution/top5_weights'} <= _events_tags(workdir)
  with Image.open(os.path.join(workdir, figure.FIGURE_FILE)) as png:
    assert png.size == (figure.WIDTH, figure.HEIGHT)

  # The file is a valid config.loss_weights_file for training.
  config = smoke_config.copy_and_resolve_references()
  config.loss_weights_file = best_file
  config_checks.validate_config(config, _one_device_mesh())
  np.testing.assert_allclose(config_checks.read_loss_weights(config), best.weights,
                             rtol=1e-6)

  # A rerun of the finished search trains nothing and keeps the history ...
  again = evolve_lib.evolve(config_of_run, workdir)
  assert again['num_trained'] == 0 and again['best'] == results['best']
  with open(os.path.join(workdir, search_lib.HISTORY_FILE)) as f:
    assert search_lib.parse_history(f.read(), NAMES) == history
  # ... and one whose proxies would train differently is refused.
  config_of_run.evolution.proxy_steps += 1
  with pytest.raises(errors.ConfigError, match='num_train_steps differ'):
    evolve_lib.evolve(config_of_run, workdir)


def test_proxy_config_holds_out_part_of_the_training_split(smoke_config):
  config = _evolve_config(smoke_config, proxy_steps=3)
  proxy = proxies.proxy_config(config)
  assert proxy.num_train_steps == 3
  assert (proxy.dataset.train_split, proxy.dataset.eval_split) == (
      'train[:80%]', 'train[80%:]')
  assert config.dataset.train_split == 'train'  # The original is unchanged.
  config.evolution.holdout_percent = 0
  proxy = proxies.proxy_config(config)
  assert (proxy.dataset.train_split, proxy.dataset.eval_split) == (
      'train', 'test')
  config.evolution.holdout_percent = 10
  config.dataset.train_split = 'train[:50%]'
  with pytest.raises(errors.ConfigError, match='holdout_percent=0'):
    proxies.proxy_config(config)


@pytest.mark.slow
def test_main_evolve_reports_bad_settings_in_one_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'airstreams_jax.main',
       '--config=configs/synthetic.py:smoke', '--mode=evolve',
       f'--workdir={tmp_path / "run"}',
       f'--config.dataset.data_dir={tmp_path / "never_built"}',
       '--config.evolution.tournament_size=5'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert proc.stderr.strip() == (  # The only line.
      'error: config.evolution.tournament_size=5 must be in '
      '[1, population_size=4].'), proc.stderr[-2000:]
  assert not os.path.exists(tmp_path / 'never_built')


def _evolve_config(smoke_config, **evolution_overrides):
  config = smoke_config.copy_and_resolve_references()
  config.evolution.update(dict(population_size=2, tournament_size=2,
                               parallel=2))
  config.evolution.update(evolution_overrides)
  return config


@pytest.mark.parametrize('overrides,message', [
    (dict(num_evaluations=1), 'num_evaluations=1 must be >= population_size'),
    (dict(proxy_steps=0), 'proxy_steps=0 must be >= 1'),
    (dict(holdout_percent=100), 'holdout_percent=100 must be in [0, 100)'),
])
def test_bad_evolution_config_fails_before_any_work(tmp_path, smoke_config,
                                                    overrides, message):
  config = _evolve_config(smoke_config, **overrides)
  config.dataset.data_dir = str(tmp_path / 'never_built')
  with pytest.raises(errors.ConfigError) as e:
    evolve_lib.evolve(config, str(tmp_path / 'run'))
  assert message in str(e.value)
  assert not os.path.exists(tmp_path / 'never_built')


def test_history_of_another_search_is_refused(tmp_path, smoke_config):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  other = _search(_paper_settings(population_size=2, tournament_size=2,
                                  num_evaluations=4, parallel=2, seed=7))
  (workdir / search_lib.HISTORY_FILE).write_text(
      search_lib.format_history(other.history, NAMES))
  config = _evolve_config(smoke_config, num_evaluations=4)
  config.dataset.data_dir = str(tmp_path / 'never_built')
  with pytest.raises(errors.ConfigError, match='another workdir'):
    evolve_lib.evolve(config, str(workdir))
  assert not os.path.exists(tmp_path / 'never_built')


@pytest.mark.slow
def test_a_search_killed_mid_proxy_resumes_to_the_uninterrupted_history(
    tmp_path, data_dir, search_config, evolved_search):
  expected = evolved_search[3]  # The uninterrupted search, in process.
  # The same search through `main`, on one device as the reference.
  workdir = str(tmp_path / 'killed')
  evolution = search_config.evolution
  command = fault_injection.main_command(
      'configs/synthetic.py:smoke', workdir, data_dir,
      ['--mode=evolve', '--config.optimizer.name=sgd'] + [
          f'--config.evolution.{key}={evolution[key]}'
          for key in ('population_size', 'tournament_size', 'parallel',
                      'num_evaluations', 'proxy_steps')])
  one_device = {'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}
  # Killed once the first group's history is written: in the second
  # group's proxy training (or its result files).
  run = fault_injection.run_main(
      command, workdir, fault_injection.file_written(search_lib.HISTORY_FILE),
      env=one_device)
  assert run.killed, run.console[-10:]
  with open(os.path.join(workdir, search_lib.HISTORY_FILE)) as f:
    assert len(f.read().splitlines()) == 2  # Only the first group.
  run = fault_injection.run_main(command, workdir, env=one_device)
  assert run.returncode == 0, run.console[-20:]
  assert any('Resuming the search: 2 of 3 weightings already evaluated' in line
             for line in run.console), run.console
  # Nothing lost, nothing evaluated twice: the uninterrupted history.
  with open(os.path.join(workdir, search_lib.HISTORY_FILE)) as f:
    assert f.read() == expected
