"""The Cloud TPU VM launcher: a sweep (or one config) on every worker of a
slice, through `gcloud compute tpus tpu-vm`.

  python -m airstreams_jax.launch --launcher=tpu_vm --tpu=NAME --zone=ZONE \
      [--project=P] (--sweep=FILE.py[:arg] | --config=FILE.py[:arg]) \
      --root=gs://BUCKET/runs --data_dir=gs://BUCKET/tfds \
      --action=create|setup|run|status|logs [--dry_run]

Each action is a list of `Step`s, built here by pure functions (testable
without gcloud) and run one after the other by `execute`:

- create: the slice, with the runtime for v4 (`tpu-ubuntu2204-base`).
- setup: the repository at this checkout's commit, as a git bundle copied to
  every worker (`tpu-vm scp --worker=all`), so that an unpushed commit
  works and every worker runs the same code; then Python 3.11 (the runtime's
  Ubuntu 22.04 has 3.10, below setup.py's floor), a venv and
  requirements.txt with `jax[tpu]` at requirements.txt's jax pin (libtpu
  comes from Google's find-links page, not PyPI).
- run: for each unit in dependency order, `main` on every worker at once
  (`tpu-vm ssh --worker=all`): every process finds its place in the run
  through JAX's TPU detection (cluster.py), so the command is the same on
  each. The workdir is `ROOT/<unit>` and the data_dir the shared
  `--data_dir`, both gs://. Each worker's output goes to a log on its disk
  and, once the unit ends, to `ROOT/<unit>/logs/<unit>.<host>.log`; main
  writes no log file into a gs:// workdir itself.
- status: the slice's state; per worker the commit, the running main and
  the end of each log.
- logs: every worker copies its logs to the workdirs now, then all of them
  come to one local folder.

Every worker first checks that its checkout is at the commit: a run never
mixes code of two commits.
"""

import dataclasses
import os
import re
import shlex
import subprocess
import sys
import tempfile
from typing import Callable, List, Optional, Sequence, TextIO, Tuple

from airstreams_jax import errors
from airstreams_jax.launch import sweep as sweep_lib

ACTIONS = ('create', 'setup', 'run', 'status', 'logs')
# Google's page of libtpu wheels: `jax[tpu]` depends on libtpu, which is
# not on PyPI.
LIBTPU_FIND_LINKS = 'https://storage.googleapis.com/jax-releases/libtpu_releases.html'
# The TPU software version for v4 and older with JAX (Cloud TPU's table of
# runtimes): plain Ubuntu 22.04, the framework installed by `setup`.
RUNTIME_VERSION = 'tpu-ubuntu2204-base'
# On each worker, relative to the home directory where ssh starts.
REPO_DIR = 'airstreams_jax'
LOG_DIR = 'airstreams_logs'
BUNDLE = 'airstreams_jax.bundle'
WORKER_PYTHON = 'python3.11'
# The checkout this module belongs to: its commit and requirements.txt are
# what the workers get.
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# Cloud TPU names: lower-case letters, digits and hyphens, a letter first.
_TPU_NAME = re.compile(r'^[a-z]([-a-z0-9]*[a-z0-9])?$')
_V4_TYPE = re.compile(r'^v4-(\d+)$')


@dataclasses.dataclass(frozen=True)
class Slice:
  """Where the run goes: a TPU VM slice and its zone (and project)."""
  tpu: str
  zone: str
  project: str = ''
  accelerator_type: str = ''  # e.g. v4-32; needed by `create` only.


@dataclasses.dataclass(frozen=True)
class Step:
  """One command: what it does (one line) and its argv (no shell)."""
  what: str
  argv: Tuple[str, ...]


def check_slice(slice_: Slice) -> None:
  """Raises errors.ConfigError for a name gcloud would refuse later."""
  if not slice_.tpu or not _TPU_NAME.match(slice_.tpu):
    raise errors.ConfigError(
        f'--tpu={slice_.tpu!r}: give the TPU\'s name (lower-case letters, '
        'digits and hyphens, starting with a letter).')
  if not slice_.zone:
    raise errors.ConfigError('--launcher=tpu_vm needs --zone (the slice\'s '
                             'zone, e.g. us-central2-b).')


def check_remote(root: str, data_dir: Optional[str] = None,
                 launcher: str = '--launcher=tpu_vm') -> None:
  """Every worker writes the workdirs and reads the data: both must be on
  GCS, which every worker sees (a local path would be one per worker).
  `data_dir` None: not needed (the logs)."""
  paths = [('root', root, 'gs://BUCKET/runs')]
  if data_dir is not None:
    paths.append(('data_dir', data_dir, 'gs://BUCKET/tfds'))
  for flag, value, example in paths:
    if not (value or '').startswith('gs://') or len(value) <= len('gs://'):
      raise errors.ConfigError(
          f'--{flag}={value or ""}: {launcher} needs a gs:// path that '
          f'every worker (or job) reads and writes, e.g. --{flag}={example}.')


def workers(accelerator_type: str) -> Optional[int]:
  """Hosts of a v4 slice (v4-N: N TensorCores, 8 per host); None when the
  type is not a v4 one (the count then is whatever the slice has)."""
  match = _V4_TYPE.match(accelerator_type or '')
  return max(1, int(match.group(1)) // 8) if match else None


def pinned_version(requirements_text: str, package: str) -> str:
  """`package`'s exact version in requirements.txt's text."""
  for line in requirements_text.splitlines():
    name, sep, version = line.split('#', 1)[0].strip().partition('==')
    if sep and name.strip().lower() == package.lower():
      return version.strip()
  raise errors.ConfigError(f'requirements.txt pins no {package} version; '
                           f'add {package}==VERSION.')


def _gcloud(slice_: Slice, verb: str, *args: str) -> Tuple[str, ...]:
  project = (f'--project={slice_.project}',) if slice_.project else ()
  return ('gcloud', 'compute', 'tpus', 'tpu-vm', verb, *args,
          f'--zone={slice_.zone}', *project)


def ssh_all(slice_: Slice, script: str) -> Tuple[str, ...]:
  """`script` run by the login shell (bash) of every worker at once."""
  return _gcloud(slice_, 'ssh', slice_.tpu, '--worker=all',
                 f'--command={script}')


def _at_commit(commit: str) -> str:
  """A worker's check that its checkout is at `commit`, else it stops."""
  return (f'test "$(git -C {REPO_DIR} rev-parse HEAD 2>/dev/null)" = '
          f'{commit} || {{ echo "$(hostname): {REPO_DIR} is not at commit '
          f'{commit}; run --action=setup first." >&2; exit 1; }}')


def create_steps(slice_: Slice) -> List[Step]:
  if not slice_.accelerator_type:
    raise errors.ConfigError('--action=create needs --accelerator_type '
                             '(e.g. v4-8: one worker, v4-32: four).')
  return [Step(f'create the {slice_.accelerator_type} slice {slice_.tpu}',
               _gcloud(slice_, 'create', slice_.tpu,
                       f'--accelerator-type={slice_.accelerator_type}',
                       f'--version={RUNTIME_VERSION}'))]


def setup_steps(slice_: Slice, commit: str, requirements_text: str,
                bundle_path: str) -> List[Step]:
  """The repository at `commit` and the pinned TPU environment, on every
  worker. `bundle_path`: where the local git bundle is written."""
  jax_version = pinned_version(requirements_text, 'jax')
  tpu_jax = f'jax[tpu]=={jax_version}'
  check_jax = (f"import jax; assert jax.__version__ == '{jax_version}', "
               'jax.__version__')
  script = '; '.join([
      'set -e',
      # Ubuntu 22.04 (the v4 runtime) has Python 3.10; setup.py asks 3.11.
      f'command -v {WORKER_PYTHON} >/dev/null || {{ sudo apt-get -qq update '
      f'&& sudo apt-get -qq install -y {WORKER_PYTHON} '
      f'{WORKER_PYTHON}-venv; }}',
      f'test -d {REPO_DIR}/.git || git init -q {REPO_DIR}',
      f'git -C {REPO_DIR} fetch -q "$HOME"/{BUNDLE} HEAD',
      f'git -C {REPO_DIR} checkout -q --force --detach {commit}',
      f'cd {REPO_DIR}',
      f'test -x .venv/bin/python || {WORKER_PYTHON} -m venv .venv',
      '.venv/bin/pip install -q --upgrade pip',
      '.venv/bin/pip install -q -r requirements.txt ' + shlex.join(
          [tpu_jax, '-f', LIBTPU_FIND_LINKS, '-e', '.']),
      '.venv/bin/python -c ' + shlex.quote(check_jax),
      f'echo "$(hostname): ready at {commit[:12]}, {tpu_jax}"',
  ])
  return [
      Step(f'bundle this checkout at commit {commit[:12]}',
           ('git', 'bundle', 'create', bundle_path, 'HEAD')),
      Step('copy the bundle to every worker',
           _gcloud(slice_, 'scp', bundle_path, f'{slice_.tpu}:{BUNDLE}',
                   '--worker=all')),
      Step(f'check out {commit[:12]} and install {tpu_jax} with '
           'requirements.txt on every worker', ssh_all(slice_, script)),
  ]


def unit_workdir(root: str, unit: sweep_lib.Unit) -> str:
  return f'{root.rstrip("/")}/{unit.name}'


def main_args(unit: sweep_lib.Unit, root: str) -> List[str]:
  """The unit's `main` arguments, as the local launcher passes them."""
  return sweep_lib.command(unit, root.rstrip('/'))[1:]


def _log(name: str) -> str:
  return f'{LOG_DIR}/{name}.log'


def _upload_log(name: str, root: str) -> str:
  """Copies a worker's log of unit `name` (a shell word) into the unit's
  workdir; the host in its name keeps the workers' logs apart."""
  log = f'{LOG_DIR}/{name}.log'
  workdir = f'{shlex.quote(root.rstrip("/"))}/{name}'
  return (f'gcloud storage cp {log} {workdir}/logs/{name}."$(hostname)".log '
          f'|| echo "$(hostname): could not copy {log} to the workdir" >&2')


def run_steps(slice_: Slice, units: Sequence[sweep_lib.Unit], root: str,
              commit: str) -> List[Step]:
  """One step per unit, in the (dependency) order given: main on every
  worker at once; the next unit starts when every worker is done."""
  steps = []
  for unit in units:
    script = '; '.join([
        'set -o pipefail',  # main's status, not tee's.
        _at_commit(commit),
        f'mkdir -p {LOG_DIR}',
        # From the checkout: config paths are relative to it.
        f'(cd {REPO_DIR} && .venv/bin/python ' + shlex.join(
            main_args(unit, root)) + ') 2>&1 | tee -a ' + _log(
                shlex.quote(unit.name)),
        'status=$?',
        _upload_log(shlex.quote(unit.name), root),
        'exit $status',
    ])
    steps.append(Step(f'run unit {unit.name!r} on every worker '
                      f'(workdir {unit_workdir(root, unit)})',
                      ssh_all(slice_, script)))
  return steps


def status_steps(slice_: Slice) -> List[Step]:
  script = '; '.join([
      f'echo "$(hostname): commit $(git -C {REPO_DIR} rev-parse --short=12 '
      'HEAD 2>/dev/null || echo none: not set up)"',
      # '[.]': the pattern does not match this shell's own command line.
      'pgrep -af "airstreams_jax[.]main" || echo "$(hostname): no main '
      'running"',
      f'for f in {LOG_DIR}/*.log; do test -e "$f" || continue; '
      'echo "$(hostname): $f:"; tail -n 3 "$f"; done',
  ])
  return [
      Step(f'the state of {slice_.tpu}',
           _gcloud(slice_, 'describe', slice_.tpu, '--format=value(state)')),
      Step('commit, running main and log ends on every worker',
           ssh_all(slice_, script)),
  ]


def logs_steps(slice_: Slice, units: Sequence[sweep_lib.Unit], root: str,
               logs_dir: str) -> List[Step]:
  name = '"$u"'  # The loop's variable, a shell word.
  script = (f'for u in {shlex.join(u.name for u in units)}; do test -e '
            f'{_log(name)} || continue; {_upload_log(name, root)}; done')
  return [
      Step('every worker copies its logs to the workdirs',
           ssh_all(slice_, script)),
      Step(f'all logs to {logs_dir}',
           ('gcloud', 'storage', 'cp', f'{root.rstrip("/")}/*/logs/*.log',
            logs_dir)),
  ]


def plan(action: str, slice_: Slice, *, units: Sequence[sweep_lib.Unit] = (),
         root: str = '', data_dir: str = '', commit: str = '',
         requirements_text: str = '', bundle_path: str = '',
         logs_dir: str = '') -> List[Step]:
  """The steps of `action`, checked: raises errors.ConfigError naming the
  flag to fix before anything runs. `units`: checked (`sweep.load`), so in
  dependency order."""
  check_slice(slice_)
  if action not in ACTIONS:
    raise errors.ConfigError(f'--action={action}; use one of '
                             f'{", ".join(ACTIONS)}.')
  if action == 'create':
    return create_steps(slice_)
  if action == 'status':
    return status_steps(slice_)
  if action == 'setup':
    return setup_steps(slice_, commit, requirements_text, bundle_path)
  if action == 'logs':
    check_remote(root)
    return logs_steps(slice_, units, root, logs_dir)
  check_remote(root, data_dir)
  return run_steps(slice_, with_data_dir(units, data_dir), root, commit)


def with_data_dir(units: Sequence[sweep_lib.Unit],
                  data_dir: str) -> List[sweep_lib.Unit]:
  """The units reading their dataset from `data_dir`; a unit that sets
  another one itself is a mistake the user should see."""
  result = []
  for unit in units:
    overrides = dict(unit.overrides)
    own = overrides.get('dataset.data_dir')
    if own is not None and own != data_dir:
      raise errors.ConfigError(
          f'unit {unit.name!r} sets dataset.data_dir={own}, and --data_dir='
          f'{data_dir}; drop one of them (every unit reads --data_dir).')
    overrides['dataset.data_dir'] = data_dir
    result.append(dataclasses.replace(unit, overrides=overrides))
  return result


def print_plan(steps: Sequence[Step], workers: Optional[int] = None,
               out: TextIO = sys.stdout) -> None:
  """Each step as a comment line and a command to paste into a shell."""
  if workers is not None:
    print(f'# {workers} worker(s): every ssh and scp below runs on all of '
          'them at once (--worker=all).', file=out)
  for i, step in enumerate(steps, 1):
    print(f'# {i}/{len(steps)} {step.what}', file=out)
    print(shlex.join(step.argv), file=out)


def execute(steps: Sequence[Step],
            run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
            out: TextIO = sys.stderr) -> None:
  """Runs the steps in order; raises errors.ConfigError naming the first
  that fails (the rest do not run)."""
  for i, step in enumerate(steps, 1):
    print(f'[tpu_vm] {i}/{len(steps)} {step.what}', file=out, flush=True)
    try:
      code = run(list(step.argv)).returncode
    except FileNotFoundError:
      raise errors.ConfigError(
          f'step {i} ({step.what}): {step.argv[0]} is not installed; '
          + INSTALL.get(step.argv[0], f'install {step.argv[0]}.')) from None
    if code != 0:
      raise errors.ConfigError(
          f'step {i} of {len(steps)} ({step.what}) failed with exit code '
          f'{code}; the steps after it did not run. Fix it and rerun the '
          'same command (runs resume from their checkpoints).')


INSTALL = {
    'gcloud': 'install the Google Cloud CLI '
              '(https://cloud.google.com/sdk/docs/install), then run '
              '`gcloud auth login`.',
    'git': 'install git (e.g. apt-get install git).',
}


def git_state(repository: str) -> Tuple[str, bool]:
  """The checkout's commit, and whether tracked files have uncommitted
  changes (which the workers would not get)."""
  def git(*args):
    try:
      return subprocess.run(['git', '-C', repository, *args],
                            capture_output=True, text=True, check=True
                            ).stdout.strip()
    except FileNotFoundError:
      raise errors.ConfigError('git is not installed; ' + INSTALL['git']
                               ) from None
    except subprocess.CalledProcessError:
      raise errors.ConfigError(
          f'{repository} is not a git checkout; --launcher=tpu_vm sends the '
          'workers its commit: run it from a clone of airstreams_jax.'
          ) from None
  return git('rev-parse', 'HEAD'), bool(git('status', '--porcelain',
                                            '--untracked-files=no'))


def bundle_path(commit: str) -> str:
  return os.path.join(tempfile.gettempdir(),
                      f'airstreams_jax-{commit[:12]}.bundle')
