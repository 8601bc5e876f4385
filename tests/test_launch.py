"""Sweep files and the local launcher (airstreams_jax/launch)."""

import glob
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from airstreams_jax import errors
from airstreams_jax.launch import local
from airstreams_jax.launch import record as record_lib
from airstreams_jax.launch import sweep
from experiments import ablations

SMOKE = 'configs/synthetic.py:smoke'


def test_product_of_axes_names_and_flattens():
  units = sweep.product(
      sweep.axis('seed', [0, 1]),
      sweep.axis('model.stop_gradient', [False, True],
                 names=['propagate', 'stop']),
      config=SMOKE, overrides={'loss_weights': {'rgb': 0.5}}, prefix='abl')
  assert [u.name for u in units] == [
      'abl,seed=0,propagate', 'abl,seed=0,stop', 'abl,seed=1,propagate',
      'abl,seed=1,stop']
  assert units[3].overrides == {'loss_weights.rgb': 0.5, 'seed': 1,
                                'model.stop_gradient': True}
  assert sweep.unit_name(sweep.Unit(SMOKE, {'model.streams': ('rgb',),
                                            'seed': 2})) == (
                                                'streams=rgb,seed=2')


def test_command_flags_parse_back_to_the_overridden_config(tmp_path):
  """What main's --config.* flags make of a unit equals apply_overrides."""
  overrides = {'model.streams': ('rgb', 'flow'), 'model.stop_gradient': True,
               'loss_weights': {'rgb': 0.25, 'interm': 2.0}, 'seed': 7,
               'loss_weights_file': '{workdir:evolve}/best_weights.json',
               'model.seg.widths': (8, 8, 8, 8), 'optimizer.name': 'sgd'}
  unit = sweep.check([sweep.Unit(SMOKE, overrides, name='u', after=()),
                      sweep.Unit(SMOKE, {}, name='evolve', mode='evolve')])
  root = str(tmp_path)
  argv = sweep.command([u for u in unit if u.name == 'u'][0], root)
  assert argv[1:3] == ['-m', 'airstreams_jax.main']
  # main's own flag definitions parse the unit's flags (in a subprocess:
  # config override flags live in absl's global FLAGS).
  parse = textwrap.dedent("""
      import json, sys
      from absl import flags
      from ml_collections import config_flags
      config = config_flags.DEFINE_config_file('config', None, '')
      flags.DEFINE_string('workdir', None, '')
      flags.DEFINE_string('mode', None, '')
      flags.FLAGS(sys.argv)
      print(json.dumps([config.value.to_dict(), flags.FLAGS.workdir]))
      """)
  proc = subprocess.run([sys.executable, '-c', parse] + argv[3:],
                        capture_output=True, text=True, check=True)
  parsed, workdir = json.loads(proc.stdout.strip().splitlines()[-1])
  expected = sweep.load_config(SMOKE)
  sweep.apply_overrides(expected, {k: sweep.resolve(v, root)
                                   for k, v in overrides.items()
                                   if k != 'loss_weights'})
  expected.loss_weights.rgb = 0.25
  expected.loss_weights.interm = 2.0
  assert parsed == json.loads(json.dumps(expected.to_dict()))
  assert parsed['loss_weights_file'] == os.path.join(
      root, 'evolve', 'best_weights.json')
  assert parsed['model']['streams'] == ['rgb', 'flow']
  assert workdir == os.path.join(root, 'u')


@pytest.mark.parametrize('units, message', [
    ([sweep.Unit(SMOKE, {'model.strems': ('rgb',)}, name='typo')],
     "unit 'typo': unknown config key 'model.strems'"),
    ([sweep.Unit(SMOKE, {'modle': {'streams': ('rgb',)}}, name='typo2')],
     "unit 'typo2': unknown config key 'modle'"),
    ([sweep.Unit(SMOKE, {'num_train_steps': 'many'}, name='type')],
     "unit 'type': Could not override field 'num_train_steps'"),
    ([sweep.Unit(SMOKE, name='a'), sweep.Unit(SMOKE, name='a')],
     "unit 'a' appears 2 times"),
    ([sweep.Unit(SMOKE, name='a', after=('b',))],
     "unit 'a' waits for 'b', which is not a unit"),
    ([sweep.Unit(SMOKE, name='a', after=('b',)),
      sweep.Unit(SMOKE, name='b', after=('a',))], 'in a cycle'),
    ([sweep.Unit(SMOKE, name='a/b')], "unit 'a/b': a name must"),
    ([sweep.Unit(SMOKE, name='a', mode='train')], "mode='train'"),
    ([sweep.Unit('configs/nope.py', name='a')], "unit 'a': config file"),
    ([], 'the sweep has no units'),
])
def test_check_names_the_unit_and_the_problem(units, message):
  with pytest.raises(errors.ConfigError, match=None) as caught:
    sweep.check(units)
  assert message in str(caught.value)
  assert '\n' not in str(caught.value)


def test_dependency_order_puts_dependencies_first():
  units = sweep.check([
      sweep.Unit(SMOKE, {'loss_weights_file': '{workdir:evolve}/b.json'},
                 name='evolved'),
      sweep.Unit(SMOKE, name='plain'),
      sweep.Unit(SMOKE, name='evolve', mode='evolve')])
  names = [u.name for u in units]
  assert names.index('evolve') < names.index('evolved')
  assert units[names.index('evolved')].dependencies() == ['evolve']


def test_launch_cli_rejects_a_bad_sweep_in_one_line(tmp_path):
  sweep_file = tmp_path / 'bad_sweep.py'
  sweep_file.write_text(textwrap.dedent(f"""
      from airstreams_jax.launch import sweep
      def get_sweep(arg=None):
        return [sweep.Unit({SMOKE!r}, {{'batch_sise': 4}}, name='u1')]
      """))
  proc = subprocess.run(
      [sys.executable, '-m', 'airstreams_jax.launch',
       f'--sweep={sweep_file}', f'--root={tmp_path / "root"}'],
      capture_output=True, text=True, check=False)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      "error: unit 'u1': unknown config key 'batch_sise' in "
      f'{SMOKE}; check its spelling against the config.']
  assert not (tmp_path / 'root').exists()


def _smoke_unit(name, data_dir, **overrides):
  return sweep.Unit(SMOKE, {'dataset.data_dir': data_dir, **overrides},
                    name=name)


def test_local_sweep_order_failures_and_rerun(tmp_path, data_dir):
  """Two smoke trainings (one waiting for the other), a unit that fails and
  one that waits for it; then a rerun that only retries the failure."""
  root = str(tmp_path / 'sweep')
  units = sweep.check([
      _smoke_unit('first', data_dir),
      sweep.Unit(SMOKE, {'dataset.data_dir': data_dir, 'seed': 1},
                 name='second', after=('first',)),
      _smoke_unit('broken', data_dir, **{'optimizer.name': 'adamax'}),
      sweep.Unit(SMOKE, {'dataset.data_dir': data_dir}, name='after_broken',
                 after=('broken',)),
  ])
  out = io.StringIO()
  result = local.run(units, root, sweep='test', parallel=2, out=out,
                     poll_s=0.2)
  entries = {e['name']: e for e in result['units']}
  assert {n: e['status'] for n, e in entries.items()} == {
      'first': 'done', 'second': 'done', 'broken': 'failed',
      'after_broken': 'blocked'}
  assert entries['second']['started'] >= entries['first']['finished']
  assert entries['broken']['return_code'] != 0
  text = out.getvalue()
  # The failure is named with the tail of its log: main's one-line error.
  assert 'broken FAILED' in text
  assert "error: Unknown optimizer 'adamax'" in text
  assert 'after_broken blocked: broken failed' in text
  for name in ('first', 'second'):
    workdir = os.path.join(root, name)
    with open(os.path.join(workdir, 'eval_results.json')) as f:
      results = json.load(f)
    assert entries[name]['metrics']['top1'] == results['top1']
    assert entries[name]['metrics']['params_sha256'] == (
        results['params_sha256'])
    assert os.path.getsize(os.path.join(workdir, record_lib.LOG_FILE)) > 0
  assert (entries['first']['metrics']['params_sha256'] !=
          entries['second']['metrics']['params_sha256'])  # Seeds differ.
  assert record_lib.read(root) == result

  # Rerun: done units are skipped; the failed one (and what waits for it)
  # are tried again.
  out = io.StringIO()
  again = local.run(units, root, sweep='test', parallel=2, out=out,
                    poll_s=0.2)
  entries = {e['name']: e for e in again['units']}
  assert entries['first']['attempts'] == 1
  assert entries['second']['attempts'] == 1
  assert entries['broken']['attempts'] == 2
  assert entries['after_broken']['status'] == 'blocked'
  assert '2 of 4 units already done' in out.getvalue()
  with open(os.path.join(root, 'first', record_lib.LOG_FILE)) as f:
    assert f.read().count('=== attempt') == 1

  # A done unit whose command changed is refused, not silently resumed.
  changed = [sweep.Unit(SMOKE, {'dataset.data_dir': data_dir, 'seed': 5},
                        name='first')]
  with pytest.raises(ValueError, match="unit 'first' finished with another"):
    local.run(sweep.check(changed), root, out=io.StringIO())


def test_sigterm_stops_children_and_a_rerun_resumes(tmp_path, data_dir):
  """SIGTERM to the launcher mid-training: the child stops, the record says
  interrupted; the same command again resumes the workdir and finishes."""
  root = tmp_path / 'sweep'
  sweep_file = tmp_path / 'one_unit.py'
  sweep_file.write_text(textwrap.dedent(f"""
      from airstreams_jax.launch import sweep
      def get_sweep(arg=None):
        return [sweep.Unit({SMOKE!r}, {{
            'dataset.data_dir': {data_dir!r}, 'num_train_steps': 16,
            'checkpoint_every_steps': 4, 'eval_every_steps': 16}},
            name='long')]
      """))
  command = [sys.executable, '-m', 'airstreams_jax.launch',
             f'--sweep={sweep_file}', f'--root={root}']
  launcher = subprocess.Popen(command, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
  checkpoints = root / 'long' / 'checkpoints'
  deadline = time.time() + 300
  while not (checkpoints.is_dir() and any(
      p.name.isdigit() for p in checkpoints.iterdir())):
    assert launcher.poll() is None, launcher.stdout.read()
    assert time.time() < deadline, 'no checkpoint within 300 s'
    time.sleep(0.5)
  launcher.send_signal(signal.SIGTERM)
  output, _ = launcher.communicate(timeout=120)
  assert launcher.returncode == 130, output
  assert 'SIGTERM: stopping 1 running unit(s)' in output
  entry = record_lib.read(root)['units'][0]
  assert entry['status'] == 'interrupted'
  assert not os.path.exists(root / 'long' / 'eval_results.json')

  proc = subprocess.run(command, capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  entry = record_lib.read(root)['units'][0]
  assert entry['status'] == 'done' and entry['attempts'] == 2
  assert entry['metrics']['step'] == 16
  with open(root / 'long' / record_lib.LOG_FILE) as f:
    log = f.read()
  assert 'Resumed from the checkpoint of step' in log
  assert 'Sweep: 1 of 1 units done' in proc.stdout


@pytest.mark.parametrize('sweep_file', sorted(
    glob.glob('experiments/sweeps/*.py')))
def test_shipped_sweep_files_expand_and_check(sweep_file):
  units = sweep.load(f'{sweep_file}:seeds=2,steps=10')
  assert len(units) >= 2
  assert all(u.overrides.get('num_train_steps') == 10 for u in units
             if u.mode == 'train_and_eval')


def test_ablation_sweep_units_and_dependencies():
  units = sweep.load('experiments/sweeps/ablations.py:'
                     'dataset_config=configs/synthetic.py:smoke,seeds=2')
  names = [u.name for u in units]
  assert len(units) == 1 + 2 * 10
  assert names[0] == 'evolve' and units[0].mode == 'evolve'
  by_name = {u.name: u for u in units}
  assert by_name['evolved_s1'].dependencies() == ['evolve']
  assert by_name['sem_stop_s0'].overrides['model.streams'] == (
      'rgb', 'semantic')
  assert by_name['sem_stop_s0'].overrides['model.stop_gradient'] is True
  assert by_name['merged_only_s1'].overrides['loss_weights'] == {
      'rgb': 0.0, 'flow': 0.0, 'semantic': 0.0, 'merged': 1.0,
      'interm': 0.0}
  assert by_name['rgb_s1'].overrides['seed'] == 1


def _entry(name, status='done', mode='train_and_eval', **metrics):
  return dict(name=name, status=status, mode=mode, metrics=metrics)


def test_tables_mean_std_and_formatting():
  assert ablations.mean_std([0.5]) == (0.5, 0.0)
  mean, std = ablations.mean_std([0.80, 0.90, 0.85])
  assert mean == pytest.approx(0.85)
  assert std == pytest.approx(0.05)  # Sample standard deviation (n - 1).
  assert ablations.format_cell([0.80, 0.90, 0.85]) == '85.0 ± 5.0 (3)'
  assert ablations.format_cell([]) == '—'

  record = {'units': [
      _entry('rgb_s0', top1=0.20, num_examples=256),
      _entry('rgb_s1', top1=0.30, num_examples=256),
      _entry('all_propagate_s0', top1=0.90, num_examples=256,
             representations={'seg_miou': 0.6, 'truth_seg_miou': 0.55,
                              'truth_teacher_miou': 1.0,
                              'flow_direction_accuracy': 0.8}),
      _entry('all_stop_s0', top1=0.70, num_examples=256),
      _entry('all_stop_s1', status='failed'),
      _entry('evolved_s0', status='blocked'),
      _entry('evolve', mode='evolve', best_weights={
          'rgb': 0.1, 'flow': 0.2, 'semantic': 0.3, 'merged': 0.4,
          'interm': 0.5}),
  ]}
  text = ablations.tables_markdown(record, title='Test')
  lines = text.splitlines()
  assert lines[0] == '# Test'
  assert 'on 256 test videos' in text
  assert 'Units: 5 of 7 done, 1 failed, 1 blocked.' in text
  assert '| RGB | 25.0 ± 7.1 (2) | 41.72 |' in lines
  assert '| RGB + semantics + flow | 90.0 ± 0.0 (1) | 50.02 |' in lines
  assert ('| RGB + semantics + flow | 70.0 ± 0.0 (1) | 47.76 | '
          '90.0 ± 0.0 (1) | 50.02 |') in lines
  assert '| RGB + semantics | — | 43.57 | — | 46.32 |' in lines
  assert '| evolved weights | — | 50.53 |' in lines
  assert ('Evolved weights (evolve): rgb 0.100, flow 0.200, semantic 0.300, '
          'merged 0.400, interm 0.500.') in lines
  assert ('| all_propagate | 60.0 ± 0.0 (1) | 55.0 ± 0.0 (1) | '
          '100.0 ± 0.0 (1) | 80.0 ± 0.0 (1) |') in lines
