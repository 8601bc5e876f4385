"""Sweep files and the local launcher (airstreams_jax/launch)."""

import glob
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from airstreams_jax import errors
from airstreams_jax.launch import config_overrides
from airstreams_jax.launch import local
from airstreams_jax.launch import record as record_lib
from airstreams_jax.launch import sweep
from airstreams_jax.tools import ablations
from airstreams_jax.tools import sweep_tables
from configs.sweeps import ablations as ablation_sweep

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


@pytest.mark.slow
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
  expected = config_overrides.load_config(SMOKE)
  config_overrides.apply_overrides(expected, {
      k: sweep.resolve(v, root) for k, v in overrides.items()
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
    # A key below a value, not a group: named like any unknown key.
    ([sweep.Unit(SMOKE, {'num_train_steps.max': 8}, name='leaf')],
     "unit 'leaf': unknown config key 'num_train_steps.max'"),
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
    ([sweep.Unit(SMOKE, {'dataset.teacher_options.arch': None}, name='n')],
     "unit 'n': dataset.teacher_options.arch: None cannot be passed"),
    ([sweep.Unit(SMOKE, {'seed': True}, name='b')],
     "unit 'b': seed: True is a bool; the config holds a int"),
    ([sweep.Unit(SMOKE, {'dataset.teacher_options.input_range':
                         (float('nan'), 1.0)}, name='t')],
     'does not survive the command line'),
    ([sweep.Unit(SMOKE, {'loss_weights': {}}, name='e')],
     "unit 'e': loss_weights: an empty dict overrides nothing"),
    ([sweep.Unit(SMOKE, name='experiment.json')], 'a name must'),
    ([sweep.Unit(SMOKE, name='x' * 121)], 'at most 120 characters'),
])
def test_check_names_the_unit_and_the_problem(units, message):
  with pytest.raises(errors.ConfigError, match=None) as caught:
    sweep.check(units)
  assert message in str(caught.value)
  assert '\n' not in str(caught.value)


def test_numpy_values_and_nested_workdir_references():
  units = sweep.check([
      sweep.Unit(SMOKE, {'optimizer.learning_rate': np.float64(0.25),
                         'model.seg.widths': (np.int64(8), 8, 8, 8),
                         'dataset': {'data_dir': '{workdir:prep}/tfds'}},
                 name='train'),
      sweep.Unit(SMOKE, name='prep')])
  train_unit = [u for u in units if u.name == 'train'][0]
  assert train_unit.dependencies() == ['prep']
  assert [u.name for u in units] == ['prep', 'train']
  argv = sweep.command(train_unit, '/r')
  assert '--config.optimizer.learning_rate=0.25' in argv
  assert '--config.model.seg.widths=(8, 8, 8, 8)' in argv
  assert '--config.dataset.data_dir=/r/prep/tfds' in argv


def test_record_rerun_rules(tmp_path):
  """Settings, not command text, decide whether a unit is the same run."""
  root = str(tmp_path)
  unit = sweep.Unit(SMOKE, {'seed': 1, 'loss_weights.rgb': 0.5}, name='u')
  record = record_lib.merge(None, [unit], root, 'test')
  record['units'][0].update(status='done', attempts=1)
  os.makedirs(os.path.join(root, 'u'))
  # Same settings, other override order and root spelling: the same run.
  same = sweep.Unit(SMOKE, {'loss_weights.rgb': 0.5, 'seed': 1}, name='u')
  again = record_lib.merge(record, [same], root + '/.', 'test')
  assert again['units'][0]['status'] == 'done'
  # Other settings with the old workdir present: refused, with the way out.
  other = sweep.Unit(SMOKE, {'seed': 2}, name='u')
  with pytest.raises(ValueError, match='ran before with other settings.*'
                     'delete .*/u to run it'):
    record_lib.merge(record, [other], root, 'test')
  # ... which works: without the workdir the unit starts afresh.
  os.rmdir(os.path.join(root, 'u'))
  fresh = record_lib.merge(record, [other], root, 'test')
  assert fresh['units'][0]['status'] == 'pending'
  # A done unit whose workdir was deleted runs again; units left out of the
  # sweep are kept under 'dropped'.
  rerun = record_lib.merge(record, [unit, sweep.Unit(SMOKE, name='v')],
                           root, 'test')
  assert [e['status'] for e in rerun['units']] == ['pending', 'pending']
  record['units'][0]['status'] = 'running'  # A launcher that died.
  os.makedirs(os.path.join(root, 'u'))
  shrunk = record_lib.merge(record, [sweep.Unit(SMOKE, name='v')], root, 't')
  assert [e['name'] for e in shrunk['dropped']] == ['u']
  regrown = record_lib.merge(shrunk, [unit], root, 't')
  assert regrown['units'][0]['status'] == 'interrupted'
  assert [e['name'] for e in regrown['dropped']] == ['v']


@pytest.mark.slow
def test_a_unit_that_exits_0_without_its_results_was_preempted(tmp_path):
  """`main` saves and exits 0 on SIGTERM (a preemption): without the
  results this attempt should have written, the unit is interrupted (rerun
  resumes it), not done."""
  root = str(tmp_path)
  unit = sweep.Unit(SMOKE, name='u')
  record = record_lib.merge(None, [unit], root, 'test')
  entry = record['units'][0]
  entry.update(status='running', attempts=1)
  os.makedirs(entry['workdir'])
  results = os.path.join(entry['workdir'], 'eval_results.json')

  def collect():
    # A child that exits 0 at once, as a preempted `main` does.
    job = local._Running(  # pylint: disable=protected-access
        process=subprocess.Popen(['true']), slot=0, started=time.time(),
        log=open(os.path.join(root, 'log'), 'a'))
    job.process.wait()
    running = {'u': job}
    out = io.StringIO()
    local._collect_finished(  # pylint: disable=protected-access
        running, {'u': entry}, local._Progress(1, 0, out))  # pylint: disable=protected-access
    assert not running
    return out.getvalue()

  printed = collect()
  assert entry['status'] == 'interrupted' and entry['return_code'] == 0
  assert 'u preempted: it saved its step' in printed
  assert record_lib.units_to_run(record) == ['u']
  # Results of an earlier attempt do not count either.
  with open(results, 'w') as f:
    json.dump({'top1': 0.5}, f)
  os.utime(results, (time.time() - 60,) * 2)
  collect()
  assert entry['status'] == 'interrupted'
  # This attempt's results: done, with its metrics.
  os.utime(results)
  collect()
  assert entry['status'] == 'done' and entry['metrics']['top1'] == 0.5


def test_one_launcher_per_root(tmp_path):
  root = str(tmp_path)
  with local._only_launcher(root):  # pylint: disable=protected-access
    with pytest.raises(ValueError, match='another launcher is running'):
      local.run([sweep.Unit(SMOKE, name='u')], root, out=io.StringIO())


def test_gpu_slots_share_the_visible_gpus(monkeypatch):
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '2,3,5,7')
  resources = local.Resources(gpus_per_unit=2)
  assert resources.environment(0)['CUDA_VISIBLE_DEVICES'] == '2,3'
  assert resources.environment(1)['CUDA_VISIBLE_DEVICES'] == '5,7'
  resources.check(2)
  with pytest.raises(ValueError, match='need 6 GPUs; CUDA_VISIBLE_DEVICES '
                     'has 4'):
    resources.check(3)


@pytest.mark.slow
def test_fake_device_slots_get_their_count_and_patient_collectives(
    monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=8 '
                     '--xla_dump_to=/tmp/dump')
  env = local.Resources(cpu_devices_per_unit=2).environment(0)
  flags = env['XLA_FLAGS'].split()
  assert flags == [
      '--xla_dump_to=/tmp/dump', '--xla_force_host_platform_device_count=2',
      '--xla_cpu_collective_call_terminate_timeout_seconds=900']
  # XLA knows the flag (an unknown one aborts the process) and the devices
  # still reduce together.
  result = subprocess.run(
      [sys.executable, '-c', 'import jax; print(jax.pmap(lambda v: '
       'jax.lax.psum(v, "i"), axis_name="i")(jax.numpy.ones(2)))'],
      env=dict(env, XLA_FLAGS=' '.join(flags[1:])), capture_output=True,
      text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ['[2.', '2.]']


def test_dependency_order_puts_dependencies_first():
  units = sweep.check([
      sweep.Unit(SMOKE, {'loss_weights_file': '{workdir:evolve}/b.json'},
                 name='evolved'),
      sweep.Unit(SMOKE, name='plain'),
      sweep.Unit(SMOKE, name='evolve', mode='evolve')])
  names = [u.name for u in units]
  assert names.index('evolve') < names.index('evolved')
  assert units[names.index('evolved')].dependencies() == ['evolve']


@pytest.mark.slow
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
  # One checkpoint, at the end: each save costs seconds on CPU.
  return sweep.Unit(SMOKE, {'dataset.data_dir': data_dir,
                            'checkpoint_every_steps': 8, **overrides},
                    name=name)


@pytest.mark.slow
def test_local_sweep_order_failures_and_rerun(tmp_path, data_dir):
  """Two smoke trainings (one waiting for the other), a unit that fails and
  one that waits for it; then a rerun that only retries the failure."""
  root = str(tmp_path / 'sweep')
  units = sweep.check([
      _smoke_unit('first', data_dir),
      sweep.Unit(SMOKE, {'dataset.data_dir': data_dir, 'seed': 1,
                         'checkpoint_every_steps': 8},
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
  assert "error: config.optimizer.name='adamax' is unknown" in text
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
  with pytest.raises(ValueError, match="unit 'first' ran before with other"):
    local.run(sweep.check(changed), root, out=io.StringIO())


@pytest.mark.slow
def test_sigterm_stops_children_and_a_rerun_resumes(tmp_path, data_dir):
  """SIGTERM to the launcher mid-training: the child stops, the record says
  interrupted; the same command again resumes the workdir and finishes."""
  root = tmp_path / 'sweep'
  sweep_file = tmp_path / 'one_unit.py'
  sweep_file.write_text(textwrap.dedent(f"""
      from airstreams_jax.launch import sweep
      def get_sweep(arg=None):
        return [sweep.Unit({SMOKE!r}, {{
            'dataset.data_dir': {data_dir!r}, 'num_train_steps': 12,
            'checkpoint_every_steps': 4, 'eval_every_steps': 12}},
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
  assert entry['metrics']['step'] == 12
  with open(root / 'long' / record_lib.LOG_FILE) as f:
    log = f.read()
  assert 'Resumed from the checkpoint of step' in log
  assert 'Sweep: 1 of 1 units done' in proc.stdout


_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('sweep_file', sorted(
    os.path.relpath(p, _REPOSITORY) for p in
    glob.glob(os.path.join(_REPOSITORY, 'configs', 'sweeps', '[!_]*.py'))))
def test_shipped_sweep_files_expand_and_check(sweep_file):
  units = sweep.load(f'{sweep_file}:seeds=2,steps=10')
  assert len(units) >= 2
  assert all(u.overrides.get('num_train_steps') == 10 for u in units
             if u.mode == 'train_and_eval')


def test_ablation_sweep_units_and_dependencies():
  units = sweep.load('configs/sweeps/ablations.py:'
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
  # Table 3 and the evolution use the full model whatever the config's
  # own arguments chose.
  for name in ('evolve', 'merged_only_s0', 'uniform_s1', 'evolved_s0'):
    assert by_name[name].overrides['model.streams'] == (
        'rgb', 'flow', 'semantic')
    assert by_name[name].overrides['model.stop_gradient'] is False


def test_parse_override_reads_the_keys_type():
  config = config_overrides.load_config(SMOKE)
  parsed = dict(config_overrides.parse_override(config, text) for text in (
      'dataset.manual_dir=/data/hmdb 51', 'dataset.image_size=48',
      'optimizer.learning_rate=1e-3', 'model.stop_gradient=True',
      'model.streams=("rgb", "flow")', 'dataset.teacher=a=b'))
  assert parsed == {'dataset.manual_dir': '/data/hmdb 51',
                    'dataset.image_size': 48,
                    'optimizer.learning_rate': 1e-3,
                    'model.stop_gradient': True,
                    'model.streams': ('rgb', 'flow'),
                    'dataset.teacher': 'a=b'}
  assert isinstance(parsed['dataset.image_size'], int)
  # Typed placeholders (None until set) are read as their declared type,
  # as main's flags read them.
  folder = config_overrides.load_config('configs/video_folder.py')
  assert config_overrides.parse_override(
      folder, 'dataset.teacher_options.cache_dir=123') == (
          'dataset.teacher_options.cache_dir', '123')
  key, value = config_overrides.parse_override(
      folder, 'dataset.teacher_options.input_range=(0, 1)')
  assert value == (0, 1)
  # What it parsed passes the sweep's own check of keys and types.
  sweep.check([sweep.Unit(SMOKE, parsed, name='u')])


@pytest.mark.parametrize('text, message', [
    ('dataset.image_size', 'give KEY=VALUE'),
    ('dataset.imagesize=3', "unknown config key 'dataset.imagesize'"),
    ('datasets.image_size=3', "unknown config key 'datasets.image_size'"),
    ('seed.max=3', "unknown config key 'seed.max'"),
    ('dataset.image_size=3.5', 'holds an integer (now 32)'),
    ('model.stop_gradient=yes', 'holds true or false'),
    ('model.streams=rgb', 'holds a tuple'),
    ('dataset=x', 'dataset is a group of keys; set one of them'),
])
def test_parse_override_errors_name_the_key(text, message):
  with pytest.raises(errors.ConfigError, match=re.escape(message)):
    config_overrides.parse_override(config_overrides.load_config(SMOKE), text)


def test_ablation_overrides_reach_every_unit():
  units = ablation_sweep.units(
      'configs/video_folder.py:smoke', seeds=1, data_dir='/d',
      overrides={'dataset.manual_dir': '/videos', 'dataset.teacher': 'files'})
  assert len(units) == 11
  for unit in units:
    assert unit.overrides['dataset.manual_dir'] == '/videos'
    assert unit.overrides['dataset.teacher'] == 'files'
    assert unit.overrides['dataset.data_dir'] == '/d'


@pytest.mark.parametrize('config, sets, message', [
    # A real dataset without its local copy: one line naming the flag, not
    # 31 failing units.
    ('configs/hmdb51.py:split=1', [],
     "dataset 'hmdb51': Dataset 'hmdb51' reads a local copy: set "
     '--set=dataset.manual_dir=DIR (and --data_dir for the built dataset).'),
    ('configs/video_folder.py:smoke',
     ['dataset.manual_dir=/no/such/folder'],
     "dataset 'video_folder': --set=dataset.manual_dir=/no/such/folder: no "
     'such directory'),
    # An existing folder without videos: the listing, not the build, says so.
    ('configs/video_folder.py:smoke', ['dataset.manual_dir={empty}'],
     "dataset 'video_folder': video_folder: {empty} has no split folders"),
    ('configs/synthetic.py:smoke', ['model.dropout_rate=1.5'],
     "unit 'evolve': config.model.dropout_rate=1.5 is out of range"),
    # The evolution's own limits, before the training units start too.
    ('configs/synthetic.py:smoke', ['evolution.population_size=9'],
     "unit 'evolve': config.evolution.num_evaluations=8 must be >= "
     'population_size=9'),
    ('configs/synthetic.py:smoke', ['optimizer.name=adamax'],
     "unit 'evolve': config.optimizer.name='adamax' is unknown"),
    # train.validate_config's checks too (here: the merge block).
    ('configs/synthetic.py:smoke', ['model.merge_after=9'],
     "unit 'evolve': config.model.merge_after"),
    ('configs/synthetic.py:smoke', ['seed=two'],
     "'seed=two': seed holds an integer"),
    # Keys the sweep sets per unit would silently lose to the sweep's values.
    ('configs/synthetic.py:smoke', ['seed=3'],
     '--set=seed: the sweep sets it per unit; use --seeds.'),
    ('configs/synthetic.py:smoke', ['loss_weights.rgb=2.0'],
     '--set=loss_weights.rgb: the sweep sets it per unit; '),
    ('configs/synthetic.py:smoke',
     ['dataset.image_size=24', 'dataset.image_size=28'],
     '--set=dataset.image_size is given twice; give it once.'),
    ('configs/synthetic.py:distractors=x', [],
     "unit 'evolve': config 'configs/synthetic.py:distractors=x' fails to "
     'load: ValueError'),
])
def test_ablations_check_everything_before_any_unit_starts(
    tmp_path, config, sets, message):
  (tmp_path / 'empty').mkdir()
  sets = [s.format(empty=tmp_path / 'empty') for s in sets]
  with pytest.raises((errors.ConfigError, ValueError)) as raised:
    ablations.checked_units(config, sets, seeds=1)
  assert str(raised.value).startswith(
      message.format(empty=tmp_path / 'empty')), str(raised.value)


@pytest.mark.slow
def test_ablations_cli_stops_in_one_line_before_any_unit(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'airstreams_jax.tools.ablations',
       f'--root={tmp_path / "root"}', '--dataset_config=configs/hmdb51.py'],
      capture_output=True, text=True, check=False, timeout=120)
  assert proc.returncode == 1, proc.stderr
  assert proc.stderr.strip().splitlines() == [
      "error: dataset 'hmdb51': Dataset 'hmdb51' reads a local copy: set "
      '--set=dataset.manual_dir=DIR (and --data_dir for the built dataset).']
  assert not (tmp_path / 'root').exists()


def _entry(name, status='done', mode='train_and_eval', **metrics):
  return dict(name=name, status=status, mode=mode, metrics=metrics)


def test_tables_mean_std_and_formatting():
  assert sweep_tables.mean_std([0.5]) == (0.5, 0.0)
  mean, std = sweep_tables.mean_std([0.80, 0.90, 0.85])
  assert mean == pytest.approx(0.85)
  assert std == pytest.approx(0.05)  # Sample standard deviation (n - 1).
  assert sweep_tables.format_cell([0.80, 0.90, 0.85]) == '85.0 ± 5.0 (3)'
  assert sweep_tables.format_cell([0.5]) == '50.0 (1)'
  assert sweep_tables.format_cell([]) == '—'

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
  assert '| RGB + semantics + flow | 90.0 (1) | 50.02 |' in lines
  assert ('| RGB + semantics + flow | 70.0 (1) | 47.76 | '
          '90.0 (1) | 50.02 |') in lines
  assert '| RGB + semantics | — | 43.57 | — | 46.32 |' in lines
  assert '| evolved weights | — | 50.53 |' in lines
  assert ('Evolved weights (evolve): rgb 0.100, flow 0.200, semantic 0.300, '
          'merged 0.400, interm 0.500.') in lines
  assert ('| all_propagate | 60.0 (1) | 55.0 (1) | 100.0 (1) | '
          '80.0 (1) |') in lines


def _alive(pid):
  try:
    with open(f'/proc/{pid}/status') as f:
      return 'zombie' not in f.read()
  except FileNotFoundError:
    return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='PR_SET_PDEATHSIG is Linux-only.')
def test_children_die_with_a_killed_launcher(tmp_path):
  """SIGKILL to the launcher (no chance to clean up): its running unit is
  terminated by the kernel instead of training on, orphaned."""
  root = tmp_path / 'sweep'
  sweep_file = tmp_path / 'sleepy.py'
  sweep_file.write_text(textwrap.dedent(f"""
      from airstreams_jax.launch import sweep
      def get_sweep(arg=None):
        return [sweep.Unit({SMOKE!r}, {{'num_train_steps': 100000,
            'dataset.data_dir': {str(tmp_path / 'tfds')!r}}}, name='long')]
      """))
  launcher = subprocess.Popen(
      [sys.executable, '-m', 'airstreams_jax.launch',
       f'--sweep={sweep_file}', f'--root={root}'],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  pid = None
  while pid is None:
    assert time.time() < deadline and launcher.poll() is None
    time.sleep(0.2)
    record = record_lib.read(root) if (root / 'experiment.json').exists() \
        else None
    if record and record['units'][0]['status'] == 'running':
      pid = record['units'][0]['pid']
  assert _alive(pid)
  launcher.kill()
  launcher.wait()
  deadline = time.time() + 60
  try:
    while _alive(pid):
      assert time.time() < deadline, f'unit {pid} outlived its launcher'
      time.sleep(0.2)
  finally:
    if _alive(pid):
      os.killpg(pid, signal.SIGKILL)


def test_sweep_summary_groups_seeds_and_reads_the_flow_constants(tmp_path):
  """sweep_tables.summary_markdown on known inputs: seeds of a setting are one
  row (mean ± std), θ is the last logged value of each unit."""
  units = []
  for name, top1, theta in (('flow,stop,seed=0', 0.8, 0.3),
                            ('flow,stop,seed=1', 0.9, 0.3),
                            ('flow,propagate,seed=0', 0.5, 0.2)):
    units.append({'name': name, 'status': 'done', 'mode': 'train_and_eval',
                  'metrics': {'top1': top1,
                              'per_stream': {'flow': top1 / 2}}})
    with tf.summary.create_file_writer(str(tmp_path / name)).as_default():
      tf.summary.scalar('train/flow_layer/theta', 0.3, step=1)
      tf.summary.scalar('train/flow_layer/theta', theta, step=5)
  units.append({'name': 'broken,seed=0', 'status': 'failed',
                'mode': 'train_and_eval', 'metrics': {}})
  text = sweep_tables.summary_markdown(str(tmp_path), {'units': units})
  lines = text.strip().splitlines()
  assert lines[0] == '| setting | top-1 | flow head | θ | λ | τ |'
  assert lines[2] == ('| flow,stop | 85.0 ± 7.1 (2) | 42.5 ± 3.5 (2) | '
                      '0.300 ± 0.000 (2) | — | — |')
  assert lines[3] == ('| flow,propagate | 50.0 (1) | 25.0 (1) | 0.200 (1) '
                      '| — | — |')
  assert len(lines) == 4  # The failed unit has no row.
