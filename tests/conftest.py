"""Test session set-up: 8 fake CPU devices and a shared compilation cache.

Both must be in place before JAX initialises its backend, which is why they are
set here, at conftest import, rather than in a fixture.
"""

import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault('XLA_FLAGS',
                      '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Compiled programs are shared between the test process and the `main`
# subprocesses that the end-to-end tests start.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(),
                                   'airstreams_jax_test_jit_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import pytest  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

tf.config.set_visible_devices([], 'GPU')


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
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'), capture_output=True,
      text=True, timeout=900, check=False)
  if proc.returncode:
    raise AssertionError(f'main failed:\n{proc.stderr[-5000:]}')
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    return workdir, proc, json.load(f)
