"""The console of a run: our lines and the progress, library chatter only in
the log file, and no TensorFlow start-up lines in front of an error."""

import logging
import os
import subprocess
import sys

from absl import logging as absl_logging
import pytest

from airstreams_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(pathname, level=logging.INFO, message='hello'):
  return logging.LogRecord('absl', level, pathname, 1, message, None, None)


def test_console_filter_keeps_ours_progress_and_errors():
  keep = cli._ConsoleFilter().filter  # pylint: disable=protected-access
  ours = os.path.join(ROOT, 'airstreams_jax', 'training', 'train.py')
  library = '/venv/site-packages/tensorflow_datasets/core/features/feature.py'
  assert keep(_record(ours))
  assert keep(_record(ours, logging.WARNING))
  assert not keep(_record(library))
  assert not keep(_record(library, logging.WARNING,
                          '`FeatureConnector.dtype` is deprecated.'))
  assert keep(_record(library, logging.ERROR))
  assert keep(_record('/venv/site-packages/clu/platform/local.py',
                      message='Setting work unit notes: 1.6 steps/s, 50.0% '
                      '(300/600), ETA: 3m'))
  assert not keep(_record('/venv/site-packages/clu/metric_writers/'
                          'logging_writer.py', message='[2] train/loss=9.7'))


def test_console_format():
  fmt = cli._ConsoleFormatter()  # pylint: disable=protected-access
  line = fmt.format(_record('x.py', message='Setting work unit notes: 2 steps/s'))
  assert line[8:] == ' progress: 2 steps/s' and line[2] == line[5] == ':'
  assert fmt.format(_record('x.py', logging.WARNING, 'careful'))[8:] == (
      ' warning: careful')


def test_without_startup_chatter_keeps_other_lines():
  text = ('WARNING: All log messages before absl::InitializeLog() is called '
          'are written to STDERR\n'
          'I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on.\n'
          '\n'
          'Something else went wrong\n')
  assert cli.without_startup_chatter(text) == 'Something else went wrong'


def _stderr_of(code):
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  return subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300,
                        check=True).stderr


@pytest.mark.slow
def test_quiet_tensorflow_import_holds_back_the_startup_lines():
  loud = _stderr_of('import tensorflow')
  if not loud.strip():
    pytest.skip('this TensorFlow prints nothing at start-up here')
  assert cli.without_startup_chatter(loud) == '', loud  # All known chatter.
  quiet = _stderr_of('from airstreams_jax import cli\n'
                     'cli.quiet_tensorflow_import()\n'
                     'import tensorflow as tf\n'
                     'print(tf.constant(2) + 1)')
  assert quiet == ''


def test_setup_logging_writes_everything_to_the_file(tmp_path):
  log_file = str(tmp_path / 'logs' / 'main.log')
  root = logging.getLogger()
  handler = absl_logging.get_absl_handler()
  before = (list(root.handlers), list(handler.filters),
            handler.python_handler.formatter,
            absl_logging.get_verbosity())
  try:
    absl_logging.set_verbosity('info')
    cli.setup_logging(log_file)
    cli.setup_logging(log_file)  # Again, as a rerun notebook cell does.
    assert not os.path.exists(log_file)  # Created with the first record.
    logging.getLogger('some.library').warning('library chatter')
    absl_logging.info('our line')
    for h in root.handlers:
      h.flush()
    with open(log_file) as f:
      lines = f.read().splitlines()
    assert len(lines) == 2  # Once each: the second call replaced the first.
    assert lines[0].startswith('W') and lines[0].endswith('] library chatter')
    assert lines[1].startswith('I') and lines[1].endswith('] our line')
  finally:
    for h in root.handlers:
      if h not in before[0]:
        root.removeHandler(h)
        h.close()
    handler.filters[:] = before[1]
    handler.setFormatter(before[2])
    absl_logging.set_verbosity(before[3])
    logging.captureWarnings(False)
