"""Bad configs, generated: every one must end in a one-line error that names
its key, before any dataset is built or anything is compiled.

Used by tests/test_config_fuzz.py, and runnable for the count:

  python -m tests.config_fuzz

Each case is a list of `--config.*` overrides of the smoke config. It goes
through what `main` does with it: the flags parser (unknown keys, wrong
types), then the checks `setup_lib.setup` and `--mode=evolve` make before they
build a dataset (`config_checks.check_config`, `proxy_trainer.check_evolution`). A case is
caught when one of them raises the one-line error; it escapes when the
checks pass (or fail with anything else), or when the data directory was
created or a program compiled on the way.
"""

import dataclasses
import json
import os
import tempfile
from typing import Any, Callable, Iterator, List, Optional, Tuple

from absl import flags
import jax
from ml_collections import config_flags

from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax.evolution import proxy_trainer
from airstreams_jax.training import config_checks
from airstreams_jax.training import setup as setup_lib

SMOKE = 'configs/synthetic.py:smoke'


@dataclasses.dataclass
class Case:
  overrides: List[str]
  key: str  # What the error must name.
  message: str = ''  # The error, once run.
  caught: bool = False
  why: str = ''  # Why a case escaped.


def _leaves(config, prefix='') -> Iterator[Tuple[str, Any]]:
  for key, value in config.items():
    path = f'{prefix}{key}'
    if hasattr(value, 'items') and not isinstance(value, dict):
      yield from _leaves(value, path + '.')
    else:
      yield path, value


def _branches(config, prefix='') -> Iterator[str]:
  yield prefix.rstrip('.')
  for key, value in config.items():
    if hasattr(value, 'items') and not isinstance(value, dict):
      yield from _branches(value, f'{prefix}{key}.')


def _wrong_type(value) -> Optional[str]:
  """A command-line value of the wrong type for a config field's `value`."""
  if isinstance(value, bool):
    return 'maybe'
  if isinstance(value, (int, float)):
    return 'many'
  if isinstance(value, tuple):
    return '7'
  return None  # Strings take anything; None fields take any type.


def _files(directory: str) -> dict:
  """Loss-weight files that are missing, empty, not JSON, or wrong."""
  paths = {}
  for name, text in (('empty', ''), ('not_json', 'rgb: 1'),
                     ('wrong_names', json.dumps({'rgb': 1, 'depth': 1})),
                     ('negative', json.dumps(dict(rgb=1, flow=-1, semantic=0,
                                                  merged=1, interm=1))),
                     ('not_numbers', json.dumps(dict(rgb='a', flow=0,
                                                     semantic=0, merged=1,
                                                     interm=1))),
                     ('a_list', '[1, 0, 0, 1, 1]')):
    paths[name] = os.path.join(directory, f'{name}.json')
    with open(paths[name], 'w') as f:
      f.write(text)
  paths['missing'] = os.path.join(directory, 'missing.json')
  return paths


def cases(config, directory: str) -> List[Case]:
  """The bad overrides of `config` (the smoke config), with their keys."""
  out = []
  # Unknown keys at every level, and a misspelt key of each branch.
  for branch in _branches(config):
    prefix = f'{branch}.' if branch else ''
    out.append(Case([f'--config.{prefix}no_such_key=1'], 'no_such_key'))
  # A value of the wrong type for every field that has a type.
  for path, value in _leaves(config):
    bad = _wrong_type(value)
    if bad is not None:
      out.append(Case([f'--config.{path}={bad}'], path.split('.')[-1]))
  # Values of the right type that no run can use.
  semantic = [
      ('batch_size', ['0', '-8']), ('eval_batch_size', ['0', '-8']),
      ('num_train_steps', ['-1']), ('log_every_steps', ['0', '-2']),
      ('eval_every_steps', ['0']), ('checkpoint_every_steps', ['0']),
      ('keep_checkpoints', ['0', '-1']),
      ('best_metric', ['accuracy', 'mAP']),
      ('model.merge_after', ['0', '6', '99', '-1']),
      ('model.streams', ['()', "('rgb', 'depth')"]),
      ('model.grad_scale', ['-0.5', 'nan', 'inf']),
      ('model.stop_gradient_at', ["('rgb',)"]),
      ('model.dropout_rate', ['-0.1', '1.0', '1.5']),
      ('model.dtype', ['float8', 'int32']),
      ('model.flow.num_iter', ['0', '-3']),
      ('model.flow.bottleneck', ['0']),
      ('model.flow.presmooth_sigma', ['-1']),
      # The coarse-to-fine flow (models/flow_pyramid.py): 1 level and 1 warp
      # are the paper's layer; a step of 1 or more never shrinks the image.
      ('model.flow.pyramid_levels', ['0', '-2']),
      ('model.flow.warps', ['0', '-1']),
      ('model.flow.scale_step', ['0', '1.0', '1.5', '-0.5', 'nan']),
      ('model.flow.warp_interpolation', ['nearest', 'bicubic ']),
      ('model.seg.output_stride', ['7', '0', '64']),
      ('model.seg.decoder_features', ['-8']),
      ('model.seg.widths', ['(8, 16)', '(0, 16, 16, 32)']),
      ('loss_weights.rgb', ['-1', 'nan']), ('loss_weights.flow', ['-0.5']),
      ('loss_weights.semantic', ['-2']), ('loss_weights.merged', ['-1']),
      ('loss_weights.interm', ['-4', 'inf']),
      ('dataset.image_size', ['0', '-32', '256']),  # 256 > short_side.
      ('dataset.num_frames', ['0', '1', '-4']),
      ('dataset.eval_clips', ['0', '-1']), ('dataset.eval_crops', ['0']),
      ('dataset.frame_stride', ['0']), ('dataset.fps', ['-1']),
      ('dataset.max_frames', ['-1']), ('dataset.shuffle_buffer', ['-1']),
      ('dataset.min_crop_area', ['0', '1.5', '-0.2']),
      ('dataset.short_side', ['0', '16']),
      ('dataset.name', ['kinetics']),
      ('dataset.teacher', ['gpt']),
      ('dataset.train_split', ['nonsense[:']),
      ('dataset.synthetic.num_classes', ['0', '1']),
      ('dataset.synthetic.num_train', ['0']),
      ('dataset.synthetic.oracle_drop_prob', ['1.5', '-0.1']),
      ('dataset.synthetic.num_distractors', ['3', '-1']),
      ('dataset.synthetic.num_frames', ['2']),  # Fewer than dataset.num_frames.
      ('optimizer.name', ['adam']), ('optimizer.schedule', ['linear']),
      ('optimizer.learning_rate', ['0', '-0.001', 'nan']),
      ('optimizer.warmup_steps', ['-1']),
      ('optimizer.weight_decay', ['-0.1']),
      ('optimizer.momentum', ['-0.5', '1.5']),
      ('optimizer.grad_clip_norm', ['-1']),
      ('optimizer.decay_at', ['(0.8, 0.6)', '(1.5,)']),
      ('optimizer.decay_factor', ['0', '-0.1']),
      ('optimizer.flow_lr_multiplier', ['-1']),
      ('optimizer.seg_lr_multiplier', ['-1']),
      ('mesh', ["(('data', 3),)", "(('model', -1),)"]),
      ('sharding_rules', ["(('kernel$', ('nope',)),)"]),
  ]
  if jax.device_count() > 1:  # Not divisible by the devices.
    semantic += [('batch_size', [str(jax.device_count() + 1)]),
                 ('eval_batch_size', [str(jax.device_count() // 2)])]
  for key, values in semantic:
    for value in values:
      out.append(Case([f'--config.{key}={value}'], key.split('.')[-1]))
  # Teachers whose options are missing.
  for teacher in ('tflite', 'files', 'selfie', 'maskrcnn'):
    out.append(Case([f'--config.dataset.teacher={teacher}'], teacher))
  # Teachers of real videos whose options are missing (a folder of videos).
  for teacher in ('tflite', 'files', 'maskrcnn'):
    out.append(Case(['--config.dataset.name=video_folder',
                     f'--config.dataset.manual_dir={directory}',
                     f'--config.dataset.teacher={teacher}'], teacher))
  # Loss-weight files.
  for name, path in _files(directory).items():
    out.append(Case([f'--config.loss_weights_file={path}'],
                    'loss_weights_file'))
  # The evolution (checked by --mode=evolve).
  for key, value in (('population_size', '0'), ('population_size', '1'),
                     ('tournament_size', '0'), ('tournament_size', '5'),
                     ('num_evaluations', '0'), ('num_evaluations', '2'),
                     ('parallel', '0'),
                     ('proxy_steps', '0'), ('holdout_percent', '100'),
                     ('holdout_percent', '-5'), ('removal', 'random'),
                     ('proxy_repeats', '0'), ('race_repeats', '-1'),
                     ('strategy', 'bayes'), ('halving_keep', '1'),
                     ('halving_rungs', '0'), ('confirm_seeds', '1'),
                     ('confirm_seeds', '-1'), ('confirm_top', '0')):
    out.append(Case([f'--config.evolution.{key}={value}'], key))
  # Successive halving's first rung needs proxy_steps / keep^(rungs-1) >= 1.
  out.append(Case(['--config.evolution.strategy=halving',
                   '--config.evolution.proxy_steps=4'], 'proxy_steps'))
  # The search space: a draw, ranges, and a config weighting that cannot
  # join the first generation.
  out.append(Case(['--config.evolution.draw=normal'], 'draw'))
  for value in ('(1.0, 0.5)', '(-1.0, 1.0)', '(0.0, 1.0, 2.0)', "(0.0, 'a')"):
    out.append(Case([f'--config.evolution.weight_range={value}'],
                    'weight_range'))
  out.append(Case(['--config.evolution.draw=log_uniform'], 'weight_range'))
  out.append(Case([f'--config.loss_weights.{name}=0' for name in
                   ('rgb', 'merged', 'interm')] +
                  ['--config.evolution.start_from_config=true'],
                  'start_from_config'))
  return out


def _count_compiles() -> Tuple[List[float], Callable[[], None]]:
  compiles = []
  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event == '/jax/core/compile/backend_compile_duration':
      compiles.append(event)
  jax.monitoring.register_event_duration_secs_listener(listener)
  return compiles, lambda: jax.monitoring.unregister_event_duration_listener(
      listener)


def run_case(case: Case, data_dir: str) -> Case:
  """Runs one case as `main` would, up to where a dataset would be built."""
  argv = ['main', f'--config={SMOKE}',
          f'--config.dataset.data_dir={data_dir}'] + case.overrides
  values = flags.FlagValues()
  # The overrides are looked up in `sys_argv` (sys.argv by default).
  holder = config_flags.DEFINE_config_file('config', None, '',
                                           flag_values=values,
                                           lock_config=True, sys_argv=argv)
  try:
    cli.flags_parser(holder, values)(argv)
  except SystemExit as e:  # The parser's one-line error.
    case.message = str(e.code)
  else:
    compiles, stop = _count_compiles()
    try:
      config = holder.value
      if any(o.startswith('--config.evolution.') for o in case.overrides):
        proxy_trainer.check_evolution(config)
      config_checks.check_config(config)
      case.why = 'no error'
    except errors.ConfigError as e:
      case.message = f'error: {e}'
    except Exception as e:  # pylint: disable=broad-except
      case.why = f'{type(e).__name__}: {str(e)[:300]}'
    finally:
      stop()
    if compiles:
      case.why = f'{len(compiles)} programs compiled first'
  if os.path.exists(data_dir):
    case.why = 'the data directory was created first'
  if case.message and not case.why:
    if '\n' in case.message.strip():
      case.why = 'more than one line'
    elif case.key not in case.message:
      case.why = f'the error does not name {case.key!r}'
    else:
      case.caught = True
  return case


def run_all(directory: str) -> List[Case]:
  values = flags.FlagValues()
  argv = ['main', f'--config={SMOKE}']
  holder = config_flags.DEFINE_config_file('config', None, '',
                                           flag_values=values,
                                           lock_config=True, sys_argv=argv)
  values(argv)
  out = []
  for index, case in enumerate(cases(holder.value, directory)):
    out.append(run_case(case, os.path.join(directory, f'data_{index}')))
  return out


def main() -> None:
  with tempfile.TemporaryDirectory() as directory:
    results = run_all(directory)
  for case in results:
    if not case.caught:
      print(f'ESCAPED {" ".join(case.overrides)}: {case.why} | {case.message}')
  caught = sum(c.caught for c in results)
  print(f'{caught} of {len(results)} bad configs caught in one line.')


if __name__ == '__main__':
  main()
