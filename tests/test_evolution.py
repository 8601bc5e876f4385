"""Evolution of the loss weights: the vmapped proxy training against
separate runs, the proxies' seeds, and `--mode=evolve` (the pure search is
tested in tests/test_evolution_search.py)."""

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
from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.evolution import runner
from airstreams_jax.training import config_checks
from airstreams_jax.training import setup as setup_lib
from configs import synthetic
from airstreams_jax.tools import fault_injection

from tests.synthetic_fitness import NAMES, paper_settings, run_search

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_top_weights_image_draws_each_weight_as_a_bar():
  top = run_search(paper_settings(num_evaluations=20)).top(5)
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
  pair, then one child in a padded group), proxies of the smoke length; the
  first group's fittest, and the child if it beats it, race one more
  proxy seed."""
  return _evolve_config(smoke_config, num_evaluations=3,
                        proxy_steps=smoke_config.num_train_steps,
                        race_repeats=1)


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
  # Each proxy seed has its own start, the same on every call.
  initial = jax.device_get(proxy_trainer.initial(0))
  for a, b, c in zip(jax.tree.leaves(initial),
                     jax.tree.leaves(proxy_trainer.initial(0)),
                     jax.tree.leaves(proxy_trainer.initial(1))):
    np.testing.assert_array_equal(a, b)
  assert not all(np.array_equal(a, c) for a, c in zip(
      jax.tree.leaves(initial), jax.tree.leaves(proxy_trainer.initial(1))))
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
  states = proxy_trainer.stack(proxy_trainer.initial(0))
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


def test_the_trainer_gets_each_jobs_own_seed_in_runs_of_one_seed():
  """The seeds the driver hands the proxy trainer: each job's own (the
  config's seed + its repeat), the same for every candidate, trained in
  runs of at most the group size that share one seed."""
  settings = paper_settings(num_evaluations=30, proxy_repeats=2,
                            race_repeats=2, parallel=4, proxy_seed=3)
  handed = {}

  def train(jobs):
    runs = proxies.seed_runs([j.seed for j in jobs], settings.parallel)
    covered = sorted(i for _, indices in runs for i in indices)
    assert covered == list(range(len(jobs)))  # Each job once.
    for seed, indices in runs:
      assert 1 <= len(indices) <= settings.parallel
      for i in indices:
        assert jobs[i].seed == seed == 3 + jobs[i].repeat
        handed.setdefault(jobs[i].candidate.id, set()).add(seed)
    return [(0.5 + 0.01 * j.candidate.id, 100) for j in jobs]
  run_search(settings, fitness=train)
  assert {frozenset(seeds) for seeds in handed.values()} <= {
      frozenset({3, 4}), frozenset({3, 4, 5, 6})}
  assert len(handed) == 30


def test_the_search_starts_from_the_configs_own_weights(tmp_path):
  """`settings_from_config` hands the search the config's weighting (its
  loss_weights, or loss_weights_file), which becomes candidate 0 scaled into
  the range, and the config's seed as the first proxy seed."""
  config = synthetic.get_config('smoke')
  settings = proxies.settings_from_config(config)
  assert settings.initial_weights == (1.0, 0.0, 0.0, 1.0, 4.0)
  assert settings.proxy_seed == config.seed
  first = runner.make_search(settings).pending()[0]
  assert first.candidate.weights == (0.25, 0.0, 0.0, 0.25, 1.0)
  assert first.seed == config.seed
  path = tmp_path / 'weights.json'
  path.write_text(json.dumps(dict(rgb=0.5, flow=0.1, semantic=0.2, merged=2,
                                  interm=1)))
  config.loss_weights_file = str(path)
  config.seed = 4
  settings = proxies.settings_from_config(config)
  assert settings.initial_weights == pytest.approx((0.5, 0.1, 0.2, 2.0, 1.0))
  assert settings.proxy_seed == 4
  config.evolution.start_from_config = False
  assert proxies.settings_from_config(config).initial_weights is None


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
  with open(os.path.join(workdir, candidates_lib.HISTORY_FILE)) as f:
    return workdir, config_of_run, results, f.read()


@pytest.mark.slow
def test_evolve_writes_weights_that_training_accepts(smoke_config,
                                                     evolved_search):
  workdir, config_of_run, results, _ = evolved_search
  config_of_run = config_of_run.copy_and_resolve_references()  # Changed below.
  assert results['num_evaluated'] == 3
  assert results['metric'] == 'top1'

  with open(os.path.join(workdir, candidates_lib.HISTORY_FILE)) as f:
    history = candidates_lib.parse_history(f.read(), NAMES)
  assert [c.id for c in history] == [0, 1, 2]
  assert history[2].parent in (0, 1)
  assert results['num_trained'] == sum(len(c.evaluations) for c in history)
  # Every evaluation trained with its repeat's seed, the same for all.
  for c in history:
    assert [e.seed for e in c.evaluations] == [
        config_of_run.seed + e.repeat for e in c.evaluations]
    assert all(0.0 <= e.fitness <= 1.0 and e.count > 0
               for e in c.evaluations)
  # The best was raced (race_repeats=1): the fittest of those with 2.
  raced = [c for c in history if len(c.evaluations) == 2]
  assert raced and len(history[0].evaluations) + len(
      history[1].evaluations) == 3  # The first group's fittest raced.
  best = max(raced, key=lambda c: (c.fitness, -c.id))
  assert results['best']['id'] == best.id
  assert results['best']['se'] == pytest.approx(best.se)
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
  with open(os.path.join(workdir, candidates_lib.HISTORY_FILE)) as f:
    assert candidates_lib.parse_history(f.read(), NAMES) == history
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
  other = run_search(paper_settings(population_size=2, tournament_size=2,
                                    num_evaluations=4, parallel=2, seed=7))
  (workdir / candidates_lib.HISTORY_FILE).write_text(
      candidates_lib.format_history(other.history, NAMES))
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
                      'num_evaluations', 'proxy_steps', 'race_repeats')] +
      # The search alone: its confirmation is tested in
      # test_evolution_confirm.py and tests/test_fidelity_command.py.
      ['--config.evolution.confirm_seeds=0'])
  one_device = {'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}
  # Killed once the first group's history is written: in the second
  # group's proxy training (or its result files).
  run = fault_injection.run_main(
      command, workdir, fault_injection.file_written(candidates_lib.HISTORY_FILE),
      env=one_device)
  assert run.killed, run.console[-10:]
  with open(os.path.join(workdir, candidates_lib.HISTORY_FILE)) as f:
    assert len(f.read().splitlines()) == 2  # Only the first group.
  run = fault_injection.run_main(command, workdir, env=one_device)
  assert run.returncode == 0, run.console[-20:]
  assert any('Resuming the search: 2 of 3 weightings already evaluated' in line
             for line in run.console), run.console
  # Nothing lost, nothing evaluated twice: the uninterrupted history.
  with open(os.path.join(workdir, candidates_lib.HISTORY_FILE)) as f:
    assert f.read() == expected
