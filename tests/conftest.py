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
# one leaves idle. A worker takes whole groups (the scheduler below); a group
# is a test module unless named here: the tests that share the
# `smoke_main_run` fixture stay in one group (it runs once), long tests that
# share nothing run as groups of their own. Groups start longest first
# (seconds of a full run), so the last to start is short and both workers
# finish together.
_GROUP_OF_TEST = {
    'test_train.py::test_main_smoke_end_to_end_then_resume': 'smoke_main_run',
    'test_train.py::test_sharded_train_step_equals_unsharded': 'sharded_step',
    'test_train.py::test_a_non_finite_step_stops_training_before_it_is_saved':
        'non_finite_step',
}
_GROUP_OF_MODULE = {'test_fault_injection.py': 'smoke_main_run'}
_LONGEST_GROUPS_FIRST = (
    'smoke_main_run',  # ~650 s
    'test_evolution.py',  # ~400 s
    'test_launch.py',  # ~300 s
    'test_multihost.py',  # ~300 s
    'sharded_step',  # ~230 s
    'test_model.py',  # ~230 s
    'test_notebook.py',  # ~185 s
    'non_finite_step',  # ~85 s
)


def _group(nodeid: str) -> str:
  """'tests/test_x.py::test_y[param]' -> the name of its group."""
  module, _, test = nodeid.partition('::')
  module = os.path.basename(module)
  test = test.split('[')[0]
  return _GROUP_OF_TEST.get(f'{module}::{test}',
                            _GROUP_OF_MODULE.get(module, module))


def pytest_collection_modifyitems(config, items):
  del config  # Unused.
  rank = {name: i for i, name in enumerate(_LONGEST_GROUPS_FIRST)}
  # A stable sort: within a group, tests keep the order of their file.
  items.sort(key=lambda item: rank.get(_group(item.nodeid), len(rank)))


def pytest_xdist_make_scheduler(config, log):
  """xdist's scope scheduling with the groups above as scopes (its own
  loadgroup marks do not reach pytest 9's node ids). Groups go out in
  collection order (pytest.ini: --no-loadscope-reorder), longest first."""
  from xdist.scheduler import LoadScopeScheduling  # pylint: disable=g-import-not-at-top

  class GroupScheduling(LoadScopeScheduling):

    def _split_scope(self, nodeid: str) -> str:
      return _group(nodeid)

  return GroupScheduling(config, log)


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
