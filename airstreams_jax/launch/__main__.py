r"""Runs a sweep: every unit of a sweep file as an `airstreams_jax.main` run.

  python -m airstreams_jax.launch --sweep=configs/sweeps/ablations.py:\
dataset_config=configs/synthetic.py:smoke,seeds=2 --root=workdirs/sweep \
      [--parallel=2] [--dry_run] [--launcher=local|xmanager]

Each unit trains (or evolves) in `ROOT/<unit name>`, logs to
`ROOT/<unit name>/log.txt`, and `ROOT/experiment.json` records the sweep
(`airstreams_jax/launch/record.py`). Rerunning the command skips finished
units and resumes the others. `--launcher=xmanager` submits the same units as
an XManager experiment (needs `pip install xmanager`).
"""

if __name__ == '__main__':
  # Before any other import: see cli.start. The launcher does not use
  # TensorFlow; its children inherit TF_CPP_MIN_LOG_LEVEL.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start(tensorflow=False)

import os
import shlex
import sys

from absl import flags

from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax.launch import local
from airstreams_jax.launch import record as record_lib
from airstreams_jax.launch import sweep as sweep_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined by `cli.run`)."""
  flags.DEFINE_string(
      'sweep', None, 'A sweep file and its argument: path/sweep.py[:arg].')
  flags.DEFINE_string(
      'root', None, 'The sweep\'s directory: one workdir per unit and '
      'experiment.json.')
  flags.DEFINE_integer('parallel', 1, 'Units running at once.')
  flags.DEFINE_bool(
      'dry_run', False, 'Check the sweep and print each unit\'s command; run '
      'nothing, write nothing.')
  flags.DEFINE_enum(
      'launcher', 'local', ['local', 'xmanager'],
      'local: subprocesses on this machine; xmanager: an XManager experiment '
      '(xm_local executor).')
  flags.DEFINE_integer(
      'cpus_per_unit', None, 'CPU cores pinned to each running unit; '
      'default: the cores shared equally when --parallel > 1, else not '
      'pinned.')
  flags.DEFINE_integer(
      'gpus_per_unit', 0, 'GPUs per running unit (CUDA_VISIBLE_DEVICES); 0 = '
      'all visible.')
  flags.DEFINE_integer(
      'cpu_devices_per_unit', 0, 'Fake JAX CPU devices per unit (to try '
      'sharding on a CPU machine); 0 = one.')
  flags.mark_flags_as_required(['sweep', 'root'])


def _resources() -> local.Resources:
  default = local.default_resources(FLAGS.parallel)
  return local.Resources(
      cpus_per_unit=(default.cpus_per_unit if FLAGS.cpus_per_unit is None
                     else FLAGS.cpus_per_unit),
      gpus_per_unit=FLAGS.gpus_per_unit,
      cpu_devices_per_unit=FLAGS.cpu_devices_per_unit)


def print_plan(units, root: str) -> None:
  for unit in units:
    waits = f"  # after {', '.join(unit.dependencies())}" if (
        unit.dependencies()) else ''
    print(f'{unit.name}:{waits}\n  python ' + shlex.join(
        sweep_lib.command(unit, root)[1:]))
  print(f'{len(units)} units; workdirs under {root}.')


def main() -> None:
  if FLAGS.parallel < 1:
    sys.exit(f'error: --parallel={FLAGS.parallel}; give at least 1.')
  try:
    units = sweep_lib.load(FLAGS.sweep)
  except errors.ConfigError as e:
    sys.exit(f'error: {e}')
  if FLAGS.dry_run:
    print_plan(units, FLAGS.root)
    return
  if FLAGS.launcher == 'xmanager' and (
      FLAGS.parallel != 1 or FLAGS.gpus_per_unit or FLAGS.cpus_per_unit
      or FLAGS.cpu_devices_per_unit):
    sys.exit('error: --parallel and the per-unit resource flags apply to the '
             'local launcher; XManager runs every unit whose dependencies '
             'are done at once, with the devices its executor gives it.')
  try:
    if FLAGS.launcher == 'xmanager':
      from airstreams_jax.launch import xm_launcher  # pylint: disable=g-import-not-at-top
      result = xm_launcher.launch(units, FLAGS.root, sweep=FLAGS.sweep)
    else:
      result = local.run(units, FLAGS.root, sweep=FLAGS.sweep,
                         parallel=FLAGS.parallel, resources=_resources())
  except (errors.ConfigError, ValueError) as e:
    sys.exit(f'error: {e}')
  except KeyboardInterrupt as e:
    print(f'{e}', file=sys.stderr)
    sys.exit(130)
  counts = record_lib.counts(result)
  print(f"Sweep: {counts['done']} of {len(result['units'])} units done, "
        f"{counts['failed']} failed, {counts['blocked']} blocked. Record: "
        f"{os.path.join(FLAGS.root, record_lib.RECORD_FILE)}")
  if counts['failed'] or counts['blocked']:
    sys.exit(1)


if __name__ == '__main__':
  cli.run(main, define_flags, console_logging=False)
