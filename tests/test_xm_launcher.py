"""The XManager launcher: real sweeps through xm_local, and the one-line error
when XManager is not installed (it is an optional dependency)."""

import io
import json
import os
import sys

import pytest

from airstreams_jax import errors
from airstreams_jax.launch import record as record_lib
from airstreams_jax.launch import sweep
from airstreams_jax.launch import xm_launcher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = 'configs/synthetic.py:smoke'
# Two steps: still a checkpoint and a final evaluation.
TINY = {'num_train_steps': 2, 'eval_every_steps': 2,
        'checkpoint_every_steps': 2, 'log_every_steps': 1}


def test_without_xmanager_launch_names_the_pip_command(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'xmanager', None)  # As if not installed.
  units = [sweep.Unit(config=SMOKE, name='unit')]
  with pytest.raises(errors.ConfigError) as info:
    xm_launcher.launch(units, str(tmp_path / 'sweep'))
  message = str(info.value)
  assert (f'pip install xmanager=={xm_launcher.XMANAGER_VERSION}'
          in message), message
  assert '\n' not in message  # main prints it as one line.
  assert not os.path.exists(tmp_path / 'sweep')  # Nothing was written.


@pytest.fixture(scope='module')
def xm_home(tmp_path_factory):
  """A home of its own, where XManager keeps its experiment database
  (~/.xmanager/experiments.sqlite3), so tests leave the user's alone."""
  pytest.importorskip('xmanager')
  with pytest.MonkeyPatch.context() as patch:
    home = tmp_path_factory.mktemp('home')
    patch.setenv('HOME', str(home))
    yield home


def _files(directory):
  return [os.path.join(path, name) for path, _, names in os.walk(directory)
          for name in names]


@pytest.mark.slow
def test_sweep_runs_as_work_units_after_their_dependencies(
    tmp_path, data_dir, xm_home, monkeypatch):
  pytest.importorskip('xmanager')
  monkeypatch.chdir(ROOT)  # The config path is relative, as main takes it.
  overrides = dict(TINY, **{'dataset.data_dir': data_dir})
  units = sweep.check([
      sweep.Unit(config=SMOKE, name='first', overrides=overrides),
      sweep.Unit(config=SMOKE, name='second', after=('first',),
                 overrides=dict(overrides, seed=1)),
  ])
  root = str(tmp_path / 'sweep')
  snapshots = []
  record = xm_launcher.launch(
      units, root, sweep='test', out=io.StringIO(),
      on_change=lambda r: snapshots.append(
          {e['name']: e['status'] for e in r['units']}))

  with open(os.path.join(root, record_lib.RECORD_FILE)) as f:
    assert json.load(f) == record
  assert isinstance(record['xm_experiment_id'], int)
  for entry in record['units']:
    assert entry['status'] == 'done', entry
    assert (entry['return_code'], entry['attempts']) == (0, 1)
    assert entry['metrics']['step'] == 2
    assert entry['started'] <= entry['finished']
    with open(os.path.join(entry['workdir'], 'eval_results.json')) as f:
      assert json.load(f)['step'] == 2
    with open(entry['log']) as f:
      log = f.read()
    assert log.startswith('=== attempt 1, ')
    assert 'merged top-1' in log  # main's stdout reached the unit's log.
  first, second = record['units']
  assert second['command'][4] == f"--workdir={os.path.join(root, 'second')}"

  # The launcher started `second` only once `first` was done ...
  running_second = [s for s in snapshots if s['second'] == 'running']
  assert running_second and all(s['first'] == 'done' for s in running_second)
  assert second['started'] >= first['finished']
  # ... and the files say the same: all of `second` was written after all
  # of `first`.
  assert max(os.path.getmtime(p) for p in _files(first['workdir'])) <= min(
      os.path.getmtime(p) for p in _files(second['workdir']))

  # A rerun finds both done and submits nothing.
  snapshots.clear()
  again = xm_launcher.launch(units, root, sweep='test', out=io.StringIO(),
                             on_change=lambda r: snapshots.append(
                                 {e['name']: e['status'] for e in r['units']}))
  assert [e['attempts'] for e in again['units']] == [1, 1]
  assert all(s == {'first': 'done', 'second': 'done'} for s in snapshots)


@pytest.mark.slow
def test_failed_unit_is_recorded_and_blocks_the_units_after_it(
    tmp_path, xm_home, monkeypatch):
  pytest.importorskip('xmanager')
  monkeypatch.chdir(ROOT)
  # main rejects the optimizer in a few seconds, before building any data.
  overrides = {'dataset.data_dir': str(tmp_path / 'never_built')}
  units = sweep.check([
      sweep.Unit(config=SMOKE, name='bad',
                 overrides=dict(overrides, **{'optimizer.name': 'adam'})),
      sweep.Unit(config=SMOKE, name='waits', after=('bad',),
                 overrides=overrides),
  ])
  root = str(tmp_path / 'sweep')
  out = io.StringIO()
  record = xm_launcher.launch(units, root, out=out)

  bad, waits = record['units']
  assert (bad['status'], bad['return_code'], bad['attempts']) == (
      'failed', 1, 1)
  assert (waits['status'], waits['attempts']) == ('blocked', 0)
  assert not os.path.exists(waits['workdir'])  # Never started.
  # The failure is reported with the end of the unit's log.
  assert "config.optimizer.name='adam' is unknown" in out.getvalue()
  assert 'bad FAILED (exit code 1)' in out.getvalue()
  assert not os.path.exists(tmp_path / 'never_built')
