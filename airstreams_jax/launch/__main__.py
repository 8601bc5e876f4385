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

import os
import shlex
import sys

# TensorFlow's start-up chatter: the launcher does not use TF, its children
# inherit this.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from airstreams_jax import errors
from airstreams_jax.launch import local
from airstreams_jax.launch import record as record_lib
from airstreams_jax.launch import sweep as sweep_lib

_SWEEP = flags.DEFINE_string(
    'sweep', None, 'A sweep file and its argument: path/sweep.py[:arg].')
_ROOT = flags.DEFINE_string(
    'root', None, 'The sweep\'s directory: one workdir per unit and '
    'experiment.json.')
_PARALLEL = flags.DEFINE_integer('parallel', 1, 'Units running at once.')
_DRY_RUN = flags.DEFINE_bool(
    'dry_run', False, 'Check the sweep and print each unit\'s command; run '
    'nothing, write nothing.')
_LAUNCHER = flags.DEFINE_enum(
    'launcher', 'local', ['local', 'xmanager'],
    'local: subprocesses on this machine; xmanager: an XManager experiment '
    '(xm_local executor).')
_CPUS_PER_UNIT = flags.DEFINE_integer(
    'cpus_per_unit', None, 'CPU cores pinned to each running unit; default: '
    'the cores shared equally when --parallel > 1, else not pinned.')
_GPUS_PER_UNIT = flags.DEFINE_integer(
    'gpus_per_unit', 0, 'GPUs per running unit (CUDA_VISIBLE_DEVICES); 0 = '
    'all visible.')
_CPU_DEVICES_PER_UNIT = flags.DEFINE_integer(
    'cpu_devices_per_unit', 0, 'Fake JAX CPU devices per unit (to try '
    'sharding on a CPU machine); 0 = one.')
flags.mark_flags_as_required(['sweep', 'root'])


def _resources() -> local.Resources:
  default = local.default_resources(_PARALLEL.value)
  return local.Resources(
      cpus_per_unit=(default.cpus_per_unit if _CPUS_PER_UNIT.value is None
                     else _CPUS_PER_UNIT.value),
      gpus_per_unit=_GPUS_PER_UNIT.value,
      cpu_devices_per_unit=_CPU_DEVICES_PER_UNIT.value)


def print_plan(units, root: str) -> None:
  for unit in units:
    waits = f"  # after {', '.join(unit.dependencies())}" if (
        unit.dependencies()) else ''
    print(f'{unit.name}:{waits}\n  python ' + shlex.join(
        sweep_lib.command(unit, root)[1:]))
  print(f'{len(units)} units; workdirs under {root}.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _PARALLEL.value < 1:
    sys.exit(f'error: --parallel={_PARALLEL.value}; give at least 1.')
  try:
    units = sweep_lib.load(_SWEEP.value)
  except errors.ConfigError as e:
    sys.exit(f'error: {e}')
  if _DRY_RUN.value:
    print_plan(units, _ROOT.value)
    return
  if _LAUNCHER.value == 'xmanager' and (
      _PARALLEL.value != 1 or _GPUS_PER_UNIT.value or _CPUS_PER_UNIT.value
      or _CPU_DEVICES_PER_UNIT.value):
    sys.exit('error: --parallel and the per-unit resource flags apply to the '
             'local launcher; XManager runs every unit whose dependencies '
             'are done at once, with the devices its executor gives it.')
  try:
    if _LAUNCHER.value == 'xmanager':
      from airstreams_jax.launch import xm_launcher  # pylint: disable=g-import-not-at-top
      result = xm_launcher.launch(units, _ROOT.value, sweep=_SWEEP.value)
    else:
      result = local.run(units, _ROOT.value, sweep=_SWEEP.value,
                         parallel=_PARALLEL.value, resources=_resources())
  except (errors.ConfigError, ValueError) as e:
    sys.exit(f'error: {e}')
  except KeyboardInterrupt as e:
    print(f'{e}', file=sys.stderr)
    sys.exit(130)
  counts = record_lib.counts(result)
  print(f"Sweep: {counts['done']} of {len(result['units'])} units done, "
        f"{counts['failed']} failed, {counts['blocked']} blocked. Record: "
        f"{os.path.join(_ROOT.value, record_lib.RECORD_FILE)}")
  if counts['failed'] or counts['blocked']:
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
