"""The proxy-fidelity measurement: its weightings, its report on known
numbers, the scatter, the one-line refusals, a resume from kept results
that trains nothing (all in process, no training), and one small run of
the command itself, rerun to a result it only reads (slow)."""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest

from airstreams_jax import errors
from airstreams_jax.evolution import fidelity
from airstreams_jax.evolution import fidelity_stats
from airstreams_jax.evolution import full_runs
from airstreams_jax.plotting import scatter
from airstreams_jax.tools import fidelity as command
from configs import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_WEIGHTS = (1.0, 0.0, 0.0, 1.0, 4.0)


def test_the_weightings_are_the_configs_uniform_merged_then_drawn():
  plan = fidelity.weightings(CONFIG_WEIGHTS, 8, 'log_uniform', 0.01, 1.0, 0)
  assert [w.label for w in plan[:3]] == ['config', 'uniform', 'merged_only']
  assert plan[0].weights == CONFIG_WEIGHTS
  assert plan[1].weights == (1.0,) * 5
  assert plan[2].weights == (0.0, 0.0, 0.0, 1.0, 0.0)
  assert [w.label for w in plan[3:]] == [f'random_{i}' for i in range(5)]
  assert all(0.01 <= x <= 1.0 for w in plan[3:] for x in w.weights)
  # A larger K keeps the first K's weightings (and so their results).
  assert fidelity.weightings(CONFIG_WEIGHTS, 10, 'log_uniform', 0.01, 1.0,
                             0)[:8] == plan
  # A config weighting that is uniform up to scale appears once.
  plan = fidelity.weightings((2.0,) * 5, 4, 'uniform', 0.0, 1.0, 0)
  assert [w.label for w in plan] == ['config', 'merged_only', 'random_0',
                                     'random_1']


def test_the_report_on_known_numbers():
  labels = ['a', 'b', 'c', 'd']
  full = {'a': [0.50, 0.52], 'b': [0.60, 0.58], 'c': [0.70, 0.71],
          'd': [0.40, 0.42]}
  # 10 steps: the proxies rank as full training (ρ = 1); 20 steps: the
  # reverse (ρ = -1).
  proxies = {10: {'a': [0.3, 0.32, 0.31], 'b': [0.4, 0.41, 0.42],
                  'c': [0.5, 0.52, 0.5], 'd': [0.2, 0.22, 0.2]},
             20: {'a': [0.4, 0.4, 0.41], 'b': [0.3, 0.31, 0.3],
                  'c': [0.2, 0.2, 0.21], 'd': [0.5, 0.5, 0.5]}}
  summary = fidelity.summarize(labels, proxies, full, n_resamples=500)
  short, long_ = summary['lengths']
  assert (short['steps'], short['spearman']) == (10, 1.0)
  assert (long_['steps'], long_['spearman']) == (20, -1.0)
  expected = fidelity_stats.variance_components(
      np.array([proxies[10][l] for l in labels]))
  assert short['variance']['snr'] == pytest.approx(expected.snr)
  assert short['variance']['within'] == pytest.approx(expected.within)
  assert short['proxy']['a']['mean'] == pytest.approx(0.31)
  assert short['proxy']['a']['se'] == pytest.approx(0.01 / np.sqrt(3))
  assert summary['weightings']['c'] == {'mean': pytest.approx(0.705),
                                        'se': pytest.approx(0.005)}
  assert summary['full_variance']['between'] > 0
  assert fidelity.best_length(summary)['steps'] == 10
  plan = [fidelity.Weighting(l, (1.0,) * 5) for l in labels]
  text = fidelity.report_markdown(summary, plan, ('r', 'f', 's', 'm', 'i'),
                                  'top1', 3, 2, 600)
  assert 'Best proxy length here: 10 steps, ρ = 1.00 [1.00, 1.00].' in text
  assert re.search(r'\| 20 \| -1\.00 \| \[-1\.00, -1\.00\] \|', text), text
  assert '| c | 1, 1, 1, 1, 1 | 70.50 ± 0.50 | 50.67 ± 0.67 | 20.33 ± 0.33 |' \
      in text
  json.dumps(summary)  # JSON as it is (NaN written as None).
  # A diverged proxy: no ρ and no decomposition, not a crash.
  proxies[10]['a'][0] = None
  broken = fidelity.summarize(labels, proxies, full, n_resamples=100)
  assert broken['lengths'][0]['spearman'] is None
  assert broken['lengths'][0]['variance'] is None
  assert fidelity.best_length(broken)['steps'] == 20


def test_the_scatter_draws_each_point_where_its_values_are():
  panels = [scatter.Panel('p0', [scatter.Point(0.3, 0.6, 0.02, 0.01, 'a'),
                                 scatter.Point(0.5, 0.7, None, None, 'b')]),
            scatter.Panel('p1', [scatter.Point(0.1, 0.2, 0.01, 0.05, 'c'),
                                 scatter.Point(0.2, 0.1)], index=1)]
  image = scatter.draw(panels, 'x', 'y', 'title')
  assert image.size == scatter.size(2)
  pixels = np.asarray(image)
  for panel in panels:
    for p in panel.points:
      x, y = panel.pixel(p.x, p.y)
      assert tuple(pixels[y, x]) == scatter._DOT  # pylint: disable=protected-access
  # The second panel starts right of the first.
  assert panels[1].pixel(0.1, 0.2)[0] > scatter.LEFT + scatter.PANEL_WIDTH


@pytest.mark.parametrize('text,message', [
    ('40,x', "--proxy_steps='40,x' must be distinct whole numbers >= 1"),
    ('40,0', "--proxy_steps='40,0' must be"),
    ('40,40', "--proxy_steps='40,40' must be"),
])
def test_bad_proxy_lengths_in_one_line(text, message):
  with pytest.raises(errors.ConfigError, match=re.escape(message)):
    command.parse_steps(text, 200)
  assert command.parse_steps('', 200) == [200]
  assert command.parse_steps('40,80,160', 200) == [40, 80, 160]


def _config(tmp_path):
  config = synthetic.get_config('smoke')
  config.dataset.data_dir = str(tmp_path / 'never_built')
  return config


OPTIONS = command.Options(weightings=3, repeats=2, seeds=2,
                          proxy_steps=(2, 3), bootstrap=200)


@pytest.mark.parametrize('change,message', [
    (dict(weightings=2), '--weightings=2 must be >= 3'),
    (dict(repeats=1), '--repeats=1 must be >= 2'),
    (dict(seeds=0), '--seeds=0 must be >= 1'),
])
def test_bad_options_in_one_line_before_any_work(tmp_path, change, message):
  options = command.Options(**{**OPTIONS.__dict__, **change})
  with pytest.raises(errors.ConfigError, match=re.escape(message)):
    command.measure(_config(tmp_path), str(tmp_path / 'w'), options)
  assert not os.path.exists(tmp_path / 'w')
  assert not os.path.exists(tmp_path / 'never_built')


def _prefill(config, workdir, plan, options):
  """Every proxy and full training of the measurement, as it keeps them:
  the proxies rank as full training does."""
  scores = []
  for i, w in enumerate(plan):
    for steps in options.proxy_steps:
      for r in range(options.repeats):
        scores.append(fidelity.ProxyScore(steps, w.label, r, config.seed + r,
                                          0.2 + 0.1 * i + 0.01 * r, 4))
    for s in range(options.seeds):
      seed = config.seed + s
      run = os.path.join(workdir, fidelity.RUNS_DIR,
                         full_runs.run_name(w.label, seed))
      os.makedirs(run)
      with open(os.path.join(run, 'config.json'), 'w') as f:
        f.write(full_runs.run_config(config, w.weights, seed)
                .to_json_best_effort())
      with open(os.path.join(run, 'eval_results.json'), 'w') as f:
        json.dump({'top1': 0.5 + 0.1 * i + 0.02 * s}, f)
  with open(os.path.join(workdir, fidelity.PROXIES_FILE), 'w') as f:
    f.write(fidelity.format_proxies(scores))


def test_kept_results_are_read_not_retrained(tmp_path, capsys):
  config = _config(tmp_path)
  workdir = str(tmp_path / 'fidelity')
  os.makedirs(workdir)
  plan = fidelity.weightings(CONFIG_WEIGHTS, 3, 'uniform', 0.0, 1.0, 0)
  _prefill(config, workdir, plan, OPTIONS)
  summary = command.measure(config, workdir, OPTIONS)
  assert (summary['num_proxies_trained'], summary['num_full_trained']) == (
      0, 0)
  assert not os.path.exists(tmp_path / 'never_built')  # No data touched.
  printed = capsys.readouterr().out
  assert printed.count('\n') == 1 and printed.startswith(
      'Fidelity: 3 weightings (config, uniform, merged_only); proxies of 2, '
      '3 steps x 2 repeats; full training 8 steps x 2 seeds, test split. '
      'To train: 0 proxies, 0 full trainings'), printed
  assert [l['spearman'] for l in summary['lengths']] == [1.0, 1.0]
  with open(os.path.join(workdir, fidelity.REPORT_JSON)) as f:
    assert json.load(f)['lengths'][0]['steps'] == 2
  with open(os.path.join(workdir, fidelity.REPORT_MD)) as f:
    assert 'Best proxy length here: 2 steps, ρ = 1.00' in f.read()
  with Image.open(os.path.join(workdir, fidelity.FIGURE_FILE)) as png:
    assert png.size == scatter.size(2)
  assert 'ρ 1.00' in command.summary_line(summary, workdir)

  # The same workdir with another training config is refused in one line.
  other = _config(tmp_path)
  other.num_train_steps = 9
  with pytest.raises(errors.ConfigError, match=re.escape(
      'the results in this workdir were trained with other settings '
      '(config.num_train_steps differ); use the same config and flags, or '
      'another --workdir.')):
    command.measure(other, workdir, OPTIONS)
  assert not os.path.exists(tmp_path / 'never_built')


@pytest.mark.slow
def test_the_command_measures_then_a_rerun_only_reads(tmp_path, data_dir):
  """The smallest real measurement: 3 weightings (each zero pattern of the
  weights compiles its own train step: the config's, here with no zero
  weight, shares uniform's; merged alone has its own), proxies of 4 steps x 2
  repeats, full trainings of 4 steps x 1 seed; the rerun trains nothing and
  writes the same report. (Several proxy lengths and the report on known
  numbers: the fast tests above.)"""
  workdir = str(tmp_path / 'fidelity')
  cmd = [sys.executable, '-m', 'airstreams_jax.tools.fidelity',
         '--config=configs/synthetic.py:smoke', f'--workdir={workdir}',
         '--weightings=3', '--repeats=2', '--seeds=1', '--proxy_steps=4',
         '--bootstrap=200', '--config.num_train_steps=4',
         '--config.loss_weights.flow=0.5', '--config.loss_weights.semantic=0.5',
         f'--config.dataset.data_dir={data_dir}']
  start = time.time()
  first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         timeout=900, check=False)
  assert first.returncode == 0, first.stderr[-3000:]
  assert 'To train: 6 proxies, 3 full trainings' in first.stdout
  assert 'Proxy fidelity (6 proxies and 3 full trainings in this run)' in (
      first.stdout), first.stdout
  with open(os.path.join(workdir, fidelity.REPORT_JSON)) as f:
    report = json.load(f)
  assert [l['steps'] for l in report['lengths']] == [4]
  for w in ('config', 'uniform', 'merged_only'):
    assert 0.0 <= report['weightings'][w]['mean'] <= 1.0
  with open(os.path.join(workdir, fidelity.PROXIES_FILE)) as f:
    assert len(f.read().splitlines()) == 6
  with Image.open(os.path.join(workdir, fidelity.FIGURE_FILE)) as png:
    assert png.size == scatter.size(1)
  first_time = time.time() - start
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         timeout=600, check=False)
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'To train: 0 proxies, 0 full trainings' in again.stdout
  assert 'Proxy fidelity (0 proxies and 0 full trainings in this run)' in (
      again.stdout)
  with open(os.path.join(workdir, fidelity.REPORT_JSON)) as f:
    assert json.load(f) == report
  print(f'measurement {first_time:.0f} s, rerun '
        f'{time.time() - start - first_time:.0f} s')


def test_a_malformed_proxies_file_is_named_in_one_line(tmp_path):
  workdir = tmp_path / 'fidelity'
  workdir.mkdir()
  (workdir / fidelity.PROXIES_FILE).write_text('{"steps": 2}\n')
  with pytest.raises(errors.ConfigError, match=r'fidelity_proxies\.jsonl: '
                     r"line 1 is not a proxy record \(KeyError\('label'\)\)"
                     r".*; fix or delete it\.$"):
    command.measure(_config(tmp_path), str(workdir), OPTIONS)
  assert not os.path.exists(tmp_path / 'never_built')
