"""Test session set-up: 8 fake CPU devices and a shared compilation cache.

Both must be in place before JAX initialises its backend, which is why they are
set here, at conftest import, rather than in a fixture.
"""

import os
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
