r"""Entry point: train, evaluate, evolve the loss weights.

  python -m airstreams_jax.main --config=configs/synthetic.py \
      --workdir=workdirs/synthetic [--config.num_train_steps=100] \
      [--mode=train_and_eval|eval|evolve|confirm]

`--mode=evolve` searches the five loss weights (see
`airstreams_jax.evolution.evolve`) and writes `best_weights.json` for
`--config.loss_weights_file`; then, unless
`--config.evolution.confirm_seeds=0`, it confirms the answer by full
training (`airstreams_jax.evolution.confirm`: `evolution_report.md`).
`--mode=confirm` does only that, on a finished search's workdir.

Kept thin on purpose: the work happens in `airstreams_jax.training.train`,
which tests and notebooks import directly.
"""

if __name__ == '__main__':
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start()

import functools
import os
import sys
import traceback

from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import tensorflow as tf

from airstreams_jax import cli
from airstreams_jax import cluster
from airstreams_jax import errors
from airstreams_jax import mesh as mesh_lib
from airstreams_jax.evolution import confirm
from airstreams_jax.evolution import evolve
from airstreams_jax.training import preemption
from airstreams_jax.training import reporting
from airstreams_jax.training import train

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined by `cli.run`)."""
  config_flags.DEFINE_config_file(
      'config', None,
      'Experiment config file, e.g. configs/synthetic.py:smoke.',
      lock_config=True)
  flags.DEFINE_string(
      'workdir', None, 'Directory for checkpoints, logs and results; '
      'training resumes from it.')
  flags.DEFINE_enum(
      'mode', 'train_and_eval',
      ['train_and_eval', 'eval', 'evolve', 'confirm'],
      'What to run: train and evaluate, evaluate the latest checkpoint, '
      'search the loss weights (config.evolution; then confirm the answer '
      'unless evolution.confirm_seeds=0), or confirm a finished search\'s '
      'answer by full training.')
  # Multi-host: every process runs the same command with its own
  # --process_id. The upper-case environment variables of the same names are
  # the fallback. Without either, a cluster JAX detects (SLURM, Open MPI, a
  # TPU pod slice, Kubernetes) decides; see cluster.py.
  flags.DEFINE_string(
      'coordinator_address', os.environ.get('COORDINATOR_ADDRESS'),
      'host:port of process 0, for jax.distributed.initialize.')
  flags.DEFINE_integer(
      'num_processes', int(os.environ.get('NUM_PROCESSES', '1')),
      'Number of processes of a multi-host run.')
  flags.DEFINE_integer(
      'process_id', int(os.environ.get('PROCESS_ID', '0')),
      'This process\'s index in a multi-host run.')
  cli.define_jit_cache_flag()
  flags.declare_key_flag('jit_cache_dir')  # Listed in this command's --help.
  flags.mark_flags_as_required(['config', 'workdir'])


@functools.lru_cache(maxsize=None)
def _processes() -> cluster.Processes:
  """This process's place in the run, found once: the log file's name needs
  it before main runs, main to join the run."""
  given = any(FLAGS[name].present for name in _PROCESS_FLAGS) or any(
      name.upper() in os.environ for name in _PROCESS_FLAGS)
  try:
    return cluster.resolve(given, FLAGS.coordinator_address,
                           FLAGS.num_processes, FLAGS.process_id)
  except ValueError as e:
    sys.exit(f'error: {e}')


_PROCESS_FLAGS = ('coordinator_address', 'num_processes', 'process_id')


def _init_distributed() -> None:
  """Joins a multi-host run when one is asked for or detected (before any
  JAX use)."""
  processes = _processes()
  if processes.source:
    logging.info('%s', cluster.describe(processes))
  if not processes.multi_process:
    return
  cluster.initialize(processes)
  # Orbax's barriers around a checkpoint save through the coordination
  # service too, not through a device collective that gives a process left
  # behind (a slower disk) only 30 s; see mesh.wait_for_all_processes.
  flags.FLAGS.experimental_orbax_use_distributed_barrier = True


def _check_workdir(workdir: str) -> None:
  """The workdir (or the directory it will be made in) must be writable;
  checked before anything is built or compiled, and without creating it
  (a run stopped by a config error leaves no workdir behind)."""
  if '://' in workdir:  # gs:// and the like: the first write will tell.
    return
  path = os.path.abspath(workdir)
  parent = os.path.dirname(path)
  if not os.path.exists(path) and not os.path.isdir(parent):
    sys.exit(f'error: --workdir={workdir}: the parent directory {parent} does '
             'not exist; create it first or choose another workdir.')
  target = path if os.path.exists(path) else parent
  if not os.path.isdir(target):
    sys.exit(f'error: --workdir={workdir}: {target} is a file, not a '
             'directory; choose another workdir.')
  # access(2) also reports a read-only file system (EROFS).
  if not os.access(target, os.W_OK | os.X_OK):
    sys.exit(f'error: --workdir={workdir}: {target} is not writable '
             '(permissions or a read-only file system); choose a writable '
             'directory.')


def _log_file(workdir: str):
  """WORKDIR/main.log (main.process<k>.log on process k > 0); none for a
  remote workdir such as gs://, whose logs the job's platform keeps."""
  if '://' in workdir:
    return None
  # Not jax.process_index(): the backends start after logging is set.
  process_id = _processes().process_id
  name = 'main.log' if process_id == 0 else f'main.process{process_id}.log'
  return os.path.join(workdir, name)


def main() -> None:
  _check_workdir(FLAGS.workdir)
  cli.use_jit_cache(FLAGS.jit_cache_dir)
  _init_distributed()
  # tf.data only; keep TensorFlow off any accelerator JAX will use.
  tf.config.set_visible_devices([], 'GPU')
  try:
    if FLAGS.mode == 'eval':
      results = train.evaluate_checkpoint(FLAGS.config, FLAGS.workdir)
    elif FLAGS.mode == 'evolve':
      results = evolve.evolve(FLAGS.config, FLAGS.workdir)
      if FLAGS.config.evolution.confirm_seeds:
        results['confirmation'] = confirm.confirm(FLAGS.config,
                                                  FLAGS.workdir)
    elif FLAGS.mode == 'confirm':
      results = dict(confirmation=confirm.confirm(FLAGS.config,
                                                  FLAGS.workdir))
    else:
      results = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except preemption.Preempted as e:
    # Saved: a clean exit (status 0), so that a scheduler that restarts
    # failed jobs does not count it; the same command resumes.
    print(e, file=sys.stderr)
    results = None
  except (errors.ConfigError, FloatingPointError) as e:
    # A config error (found before any compilation) or a non-finite step
    # (reporting.check_step_finite): one line that names the fix, no traceback.
    _fail(f'error: {e}')
  except Exception as e:  # pylint: disable=broad-except
    # A full disk, a vanished data dir (also when a background writer
    # re-raises it wrapped): one line naming the path; the traceback goes to
    # the log file. Anything else keeps its traceback.
    cause = errors.storage_cause(e, _STORAGE_ERRORS)
    if cause is not None:
      logging.info('Stopped by a storage error.', exc_info=True,
                   extra={cli.FILE_ONLY: True})
      log_file = _log_file(FLAGS.workdir)
      _fail(f'error: {errors.storage_error_line(cause)}' +
            (f' Traceback in {log_file}.'
             if log_file and not cli.log_file_failed() else ''))
    if not _processes().multi_process:
      raise
    if isinstance(e, jax.errors.JaxRuntimeError):
      # A collective with a process that died (its socket reset) or hung.
      logging.info('A collective failed.', exc_info=True,
                   extra={cli.FILE_ONLY: True})
      first_line = str(e).strip().splitlines()[0]
      _fail(f'error: process {jax.process_index()} of '
            f'{jax.process_count()}: a collective failed ({first_line}); '
            'another process of this run most likely died or was '
            'preempted (see its log). Restart every process to resume from '
            'the newest checkpoint.')
    traceback.print_exc()
    _fail(f'error: process {jax.process_index()} stopped by the error above.')
  if results is not None and jax.process_index() == 0:
    if FLAGS.mode == 'evolve':
      _print_evolution_summary(results)
    if FLAGS.mode in ('evolve', 'confirm'):
      if 'confirmation' in results:
        print(confirm.summary_line(results['confirmation']))
    else:
      _print_summary(results)
  if jax.process_count() > 1:
    # Leave together: a process that exits while another still works makes
    # the coordination service abort at shutdown.
    mesh_lib.wait_for_all_processes('airstreams_jax: main finished')
    jax.distributed.shutdown()


# Failed reads and writes. TensorFlow's I/O raises its own types (a full disk
# is ResourceExhausted); its other errors, e.g. a bug in a tf.data map, keep
# their traceback.
_STORAGE_ERRORS = (OSError, tf.errors.NotFoundError,
                   tf.errors.PermissionDeniedError,
                   tf.errors.ResourceExhaustedError, tf.errors.DataLossError)


def _fail(message: str) -> None:
  """Ends the process with `message` (one line) and exit status 1.

  A process of a multi-host run leaves at once: a normal exit would wait at
  the distributed shutdown barrier for the other processes, which are dead
  or blocked in a collective with this one, until the heartbeat timeout
  (100 s), and then abort with pages of coordination-service logs. The
  others fail their next collective with this one and leave the same way.
  """
  if not _processes().multi_process:
    sys.exit(message)
  print(message, file=sys.stderr)
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(1)  # pylint: disable=protected-access


def _print_summary(results) -> None:
  print(f"{reporting.evaluation_line(results)}. "
        f"Results: {os.path.join(FLAGS.workdir, 'eval_results.json')}")


def _print_evolution_summary(results) -> None:
  best = results['best']
  weights = ', '.join(f'{k} {v:.3f}' for k, v in best['weights'].items())
  # The best's error over its repeats, when it has more than one.
  se = '' if best.get('se') is None else f" ± {best['se']:.4f}"
  print(f"Evolution: {results['num_evaluated']} weightings evaluated "
        f"({results['num_trained']} proxy trainings in this run); best "
        f"{results['metric']} {best['fitness']:.4f}{se} over "
        f"{best['repeats']} proxies (candidate {best['id']}) with {weights}. "
        f"Train with --config.loss_weights_file="
        f"{results['best_weights_file']}")


if __name__ == '__main__':
  cli.run(main, define_flags, config_flag='config',
          log_file=lambda: _log_file(FLAGS.workdir))
