"""The confirmation of a search's answer: the report and verdict on known
per-seed results (pure), and `confirm.confirm` on a finished search whose
full trainings are already in its workdir (it reads them and trains
nothing), with its one-line refusals."""

import json
import re
import os

import numpy as np
import pytest

from airstreams_jax import errors
from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.evolution import confirm
from airstreams_jax.evolution import confirmation
from airstreams_jax.evolution import full_runs
from airstreams_jax.evolution import proxy_trainer
from airstreams_jax.training import config_checks
from airstreams_jax.training import losses
from configs import synthetic

from tests.synthetic_fitness import NAMES, run_search

FIXED = confirmation.Entry('fixed', (1, 0, 0, 1, 4), (0.70, 0.72, 0.74))


def _entry(label, values, proxy=0.5):
  return confirmation.Entry(label, (0.5, 0.5, 0.5, 0.5, 0.5), values, proxy)


def test_the_verdict_needs_a_positive_difference_larger_than_its_se():
  table = confirmation.rows([
      # Differences +.05, +.04, +.05: mean +.04667, SE .00333.
      _entry('a', (0.75, 0.76, 0.79)),
      # +.02, -.01, .00: mean +.00333 < SE .00882: a draw, though > 0.
      _entry('b', (0.72, 0.71, 0.74)),
      # -.10, -.12, -.11: worse beyond noise.
      _entry('c', (0.60, 0.60, 0.63)),
      # The same per seed: difference 0 ± 0, a draw.
      _entry('d', (0.70, 0.72, 0.74)),
  ], FIXED)
  assert [r.entry.label for r in table] == ['fixed', 'a', 'b', 'c', 'd']
  assert table[0].difference is None and table[0].verdict is None
  assert table[0].mean == pytest.approx(0.72)
  assert table[0].se == pytest.approx(0.02 / np.sqrt(3))
  a, b, c, d = table[1:]
  assert a.difference.mean == pytest.approx(0.14 / 3)
  assert a.difference.se == pytest.approx(np.std([.05, .04, .05], ddof=1) /
                                          np.sqrt(3))
  assert a.verdict == confirmation.BEATS
  assert b.difference.mean == pytest.approx(0.01 / 3)
  assert b.difference.se > b.difference.mean > 0
  assert b.verdict == confirmation.DRAW
  assert c.verdict == confirmation.WORSE
  assert (d.difference.mean, d.difference.se, d.verdict) == (
      0.0, 0.0, confirmation.DRAW)
  # A positive difference without spread beats: larger than its SE of 0.
  assert confirmation.verdict(confirmation.fidelity_stats.PairedDifference(
      0.01, 0.0, 3)) == confirmation.BEATS


def test_the_report_gives_the_table_and_one_sentence_about_the_searchs_best():
  table = confirmation.rows([_entry('candidate_7', (0.72, 0.71, 0.74), 0.61),
                             _entry('candidate_2', (0.75, 0.76, 0.79))],
                            FIXED)
  text = confirmation.report_markdown(table, NAMES, 'top1', [0, 1, 2])
  lines = text.splitlines()
  # The verdict is the search's best's (the first searched row), a draw,
  # even though candidate_2 would beat the fixed weights: picking the best
  # of the confirmed would be chosen and judged on the same seeds.
  assert lines[2] == (
      "The search's best weighting (candidate_7) is a draw with the fixed "
      'weights (the difference is within its noise): paired difference '
      '+0.33 ± 0.88 points (mean ± SE over 3 seeds).')
  assert ('| fixed | rgb 1, flow 0, semantic 0, merged 1, interm 4 | — | '
          '72.00 ± 1.15 | — | the reference |') in lines
  assert ('| candidate_7 | rgb 0.5, flow 0.5, semantic 0.5, merged 0.5, '
          'interm 0.5 | 61.00 | 72.33 ± 0.88 | +0.33 ± 0.88 | '
          f'{confirmation.DRAW} |') in lines
  assert ('| candidate_2 | rgb 0.5, flow 0.5, semantic 0.5, merged 0.5, '
          'interm 0.5 | 50.00 | 76.67 ± 1.20 | +4.67 ± 0.33 | '
          f'{confirmation.BEATS} |') in lines
  assert '| fixed | 70.00 | 72.00 | 74.00 |' in lines
  record = confirmation.record(table, [0, 1, 2], 'evolution_report.md')
  assert record['verdict'] == confirmation.DRAW
  assert record['beats_fixed'] is False
  assert record['candidate'] == 'candidate_7'
  assert record['difference'] == pytest.approx(0.01 / 3)
  assert record['seeds'] == [0, 1, 2]
  beaten = confirmation.rows([_entry('c', (0.75, 0.76, 0.79))], FIXED)
  assert confirmation.record(beaten, [0, 1, 2], 'r.md')['beats_fixed']
  assert 'mAP (%)' in confirmation.report_markdown(beaten, NAMES, 'mAP',
                                                   [0, 1, 2])


def test_rows_refuse_unpaired_or_single_seeds():
  with pytest.raises(ValueError, match='pairs them by seed'):
    confirmation.rows([_entry('a', (0.7, 0.7))], FIXED)
  with pytest.raises(ValueError, match='needs >= 2 seeds'):
    confirmation.rows([_entry('a', (0.7,))],
                      confirmation.Entry('fixed', (1,) * 5, (0.7,)))


def _config(tmp_path, **evolution):
  config = synthetic.get_config('smoke')
  config.dataset.data_dir = str(tmp_path / 'never_built')
  config.evolution.update(dict(population_size=2, tournament_size=2,
                               num_evaluations=3, parallel=2,
                               confirm_seeds=3, confirm_top=2))
  config.evolution.update(evolution)
  return config


def _finished_search(config, workdir):
  """A search of `config.evolution` answered by a known fitness, its
  history written where `evolve` writes it."""
  search = run_search(proxy_trainer.settings_from_config(config))
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, candidates_lib.HISTORY_FILE), 'w') as f:
    f.write(candidates_lib.format_history(search.history, NAMES))
  return search


def _prefill(config, workdir, label, weights, values):
  """Finished full trainings of `weights`, as `train` leaves them."""
  for i, value in enumerate(values):
    seed = config.seed + i
    run = os.path.join(workdir, confirm.RUNS_DIR,
                       full_runs.run_name(label, seed))
    os.makedirs(run)
    with open(os.path.join(run, 'config.json'), 'w') as f:
      f.write(full_runs.run_config(config, weights, seed).to_json_best_effort())
    with open(os.path.join(run, 'eval_results.json'), 'w') as f:
      json.dump({'top1': value, 'num_examples': 16}, f)


def test_confirm_reads_finished_runs_writes_the_report_and_the_verdict(
    tmp_path):
  config = _config(tmp_path)
  workdir = str(tmp_path / 'search')
  search = _finished_search(config, workdir)
  top = search.top(2)
  fixed = config_checks.read_loss_weights(config)
  _prefill(config, workdir, f'candidate_{top[0].id}', top[0].weights,
           (0.75, 0.76, 0.79))
  _prefill(config, workdir, f'candidate_{top[1].id}', top[1].weights,
           (0.72, 0.71, 0.74))
  _prefill(config, workdir, 'fixed', fixed, (0.70, 0.72, 0.74))

  result = confirm.confirm(config, workdir)
  # Everything was in the workdir: nothing trained, no data touched.
  assert result['num_trained'] == 0
  assert not os.path.exists(tmp_path / 'never_built')
  assert result['verdict'] == confirmation.BEATS
  assert result['candidate'] == f'candidate_{top[0].id}'
  with open(os.path.join(workdir, confirm.REPORT_FILE)) as f:
    report = f.read()
  assert report.splitlines()[2].startswith(
      f"The search's best weighting (candidate_{top[0].id}) beats the fixed "
      'weights beyond noise: paired difference +4.67 ± 0.33 points')
  assert f'| candidate_{top[1].id} |' in report
  # best_weights.json: the search's best, with the verdict, and still a
  # weights file that training reads.
  best_file = os.path.join(workdir, 'best_weights.json')
  with open(best_file) as f:
    best = json.load(f)
  assert {k: best[k] for k in NAMES} == top[0].weights_dict(NAMES)
  assert best['confirmation']['beats_fixed'] is True
  assert confirm.read_record(workdir) == best['confirmation']
  trained = config.copy_and_resolve_references()
  trained.loss_weights_file = best_file
  np.testing.assert_allclose(config_checks.read_loss_weights(trained),
                             top[0].weights, rtol=1e-6)
  assert 'beats the fixed weights beyond noise (+4.67 ± 0.33 points over 3 ' \
      'seeds)' in confirm.summary_line(result)


def test_confirm_refuses_in_one_line_before_any_training(tmp_path):
  config = _config(tmp_path)
  workdir = str(tmp_path / 'search')
  with pytest.raises(errors.ConfigError, match=r'evolution_history.jsonl '
                     r'does not exist: --workdir must hold a search; run '
                     r'--mode=evolve there first\.$'):
    confirm.confirm(config, workdir)
  _finished_search(_config(tmp_path, num_evaluations=2), workdir)
  with pytest.raises(errors.ConfigError, match=r'has evaluated 2 of 3 '
                     r'weightings; finish it first'):
    confirm.confirm(config, workdir)
  for seeds, message in ((0, 'confirm_seeds=0: the confirmation needs >= 2 '
                          'seeds; set e.g. --config.evolution.confirm_seeds'
                          '=3.'),
                         (1, 'confirm_seeds=1 must be 0 (no confirmation) or '
                          '>= 2')):
    with pytest.raises(errors.ConfigError, match=re.escape(message)):
      confirm.confirm(_config(tmp_path, confirm_seeds=seeds), workdir)
  # A run directory trained with another config is not read as this one's.
  workdir = str(tmp_path / 'other')
  search = _finished_search(config, workdir)
  other = config.copy_and_resolve_references()
  other.num_train_steps += 1
  _prefill(other, workdir, f'candidate_{search.top(1)[0].id}',
           search.top(1)[0].weights, (0.7, 0.7, 0.7))
  with pytest.raises(errors.ConfigError, match=r'holds a training with other '
                     r'settings \(num_train_steps differ\); use the config'):
    confirm.confirm(config, workdir)
  assert not os.path.exists(tmp_path / 'never_built')


def test_a_rewritten_best_keeps_the_verdict_on_the_same_weights(tmp_path):
  """A finished search rerun (or resumed) rewrites best_weights.json: the
  verdict stays while the best weighting is the one it judged."""
  from airstreams_jax.evolution import evolve  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / 'best_weights.json')
  weights = dict(zip(NAMES, (0.5, 0.0, 0.25, 1.0, 0.75)))
  record = {'verdict': confirmation.DRAW, 'beats_fixed': False}
  with open(path, 'w') as f:
    json.dump(dict(weights, confirmation=record), f)
  evolve._write_best(path, weights)  # pylint: disable=protected-access
  with open(path) as f:
    assert json.load(f) == dict(weights, confirmation=record)
  other = dict(weights, rgb=0.75)
  evolve._write_best(path, other)  # pylint: disable=protected-access
  with open(path) as f:
    assert json.load(f) == other
  assert losses.RECORD_KEYS == ('confirmation',)
