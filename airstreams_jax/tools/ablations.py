r"""The paper's Tables 1-3 from one command: run the ablation sweep, write
the tables.

  python -m airstreams_jax.tools.ablations --dataset_config=configs/synthetic.py \
      --seeds=3 --root=workdirs/tables [--parallel=2] [--steps=300] \
      [--evaluations=20] [--proxy_steps=100]

Runs `configs/sweeps/ablations.py` through the local launcher (a rerun
skips finished units and resumes the others; `--tables_only` just rewrites
the tables from what is finished) and writes `ROOT/tables.md`: for each
setting, the mean ± standard deviation over seeds of the merged head's top-1
(mAP for multi-label datasets), the number of test videos, the paper's
number beside it (HMDB51 split 1, no pretraining) and, in a fourth table,
what the representations learned (segmentation mIoU against the teacher and
against the true masks where the data has them, the teacher's own mIoU
against the truth, flow direction accuracy).

With a user's HMDB51 and GPUs (`--set=KEY=VALUE`, repeatable, gives every
unit that `--config.KEY=VALUE`):
  python -m airstreams_jax.tools.ablations --dataset_config=configs/hmdb51.py:split=1 \
      --seeds=3 --root=workdirs/hmdb51_tables --parallel=8 --gpus_per_unit=1 \
      --set=dataset.manual_dir=/data/hmdb51 --data_dir=/data/tfds

The config values and the dataset are checked (a missing or empty
manual_dir, a misspelt key, a value out of range) before any unit starts.
"""

if __name__ == '__main__':
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start()

import dataclasses
import os
import sys
import time
from typing import Any, Dict, List, Sequence

from absl import flags
import jax
import numpy as np

from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax import mesh as mesh_lib
from airstreams_jax.data import dataset_from_config
from airstreams_jax.evolution import proxy_trainer
from airstreams_jax.launch import config_overrides
from airstreams_jax.launch import local
from airstreams_jax.launch import record as record_lib
from airstreams_jax.launch import sweep as sweep_lib
from airstreams_jax.training import config_checks
from airstreams_jax.training import losses
from airstreams_jax.tools import sweep_tables
from configs.sweeps import ablations as ablation_sweep

TABLES_FILE = 'tables.md'
SWEEP_FILE = 'configs/sweeps/ablations.py'

# The paper's numbers: HMDB51 split 1, top-1 %, no pretraining.
PAPER_TABLE_1_2 = {  # streams: (stop gradient, propagate gradient)
    'rgb': (41.72, 41.72), 'sem': (43.57, 46.32), 'flow': (46.84, 47.66),
    'all': (47.76, 50.02)}
PAPER_TABLE_3 = {'merged_only': 41.72, 'all_propagate': 50.02,
                 'uniform': 42.82, 'evolved': 50.53}
STREAM_LABELS = {'rgb': 'RGB', 'sem': 'RGB + semantics',
                 'flow': 'RGB + flow', 'all': 'RGB + semantics + flow'}
WEIGHT_LABELS = {
    'merged_only': 'no auxiliary losses (λ_merged only)',
    'all_propagate': 'fixed weights (the config\'s)',
    'uniform': 'uniform weights (all 1)',
    'evolved': 'evolved weights'}

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined by `cli.run`)."""
  flags.DEFINE_string(
      'dataset_config', 'configs/synthetic.py',
      'The config of every unit, as main\'s --config: file.py[:arg].')
  flags.DEFINE_integer('seeds', 3, 'Seeds per setting.')
  flags.DEFINE_string('root', None, 'The sweep\'s directory.')
  flags.DEFINE_integer('parallel', 1, 'Units running at once.')
  flags.DEFINE_integer(
      'gpus_per_unit', 0, 'GPUs per running unit (CUDA_VISIBLE_DEVICES); 0 = '
      'all visible.')
  flags.DEFINE_integer(
      'steps', 0, 'num_train_steps of each training; 0 = the config\'s.')
  flags.DEFINE_integer(
      'evaluations', 0,
      'Weightings the evolution evaluates; 0 = the config\'s.')
  flags.DEFINE_integer(
      'proxy_steps', 0, 'Steps of each proxy training; 0 = the config\'s.')
  flags.DEFINE_string(
      'data_dir', '',
      'dataset.data_dir of every unit; empty = the config\'s.')
  flags.DEFINE_multi_string(
      'set', [], 'KEY=VALUE: --config.KEY=VALUE for every unit (repeatable), '
      'e.g. --set=dataset.manual_dir=/data/hmdb51.')
  flags.DEFINE_bool(
      'tables_only', False, 'Write tables.md from the finished units; run '
      'nothing.')
  flags.mark_flags_as_required(['root'])


def _setting(name: str) -> str:
  """'all_stop_s2' -> 'all_stop'."""
  head, _, seed = name.rpartition('_s')
  return head if seed.isdigit() else name


def _metric_name(units: Sequence[Dict[str, Any]]) -> str:
  for unit in units:
    if 'mAP' in unit.get('metrics', {}):
      return 'mAP'
  return 'top1'


def collect(record: Dict[str, Any]) -> Dict[str, List[Dict[str, Any]]]:
  """Finished training units' metrics, by setting."""
  by_setting: Dict[str, List[Dict[str, Any]]] = {}
  for unit in record['units']:
    if unit['status'] == 'done' and unit['mode'] == 'train_and_eval' and (
        unit.get('metrics')):
      by_setting.setdefault(_setting(unit['name']), []).append(
          unit['metrics'])
  return by_setting


def _values(results: Dict[str, List[Dict[str, Any]]], setting: str,
            key: str) -> List[float]:
  return [m[key] for m in results.get(setting, []) if m.get(key) is not None]


def _representation_values(results, setting: str, key: str) -> List[float]:
  return [m['representations'][key] for m in results.get(setting, [])
          if m.get('representations', {}).get(key) is not None]


def _test_videos(results) -> str:
  counts = sorted({m['num_examples'] for ms in results.values() for m in ms
                   if 'num_examples' in m})
  classes = sorted({m['num_classes'] for ms in results.values() for m in ms
                    if 'num_classes' in m})
  chance = (f' ({classes[0]} classes, chance {100 / classes[0]:.1f} %)'
            if len(classes) == 1 else '')
  return (', '.join(str(c) for c in counts) or 'unknown') + ' test videos' + (
      chance)


def tables_markdown(record: Dict[str, Any], *, title: str = '') -> str:
  """The four tables of an ablation sweep's record, as Markdown."""
  results = collect(record)
  metric = _metric_name([m for ms in results.values() for m in ms])
  label = 'mAP' if metric == 'mAP' else 'top-1'
  counts = record_lib.counts(record)
  lines = [f'# {title or "Ablations"}', '',
           f'Merged-head {label} (%) on {_test_videos(results)}: '
           'mean ± standard deviation over seeds (n seeds in brackets). '
           'Paper: HMDB51 split 1, no pretraining (top-1 %). '
           f'Units: {counts["done"]} of {len(record["units"])} done'
           + (f', {counts["failed"]} failed' if counts['failed'] else '')
           + (f', {counts["blocked"]} blocked' if counts['blocked'] else '')
           + '.', '']

  lines += ['## Table 1: streams (action gradients propagated)', '',
            '| streams | ours | paper |', '|---|---|---|']
  for streams, label_text in STREAM_LABELS.items():
    setting = 'rgb' if streams == 'rgb' else f'{streams}_propagate'
    lines.append(f'| {label_text} | '
                 f'{sweep_tables.format_cell(_values(results, setting, metric))} | '
                 f'{PAPER_TABLE_1_2[streams][1]:.2f} |')

  lines += ['', '## Table 2: stop vs propagate the action gradients', '',
            '| streams | stop: ours | stop: paper | propagate: ours | '
            'propagate: paper |', '|---|---|---|---|---|']
  for streams, label_text in STREAM_LABELS.items():
    if streams == 'rgb':
      stop = propagate = 'rgb'
    else:
      stop, propagate = f'{streams}_stop', f'{streams}_propagate'
    paper_stop, paper_propagate = PAPER_TABLE_1_2[streams]
    lines.append(
        f'| {label_text} | {sweep_tables.format_cell(_values(results, stop, metric))} | '
        f'{paper_stop:.2f} | '
        f'{sweep_tables.format_cell(_values(results, propagate, metric))} | '
        f'{paper_propagate:.2f} |')

  lines += ['', '## Table 3: loss weights (all three streams)', '',
            '| weights | ours | paper |', '|---|---|---|']
  for setting, label_text in WEIGHT_LABELS.items():
    lines.append(f'| {label_text} | '
                 f'{sweep_tables.format_cell(_values(results, setting, metric))} | '
                 f'{PAPER_TABLE_3[setting]:.2f} |')
  evolved = [u for u in record['units'] if u['mode'] == 'evolve'
             and u['status'] == 'done']
  if evolved and evolved[0]['metrics'].get('best_weights'):
    # Only the λ: a confirmed search's file also holds its verdict.
    weights = ', '.join(f'{k} {v:.3f}' for k, v in
                        evolved[0]['metrics']['best_weights'].items()
                        if k not in losses.RECORD_KEYS)
    lines += ['', f'Evolved weights ({evolved[0]["name"]}): {weights}.']

  lines += ['', '## What the representations learned', '',
            'Segmentation mIoU (%) of the learned segmentation against the '
            'teacher\'s masks and against the true masks, the teacher\'s own '
            'mIoU against the true masks, and the share of moving pixels '
            'whose learned flow points within 45° of the true motion (%); '
            '— where the data or the streams have none.', '',
            '| setting | seg vs teacher | seg vs truth | teacher vs truth | '
            'flow direction |', '|---|---|---|---|---|']
  for setting in sorted(results):
    cells = [sweep_tables.format_cell(_representation_values(results, setting, key))
             for key in ('seg_miou', 'truth_seg_miou', 'truth_teacher_miou',
                         'flow_direction_accuracy')]
    lines.append(f'| {setting} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def write_tables(root: str, record: Dict[str, Any], title: str = '') -> str:
  path = os.path.join(root, TABLES_FILE)
  with open(path, 'w') as f:
    f.write(tables_markdown(record, title=title))
  return path


def sweep_arg() -> str:
  """This run as the sweep file's argument (for the record; the --set
  overrides are in each unit's entry)."""
  parts = [f'dataset_config={FLAGS.dataset_config}',
           f'seeds={FLAGS.seeds}', f'steps={FLAGS.steps}',
           f'evaluations={FLAGS.evaluations}',
           f'proxy_steps={FLAGS.proxy_steps}']
  if FLAGS.data_dir:
    parts.append(f'data_dir={FLAGS.data_dir}')
  return ','.join(parts)


def parse_sets(dataset_config: str, texts: Sequence[str]) -> Dict[str, Any]:
  """The --set values, each read as its key's type in the dataset config.

  Raises:
    errors.ConfigError: the config fails to load, a bad or repeated --set.
  """
  if not texts:
    return {}
  try:
    config = config_overrides.load_config(dataset_config)
  except errors.ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise errors.ConfigError(
        f'--dataset_config={dataset_config} fails to load: '
        f'{type(e).__name__}: {e}') from None
  overrides = {}
  for text in texts:
    key, value = config_overrides.parse_override(config, text)
    if key in overrides:
      raise errors.ConfigError(f'--set={key} is given twice; give it once.')
    overrides[key] = value
  return overrides


def _as_ablation_flags(message: str) -> str:
  """main's flag names in a message, as this command's."""
  return message.replace('--config.dataset.data_dir', '--data_dir').replace(
      '--config.', '--set=')


def _check_unit_config(config, mode: str) -> None:
  """What main checks of a unit's config before any data work (train's
  check_config), on a one-device mesh: the launcher's process does not see
  a unit's devices, so the batch's divisibility by them is left to the
  unit."""
  one_device = jax.sharding.Mesh(np.array(jax.devices()[:1]),
                                 (mesh_lib.DATA_AXIS,))
  config_checks.check_config(config, one_device, make_builder=False)
  if mode == 'evolve':
    proxy_trainer.check_evolution(config)


def check_before_start(units: Sequence[sweep_lib.Unit]) -> None:
  """Each distinct unit config's values, and each distinct dataset (that it
  can be made and, if not built yet, that its local copy lists videos),
  checked before any unit starts: a missing or empty manual_dir would
  otherwise fail every unit in turn.

  Raises:
    errors.ConfigError: naming the unit (or the dataset) and what to fix.
  """
  loaded, configs_seen, datasets_seen = {}, set(), set()
  for unit in units:
    # The evolution unit writes loss_weights_file later.
    config = sweep_lib.unit_config(unit, loaded,
                                   leave_out=('loss_weights_file',))
    key = (unit.mode, config.to_json())
    if key not in configs_seen:
      configs_seen.add(key)
      try:
        _check_unit_config(config, unit.mode)
      except errors.ConfigError as e:
        raise errors.ConfigError(
            f'unit {unit.name!r}: {_as_ablation_flags(str(e))}') from None
    dataset_key = config.dataset.to_json()
    if dataset_key in datasets_seen:
      continue
    datasets_seen.add(dataset_key)
    try:
      builder = dataset_from_config.make_builder(config.dataset)
      if not builder.is_prepared() and hasattr(builder, 'check_manual_dir'):
        builder.check_manual_dir()
    except errors.ConfigError as e:
      raise errors.ConfigError(
          f'dataset {config.dataset.name!r}: {_as_ablation_flags(str(e))}'
      ) from None
    except Exception as e:  # pylint: disable=broad-except
      raise errors.ConfigError(
          f'dataset {config.dataset.name!r} cannot be opened: '
          f'{type(e).__name__}: {e}') from None


def checked_units(dataset_config: str, sets: Sequence[str] = (),
                  **sweep_options) -> List[sweep_lib.Unit]:
  """The sweep's units for these flags, every check done (`--set` values,
  unit keys, config values, the dataset) and nothing started.

  Raises:
    errors.ConfigError, ValueError: one line naming the problem and the fix.
  """
  overrides = parse_sets(dataset_config, sets)
  units = sweep_lib.check(ablation_sweep.units(
      dataset_config, overrides=overrides, **sweep_options))
  check_before_start(units)
  return units


def main() -> None:
  root = FLAGS.root
  seeds = f'{FLAGS.seeds} seed' + ('s' if FLAGS.seeds > 1 else '')
  title = (f'Ablations: {FLAGS.dataset_config}, {seeds}'
           + (f', {FLAGS.steps} steps' if FLAGS.steps else ''))
  if FLAGS.tables_only:
    record = record_lib.read(root)
    if record is None:
      sys.exit(f'error: no {record_lib.RECORD_FILE} in {root}; run the '
               'sweep first (without --tables_only).')
    print(f'Tables: {write_tables(root, record, title)}')
    return
  arg = sweep_arg()
  try:
    units = checked_units(
        FLAGS.dataset_config, FLAGS.set, seeds=FLAGS.seeds,
        steps=FLAGS.steps, evaluations=FLAGS.evaluations,
        proxy_steps=FLAGS.proxy_steps, data_dir=FLAGS.data_dir)
  except (errors.ConfigError, ValueError) as e:
    sys.exit(f'error: {e}')
  started = time.time()
  try:
    resources = dataclasses.replace(
        local.default_resources(FLAGS.parallel),
        gpus_per_unit=FLAGS.gpus_per_unit)
    record = local.run(units, root, sweep=f'{SWEEP_FILE}:{arg}',
                       parallel=FLAGS.parallel, resources=resources)
  except ValueError as e:
    sys.exit(f'error: {e}')
  except KeyboardInterrupt as e:
    record = record_lib.read(root)
    if record is not None:
      write_tables(root, record, title)
    print(f'{e}', file=sys.stderr)
    sys.exit(130)
  path = write_tables(root, record, title)
  counts = record_lib.counts(record)
  print(f"Ablations: {counts['done']} of {len(record['units'])} units done "
        f"in {local.format_duration(time.time() - started)}; tables: {path}")
  if counts['failed'] or counts['blocked']:
    sys.exit(1)


if __name__ == '__main__':
  cli.run(main, define_flags)
