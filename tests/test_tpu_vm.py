"""The Cloud TPU VM launcher (airstreams_jax/launch/tpu_vm.py): the gcloud
commands it builds, read back as a shell would read them. No gcloud, TPU or
bucket is used: the commands are checked, not run."""

import os
import shlex
import subprocess
import sys

import pytest

from airstreams_jax import errors
from airstreams_jax.launch import sweep
from airstreams_jax.launch import tpu_vm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = 'configs/synthetic.py:smoke'
COMMIT = 'c0ffee' + '0' * 34
V4_32 = tpu_vm.Slice('my-v4', 'us-central2-b', 'my-project', 'v4-32')
GCS_ROOT = 'gs://bucket/runs'
DATA_DIR = 'gs://bucket/tfds'
# A value with spaces, both quotes and shell characters: it must reach main
# as one argument, unchanged, through the local and the worker's shell.
AWKWARD = 'gs://bucket/my videos/it\'s "here" $HOME;`x`'
UNITS = [
    sweep.Unit(SMOKE, {'seed': 0, 'dataset.manual_dir': AWKWARD},
               name='first'),
    sweep.Unit(SMOKE, {'seed': 1}, name='second', after=('first',)),
]


def _requirements():
  with open(os.path.join(ROOT, 'requirements.txt')) as f:
    return f.read()


def _plan(action, **kwargs):
  defaults = dict(units=UNITS, root=GCS_ROOT, data_dir=DATA_DIR,
                  commit=COMMIT, requirements_text=_requirements(),
                  bundle_path='/tmp/b.bundle', logs_dir='logs')
  return tpu_vm.plan(action, V4_32, **dict(defaults, **kwargs))


def _pasted(step):
  """The step as print_plan prints it, split as a shell splits it."""
  return shlex.split(shlex.join(step.argv))


def _script(argv):
  [command] = [a for a in argv if a.startswith('--command=')]
  return command[len('--command='):]


def _shell_words(script):
  """The worker's script in shell tokens (`( ) ; && |` apart)."""
  lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
  lexer.whitespace_split = True
  return list(lexer)


def _main_args(script):
  """The arguments the worker's shell gives main."""
  words = _shell_words(script)
  start = words.index('.venv/bin/python') + 1
  return words[start:words.index(')', start)]


def test_a_4_worker_slice_gets_one_command_for_all_workers():
  assert tpu_vm.workers('v4-32') == 4 and tpu_vm.workers('v4-8') == 1
  for action in ('setup', 'run', 'status', 'logs'):
    for step in _plan(action):
      argv = _pasted(step)
      assert argv == list(step.argv)  # print_plan's line pastes back.
      if argv[:4] != ['gcloud', 'compute', 'tpus', 'tpu-vm']:
        continue
      assert '--zone=us-central2-b' in argv and '--project=my-project' in argv
      if argv[4] in ('ssh', 'scp'):
        # Not one command per worker: gcloud runs it on each at once.
        assert [a for a in argv if a.startswith('--worker')] == [
            '--worker=all'], argv
  run = _plan('run')
  assert len(run) == len(UNITS)
  # The same command prefix for every unit, workers all.
  assert {tuple(s.argv[:7]) for s in run} == {(
      'gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'my-v4', '--worker=all')}
  printed = []
  tpu_vm.print_plan(run, workers=4, out=type('Out', (), {
      'write': lambda self, text: printed.append(text)})())
  assert '4 worker(s)' in ''.join(printed).splitlines()[0]


def test_setup_installs_the_pinned_tpu_jax_at_the_commit():
  steps = _plan('setup')
  jax = tpu_vm.pinned_version(_requirements(), 'jax')
  assert jax == tpu_vm.pinned_version(_requirements(), 'jaxlib')
  bundle, scp, ssh = (_pasted(s) for s in steps)
  assert bundle == ['git', 'bundle', 'create', '/tmp/b.bundle', 'HEAD']
  assert scp[4:7] == ['scp', '/tmp/b.bundle', f'my-v4:{tpu_vm.BUNDLE}']
  words = _shell_words(_script(ssh))
  assert ['checkout', '-q', '--force', '--detach', COMMIT] == words[
      words.index('checkout'):words.index('checkout') + 5]
  install = words.index('-r')
  assert words[install - 3:install + 7] == [
      '.venv/bin/pip', 'install', '-q', '-r', 'requirements.txt',
      f'jax[tpu]=={jax}', '-f', tpu_vm.LIBTPU_FIND_LINKS, '-e', '.']
  # And the worker checks what it got.
  check = words[words.index('-c') + 1]
  assert check == f"import jax; assert jax.__version__ == '{jax}', " + (
      'jax.__version__')
  # The version comes from requirements.txt's text, not a constant.
  other = _requirements().replace(f'jax=={jax}\n', 'jax==9.9.9\n')
  assert 'jax[tpu]==9.9.9' in _script(_plan(
      'setup', requirements_text=other)[2].argv)
  with pytest.raises(errors.ConfigError, match='pins no jax version'):
    _plan('setup', requirements_text='numpy==2.4.6\n')


def test_run_gives_main_each_units_gs_workdir_and_quoted_overrides():
  for step, unit in zip(_plan('run'), sweep.check(UNITS)):
    script = _script(_pasted(step))
    args = _main_args(script)
    expected = tpu_vm.main_args(tpu_vm.with_data_dir([unit], DATA_DIR)[0],
                                GCS_ROOT)
    assert args == expected  # Through both shells, unchanged.
    assert args[:2] == ['-m', 'airstreams_jax.main']
    assert f'--workdir={GCS_ROOT}/{unit.name}' in args
    assert f'--config.dataset.data_dir={DATA_DIR}' in args
    words = _shell_words(script)
    # The commit is checked before main starts; the log goes to the workdir.
    assert words.index(COMMIT) < words.index('.venv/bin/python')
    assert f'{GCS_ROOT}/{unit.name}/logs/{unit.name}.$(hostname).log' in (
        words)
  first_args = _main_args(_script(_plan('run')[0].argv))
  assert f'--config.dataset.manual_dir={AWKWARD}' in first_args


def test_logs_come_from_every_unit_to_one_folder():
  upload, pull = _plan('logs')
  words = _shell_words(_script(upload.argv))
  assert words[:4] == ['for', 'u', 'in', 'first']
  assert pull.argv == ('gcloud', 'storage', 'cp', f'{GCS_ROOT}/*/logs/*.log',
                       'logs')


@pytest.mark.parametrize('change, message', [
    (dict(root='/local/runs'), '--root=/local/runs: --launcher=tpu_vm needs '
     'a gs:// path'),
    (dict(root=''), '--root=: --launcher=tpu_vm needs a gs:// path'),
    (dict(data_dir='~/tensorflow_datasets'), '--data_dir=~/tensorflow_datas'),
    (dict(units=[sweep.Unit(SMOKE, {'dataset.data_dir': 'gs://other'},
                            name='u')]),
     "unit 'u' sets dataset.data_dir=gs://other, and --data_dir="),
])
def test_bad_input_is_one_line_naming_the_fix(change, message):
  with pytest.raises(errors.ConfigError) as info:
    _plan('run', **change)
  assert message in str(info.value) and '\n' not in str(info.value)
  for bad_slice, flag in ((tpu_vm.Slice('My_TPU', 'z'), '--tpu='),
                          (tpu_vm.Slice('ok', ''), '--zone')):
    with pytest.raises(errors.ConfigError, match=flag):
      tpu_vm.plan('status', bad_slice)
  with pytest.raises(errors.ConfigError, match='--accelerator_type'):
    tpu_vm.plan('create', tpu_vm.Slice('ok', 'z'))


def test_execute_stops_at_the_first_failure_and_names_it():
  calls = []

  def run(argv, codes=iter([0, 2, 0])):
    calls.append(argv)
    return subprocess.CompletedProcess(argv, next(codes))

  steps = _plan('run', units=UNITS + [sweep.Unit(SMOKE, name='third')])
  with pytest.raises(errors.ConfigError) as info:
    tpu_vm.execute(steps, run=run, out=open(os.devnull, 'w'))
  assert len(calls) == 2  # The third unit did not start.
  assert str(info.value).startswith(
      "step 2 of 3 (run unit 'second' on every worker")
  assert 'exit code 2' in str(info.value)

  def missing(argv):
    raise FileNotFoundError(argv[0])

  with pytest.raises(errors.ConfigError) as info:
    tpu_vm.execute(steps, run=missing, out=open(os.devnull, 'w'))
  assert 'gcloud is not installed; install the Google Cloud CLI' in str(
      info.value)


@pytest.mark.slow
def test_cli_dry_run_prints_the_commands_and_refuses_a_local_root(tmp_path):
  base = [sys.executable, '-m', 'airstreams_jax.launch', '--launcher=tpu_vm',
          '--tpu=my-v4', '--zone=us-central2-b', '--accelerator_type=v4-32',
          f'--config={SMOKE}', f'--set=dataset.manual_dir={AWKWARD}',
          f'--data_dir={DATA_DIR}']
  proc = subprocess.run(base + ['--action=run', f'--root={GCS_ROOT}',
                                '--dry_run'],
                        capture_output=True, text=True, cwd=ROOT, check=False)
  assert proc.returncode == 0, proc.stderr
  header, what, line = proc.stdout.strip().splitlines()
  assert header.startswith('# 4 worker(s)') and "'run'" in what
  commit, _ = tpu_vm.git_state(ROOT)
  script = _script(shlex.split(line))
  assert f'= {commit} ||' in script
  assert f'--config.dataset.manual_dir={AWKWARD}' in _main_args(script)

  proc = subprocess.run(base + ['--action=run', f'--root={tmp_path}'],
                        capture_output=True, text=True, cwd=ROOT, check=False)
  assert proc.returncode == 1 and proc.stdout == ''
  assert proc.stderr.strip().splitlines() == [
      f'error: --root={tmp_path}: --launcher=tpu_vm needs a gs:// path that '
      'every worker (or job) reads and writes, e.g. --root=gs://BUCKET/runs.']

  # Not a dry run, with no gcloud on the PATH: one line, how to install it.
  proc = subprocess.run(base + ['--action=status'], capture_output=True,
                        text=True, cwd=ROOT, check=False,
                        env=dict(os.environ, PATH=str(tmp_path)))
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      'error: gcloud is not installed; install the Google Cloud CLI '
      '(https://cloud.google.com/sdk/docs/install), then run `gcloud auth '
      'login`.']
