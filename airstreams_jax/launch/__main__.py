r"""Runs a sweep: every unit of a sweep file as an `airstreams_jax.main` run.

  python -m airstreams_jax.launch --sweep=configs/sweeps/ablations.py:\
dataset_config=configs/synthetic.py:smoke,seeds=2 --root=workdirs/sweep \
      [--parallel=2] [--dry_run] [--launcher=local|xmanager|tpu_vm]

`--config=FILE.py[:arg] [--set=KEY=VALUE ...] [--name=NAME]` instead of
--sweep launches one run as a one-unit sweep.

Each unit trains (or evolves) in `ROOT/<unit name>`, logs to
`ROOT/<unit name>/log.txt`, and `ROOT/experiment.json` records the sweep
(`airstreams_jax/launch/record.py`). Rerunning the command skips finished
units and resumes the others. `--launcher=xmanager` submits the same units as
an XManager experiment (needs `pip install xmanager`). `--launcher=tpu_vm --tpu=NAME --zone=ZONE
--action=create|setup|run|status|logs` runs the units on every worker of a
Cloud TPU VM slice through gcloud (`airstreams_jax/launch/tpu_vm.py`; the
root and --data_dir on gs://); with --dry_run it prints the gcloud commands.
"""

if __name__ == '__main__':
  # Before any other import: see cli.start. The launcher does not use
  # TensorFlow; its children inherit TF_CPP_MIN_LOG_LEVEL.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start(tensorflow=False)

import json
import os
import shlex
import shutil
import sys

from absl import flags

from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax.launch import config_overrides
from airstreams_jax.launch import local
from airstreams_jax.launch import record as record_lib
from airstreams_jax.launch import sweep as sweep_lib
from airstreams_jax.launch import tpu_vm
from airstreams_jax.launch import xm_cloud

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined by `cli.run`)."""
  flags.DEFINE_string(
      'sweep', None, 'A sweep file and its argument: path/sweep.py[:arg].')
  flags.DEFINE_string(
      'config', None, 'Instead of --sweep: one run of main\'s --config '
      '(FILE.py[:arg]), as a one-unit sweep.')
  flags.DEFINE_multi_string(
      'set', [], 'With --config: KEY=VALUE, a --config.KEY of the run (read '
      'as the key\'s type); repeat for more keys.')
  flags.DEFINE_string(
      'name', 'run', 'With --config: the run\'s name, its workdir under '
      '--root.')
  flags.DEFINE_string(
      'root', None, 'The sweep\'s directory: one workdir per unit and '
      'experiment.json.')
  flags.DEFINE_integer('parallel', 1, 'Units running at once.')
  flags.DEFINE_bool(
      'dry_run', False, 'Check the sweep and print each unit\'s command; run '
      'nothing, write nothing.')
  flags.DEFINE_enum(
      'launcher', 'local', ['local', 'xmanager', 'tpu_vm'],
      'local: subprocesses on this machine; xmanager: an XManager experiment '
      '(xm_local executor); tpu_vm: every worker of a Cloud TPU VM slice, '
      'through gcloud.')
  flags.DEFINE_enum(
      'xm_executor', 'local', ['local', *xm_cloud.EXECUTORS],
      'xmanager: local (processes on this machine), vertex (Vertex AI) or '
      'kubernetes (a GKE cluster); the cloud ones package the code with '
      'xm.python_container (Docker) and need --accelerator, a gs:// --root '
      'and --data_dir.')
  flags.DEFINE_string(
      'accelerator', None, 'xmanager on vertex/kubernetes: NAME=COUNT of an '
      'XManager resource per job, e.g. a100=8.')
  flags.DEFINE_string(
      'image_tag', None, 'xmanager on vertex/kubernetes: where the image is '
      'pushed (default: XManager\'s gcr.io/<project>/<folder>:<time>).')
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
  # --launcher=tpu_vm.
  flags.DEFINE_enum(
      'action', None, list(tpu_vm.ACTIONS),
      'tpu_vm: create the slice, set up every worker (this commit, the '
      'pinned TPU environment), run the units, show their status, or pull '
      'their logs.')
  flags.DEFINE_string('tpu', None, 'tpu_vm: the slice\'s name.')
  flags.DEFINE_string('zone', None, 'tpu_vm: the slice\'s zone.')
  flags.DEFINE_string('project', None, 'tpu_vm: the Google Cloud project '
                      '(default: gcloud\'s).')
  flags.DEFINE_string('accelerator_type', None,
                      'tpu_vm: the slice\'s type for --action=create, e.g. '
                      'v4-8 (one worker) or v4-32 (four).')
  flags.DEFINE_string('data_dir', None, 'tpu_vm: dataset.data_dir of every '
                      'unit, on gs:// (build the dataset there once).')
  flags.DEFINE_string('logs_dir', 'workdirs/tpu_logs',
                      'tpu_vm: where --action=logs puts the workers\' logs.')
  flags.mark_flags_as_mutual_exclusive(['sweep', 'config'])


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


def _units():
  """The checked units of --sweep, or --config's one unit."""
  if FLAGS.sweep:
    if FLAGS.set:
      raise errors.ConfigError('--set applies to --config; a sweep file sets '
                               'its units\' keys itself.')
    return sweep_lib.load(FLAGS.sweep)
  config = config_overrides.load_config(FLAGS.config)
  overrides = dict(config_overrides.parse_override(config, text)
                   for text in FLAGS.set)
  return sweep_lib.check([sweep_lib.Unit(FLAGS.config, overrides,
                                         name=FLAGS.name)])


def _what() -> str:
  """What ran, for the record: the sweep, or the one config."""
  return FLAGS.sweep or f'--config={FLAGS.config}'


def _tpu_vm() -> None:
  """--launcher=tpu_vm: the action's gcloud commands, printed or run."""
  if FLAGS.action is None:
    raise errors.ConfigError(
        '--launcher=tpu_vm needs --action (one of '
        f'{", ".join(tpu_vm.ACTIONS)}); start with --action=setup.')
  slice_ = tpu_vm.Slice(FLAGS.tpu or '', FLAGS.zone or '',
                        FLAGS.project or '', FLAGS.accelerator_type or '')
  units, commit, dirty, requirements = [], '', False, ''
  tpu_vm.check_slice(slice_)
  if FLAGS.action in ('run', 'logs'):
    # Before the units load: a local root is one line, nothing else done.
    tpu_vm.check_remote(FLAGS.root,
                        FLAGS.data_dir if FLAGS.action == 'run' else None)
  if FLAGS.action in ('run', 'logs'):
    if not (FLAGS.sweep or FLAGS.config):
      raise errors.ConfigError(f'--action={FLAGS.action} needs --sweep or '
                               '--config (the units).')
    units = _units()
  if FLAGS.action in ('setup', 'run'):
    commit, dirty = tpu_vm.git_state(tpu_vm.REPOSITORY)
    with open(os.path.join(tpu_vm.REPOSITORY, 'requirements.txt')) as f:
      requirements = f.read()
  steps = tpu_vm.plan(
      FLAGS.action, slice_, units=units, root=FLAGS.root or '',
      data_dir=FLAGS.data_dir or '', commit=commit,
      requirements_text=requirements, bundle_path=tpu_vm.bundle_path(commit),
      logs_dir=FLAGS.logs_dir)
  dirty_line = (f'the checkout has uncommitted changes; the workers get '
                f'commit {commit[:12]} without them: commit them first.')
  if FLAGS.dry_run:
    if dirty:
      print(f'warning: {dirty_line}', file=sys.stderr)
    tpu_vm.print_plan(steps, workers=tpu_vm.workers(slice_.accelerator_type))
    return
  if dirty:
    raise errors.ConfigError(dirty_line)
  if shutil.which('gcloud') is None:
    raise errors.ConfigError('gcloud is not installed; ' + tpu_vm.INSTALL[
        'gcloud'])
  if FLAGS.action == 'logs':
    os.makedirs(FLAGS.logs_dir, exist_ok=True)
  tpu_vm.execute(steps)


def _xm_cloud(units) -> None:
  """--launcher=xmanager on Vertex AI or Kubernetes."""
  if not FLAGS.accelerator:
    raise errors.ConfigError(
        f'--xm_executor={FLAGS.xm_executor} needs --accelerator=NAME=COUNT '
        '(e.g. a100=8).')
  with open(os.path.join(tpu_vm.REPOSITORY, 'requirements.txt')) as f:
    requirements = f.read()
  args = (units, FLAGS.root, FLAGS.data_dir or '', FLAGS.xm_executor,
          FLAGS.accelerator, requirements)
  if FLAGS.dry_run:
    print(json.dumps(xm_cloud.plan(*args), indent=1))
    return
  experiment = xm_cloud.launch(*args, image_tag=FLAGS.image_tag or '')
  print(f'XManager experiment {experiment}: {len(units)} unit(s) done.')


def main() -> None:
  if FLAGS.parallel < 1:
    sys.exit(f'error: --parallel={FLAGS.parallel}; give at least 1.')
  if FLAGS.launcher == 'tpu_vm':
    try:
      _tpu_vm()
    except errors.ConfigError as e:
      sys.exit(f'error: {e}')
    return
  if not (FLAGS.sweep or FLAGS.config) or not FLAGS.root:
    sys.exit('error: give --sweep=FILE.py[:arg] (or --config=FILE.py[:arg]) '
             'and --root=DIR.')
  try:
    units = _units()
  except errors.ConfigError as e:
    sys.exit(f'error: {e}')
  if FLAGS.launcher == 'xmanager' and FLAGS.xm_executor != 'local':
    try:
      _xm_cloud(units)
    except errors.ConfigError as e:
      sys.exit(f'error: {e}')
    return
  if FLAGS.accelerator or FLAGS.xm_executor != 'local':
    sys.exit('error: --accelerator and --xm_executor=vertex|kubernetes apply '
             'to --launcher=xmanager\'s cloud executors; the local launchers '
             'use this machine\'s devices.')
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
      result = xm_launcher.launch(units, FLAGS.root, sweep=_what())
    else:
      result = local.run(units, FLAGS.root, sweep=_what(),
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
