"""Every check of a training config, run before any data or compiling.

`check_config` runs them all (types and ranges, devices, streams, towers,
loss weights, optimiser, the dataset's builder and teacher, made but not
prepared); `check_against_dataset` adds the few that need the prepared
dataset's classes. Each failure is one line that names the key and what it
accepts. The evolution's own block (`config.evolution`) is checked by
`evolution.proxy_trainer.check_evolution`, which `evolve` runs first.
tests/config_fuzz.py generates the bad values.
"""

import dataclasses
import json
import math
import os
import re
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from absl import logging
import tensorflow_datasets as tfds
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax import mesh as mesh_lib
from airstreams_jax import sharding as sharding_lib
from airstreams_jax.data import dataset_from_config
from airstreams_jax.data import synthetic_generator
from airstreams_jax.models import airstreams
from airstreams_jax.models import flow_pyramid
from airstreams_jax.models import tvn
from airstreams_jax.training import losses
from airstreams_jax.training import optim

_TUPLE_KEYS = ('mesh', 'sharding_rules', 'model.tower', 'model.streams',
               'model.stop_gradient_at', 'model.seg.widths',
               'optimizer.decay_at')
DTYPES = ('float32', 'bfloat16', 'float16')
SEG_OUTPUT_STRIDES = (8, 16, 32)
SINGLE_LABEL_METRICS = ('top1', 'top5', 'mean_class_accuracy')


def _get(config, key: str) -> Any:
  for part in key.split('.'):
    config = config[part]
  return config


def _require(config, key: str, ok: Callable[[Any], bool], accepted: str):
  value = _get(config, key)
  try:
    good = ok(value)
  except TypeError:
    good = False
  if not good:
    raise errors.ConfigError(f'config.{key}={value!r} is out of range; '
                             f'use {accepted}.')


def _integer_at_least(low: int) -> Callable[[Any], bool]:
  return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _finite_at_least(low: float) -> Callable[[Any], bool]:
  return lambda v: math.isfinite(v) and v >= low


def _each(values: Sequence[Any], ok: Callable[[Any], bool]) -> bool:
  return all(ok(v) for v in values)


def check_types(config) -> None:
  """Tuple-valued keys hold tuples (a command line can set them to a
  number, which ml_collections accepts)."""
  for key in _TUPLE_KEYS:
    value = _get(config, key)
    if not isinstance(value, (tuple, list)):
      raise errors.ConfigError(
          f'config.{key}={value!r} must be a tuple, e.g. '
          f'--config.{key}="{tuple(_example(key))}".')


def _example(key: str):
  return {'mesh': (('data', -1),), 'sharding_rules': (),
          'model.streams': ('rgb', 'flow'), 'model.stop_gradient_at':
          ('flow', 'semantic'), 'model.seg.widths': (64, 128, 256, 512),
          'optimizer.decay_at': (0.6, 0.8)}.get(key, ())


def check_values(config) -> None:
  """The value ranges of the run, model, data and optimiser keys."""
  check_types(config)
  positive = 'an integer >= 1'
  _require(config, 'keep_checkpoints', _integer_at_least(1), positive)
  metrics = ('mAP',) if config.model.multi_label else SINGLE_LABEL_METRICS
  _require(config, 'best_metric', lambda v: v in ('',) + metrics,
           f"one of {metrics} ('' keeps the newest checkpoints only)")
  # Model.
  _require(config, 'model.dropout_rate', lambda v: 0 <= v < 1, 'a value in '
           '[0, 1)')
  _require(config, 'model.dtype', lambda v: v in DTYPES, f'one of {DTYPES}')
  for key, choices in (('conv_gradients', airstreams.CONV_GRADIENTS),
                       ('pointwise_convs', airstreams.POINTWISE_CONVS)):
    if key in config.model:  # Configs of runs before it existed.
      _require(config, f'model.{key}', lambda v, c=choices: v in c,
               f'one of {choices}')
  for key in ('model.flow.num_iter', 'model.flow.bottleneck',
              'model.flow_of_flow.num_iter', 'model.flow_of_flow.bottleneck',
              'model.flow_of_flow.features'):
    _require(config, key, _integer_at_least(1), positive)
  _require(config, 'model.flow.presmooth_sigma', _finite_at_least(0),
           'a value >= 0 (0: no pre-smoothing)')
  if 'pyramid_levels' in config.model.flow:  # Configs of runs before it.
    for key in ('pyramid_levels', 'warps'):
      _require(config, 'model.flow.' + key, _integer_at_least(1),
               'an integer >= 1 (1 and 1: the paper\'s single scale)')
    _require(config, 'model.flow.scale_step', lambda v: 0 < v < 1,
             'a value in (0, 1) (OpenCV: 0.8)')
    _require(config, 'model.flow.warp_interpolation',
             lambda v: v in flow_pyramid.INTERPOLATIONS,
             f'one of {flow_pyramid.INTERPOLATIONS}')
  _require(config, 'model.seg.output_stride',
           lambda v: v in SEG_OUTPUT_STRIDES, f'one of {SEG_OUTPUT_STRIDES}')
  _require(config, 'model.seg.decoder_features', _integer_at_least(0),
           'an integer >= 0 (0: no upsampling head)')
  _require(config, 'model.seg.widths',
           lambda v: len(v) == 4 and _each(v, _integer_at_least(1)),
           'four positive integers, the widths of the DRN-18 stages')
  # Data.
  data = 'dataset.'
  _require(config, data + 'image_size', _integer_at_least(1), positive)
  _require(config, data + 'short_side',
           lambda v: v >= config.dataset.image_size,
           f'a value >= dataset.image_size={config.dataset.image_size} '
           '(frames are stored with this short side, then cropped)')
  frames = 2 if 'flow' in config.model.streams else 1
  _require(config, data + 'num_frames', _integer_at_least(frames),
           f'an integer >= {frames}' + (
               ' (the flow layer needs two frames)' if frames == 2 else ''))
  for key in ('eval_clips', 'eval_crops', 'frame_stride'):
    _require(config, data + key, _integer_at_least(1), positive)
  for key in ('max_frames', 'shuffle_buffer', 'build_workers'):
    _require(config, data + key, _integer_at_least(0),
             'an integer >= 0 (0: the default)')
  _require(config, data + 'fps', _finite_at_least(0),
           'a value >= 0 (0: the video\'s own rate)')
  _require(config, data + 'min_crop_area', lambda v: 0 < v <= 1,
           'a value in (0, 1]')
  for key in ('train_split', 'eval_split'):
    try:  # The syntax; the split names need the built dataset.
      tfds.core.ReadInstruction.from_spec(config.dataset[key])
    except (ValueError, AssertionError):
      raise errors.ConfigError(
          f'config.dataset.{key}={config.dataset[key]!r} is not a tfds split; '
          "use e.g. 'train', 'train[:80%]' or 'train+test'.") from None
  if config.dataset.name == 'synthetic_actions':
    _check_synthetic(config)
  # Optimiser.
  opt = 'optimizer.'
  _require(config, opt + 'learning_rate', lambda v: math.isfinite(v) and v > 0,
           'a finite value > 0')
  _require(config, opt + 'warmup_steps', _integer_at_least(0),
           'an integer >= 0')
  for key in ('weight_decay', 'grad_clip_norm'):
    _require(config, opt + key, _finite_at_least(0),
             'a value >= 0 (0 turns it off)')
  _require(config, opt + 'momentum', lambda v: 0 <= v < 1,
           'a value in [0, 1)')
  _require(config, opt + 'decay_at',
           lambda v: _each(v, lambda f: 0 < f < 1) and list(v) == sorted(v),
           'increasing fractions of training in (0, 1), e.g. (0.6, 0.8)')
  _require(config, opt + 'decay_factor',
           lambda v: math.isfinite(v) and v > 0, 'a finite value > 0')
  for key in ('flow_lr_multiplier', 'seg_lr_multiplier'):
    _require(config, opt + key, _finite_at_least(0),
             'a value >= 0 (0 freezes that net)')


def _check_synthetic(config) -> None:
  synthetic = 'dataset.synthetic.'
  if config.dataset.teacher != 'oracle':
    raise errors.ConfigError(
        f'config.dataset.teacher={config.dataset.teacher!r}: the synthetic '
        "dataset's masks come from its oracle; use 'oracle' (the other "
        'teachers label real videos).')
  _require(config, synthetic + 'num_classes', lambda v: 2 <= v <= 12,
           'an integer in [2, 12]')
  for key in ('num_train', 'num_test'):
    _require(config, synthetic + key, _integer_at_least(1), 'an integer >= 1')
  _require(config, synthetic + 'num_frames',
           _integer_at_least(config.dataset.num_frames),
           f'an integer >= dataset.num_frames={config.dataset.num_frames} '
           '(the clips are cut from the generated frames)')
  if 'num_distractors' in config.dataset.synthetic:
    most = synthetic_generator.MAX_NUM_DISTRACTORS
    _require(config, synthetic + 'num_distractors',
             lambda v: _integer_at_least(0)(v) and v <= most,
             f'an integer in [0, {most}] (still objects beside the actor)')
  _require(config, synthetic + 'oracle_drop_prob', lambda v: 0 <= v <= 1,
           'a probability in [0, 1]')
  _require(config, synthetic + 'oracle_erode_px', _integer_at_least(0),
           'an integer >= 0')


def read_loss_weights(config) -> np.ndarray:
  """The five λ from `loss_weights` or `loss_weights_file`, checked.

  Raises:
    errors.ConfigError: a missing or malformed weights file, a bad weight.
  """
  if config.loss_weights_file and not gfile.exists(config.loss_weights_file):
    raise errors.ConfigError(
        f'config.loss_weights_file={config.loss_weights_file!r} does not '
        'exist; give the path of a JSON file with the five loss weights.')
  try:
    return losses.loss_weights_vector(config.loss_weights,
                                      config.loss_weights_file)
  except json.JSONDecodeError as e:
    raise errors.ConfigError(
        f'config.loss_weights_file={config.loss_weights_file!r} is not JSON '
        f'({e}); write e.g. {{"rgb": 1, "flow": 0, "semantic": 0, '
        '"merged": 1, "interm": 1}.') from None
  except ValueError as e:
    raise errors.ConfigError(
        f'config.loss_weights{"_file" if config.loss_weights_file else ""}: '
        f'{e}') from None


def validate_config(config, mesh: jax.sharding.Mesh) -> None:
  """Checks what would otherwise fail late, after data building or compiling.

  Raises:
    errors.ConfigError: with a one-line message naming the problem and the fix.
  """
  data_size = mesh.shape[mesh_lib.DATA_AXIS]
  for key in ('batch_size', 'eval_batch_size'):
    value = config[key]
    if value <= 0 or value % data_size or value % jax.process_count():
      raise errors.ConfigError(
          f'config.{key}={value} is not divisible by the {data_size} devices '
          f'of the data axis ({jax.process_count()} processes); use a '
          f'multiple of {data_size}, e.g. --config.{key}='
          f'{max(data_size, value // data_size * data_size)}.')
  if config.num_train_steps < 0:
    raise errors.ConfigError('config.num_train_steps must be >= 0.')
  for key in ('log_every_steps', 'eval_every_steps', 'checkpoint_every_steps'):
    if config[key] <= 0:
      raise errors.ConfigError(
          f'config.{key} must be positive, got {config[key]}.')
  unknown = sorted(set(config.model.streams) - set(airstreams.STREAMS))
  if not config.model.streams or unknown:
    raise errors.ConfigError(
        f'config.model.streams={tuple(config.model.streams)} must be a '
        f'non-empty subset of {airstreams.STREAMS}.')
  grad_scale = config.model.get('grad_scale', 1.0)
  if not (math.isfinite(grad_scale) and grad_scale >= 0.0):
    raise errors.ConfigError(
        f'config.model.grad_scale={grad_scale} must be a finite value >= 0 '
        '(1 propagates the action gradients into the representations, 0 '
        'stops them).')
  unknown = sorted(set(config.model.stop_gradient_at) - {'flow', 'semantic'})
  if unknown:
    raise errors.ConfigError(
        f'config.model.stop_gradient_at has {unknown}; use a subset of '
        "('flow', 'semantic').")
  try:  # Tower specs, before any data work.
    for spec in config.model.tower:
      tvn.BlockSpec.from_config(spec)
  except (ValueError, TypeError) as e:
    raise errors.ConfigError(f'config.model.tower: {e}') from None
  try:
    sharding_lib.check_rules(config.sharding_rules, mesh)
  except ValueError as e:
    raise errors.ConfigError(str(e)) from None
  except TypeError:
    raise errors.ConfigError(
        f'config.sharding_rules={config.sharding_rules!r} is not (regex, '
        "mesh axes) pairs; use e.g. \"(('kernel$', ('model',)),)\".") from None
  if config.init_from and not gfile.isdir(
      os.path.join(config.init_from, 'checkpoints')):
    raise errors.ConfigError(
        f'config.init_from={config.init_from!r} has no checkpoints/ folder; '
        'give the workdir of a finished run (or --config.init_from=).')
  if not 1 <= config.model.merge_after < len(config.model.tower):
    raise errors.ConfigError(
        f'config.model.merge_after={config.model.merge_after} must be in '
        f'[1, {len(config.model.tower) - 1}].')


@dataclasses.dataclass(frozen=True)
class CheckedConfig:
  """What `check_config` derived on the way."""
  mesh: jax.sharding.Mesh
  loss_weights: np.ndarray
  tx: Any
  schedule: Any
  builder: Any  # Made, not prepared.


def check_config(config, mesh: Optional[jax.sharding.Mesh] = None,
                 make_builder: bool = True) -> CheckedConfig:
  """Every check of `config` that needs no data and no compiling.

  `make_builder=False` leaves the dataset's builder out (`builder` None): a
  real dataset's builder needs its files, which a benchmark of the model
  does not have.

  Raises:
    errors.ConfigError: one line naming the key and what it accepts.
  """
  check_values(config)
  if mesh is None:
    try:
      mesh = mesh_lib.make_mesh(config.mesh)
    except ValueError as e:
      raise errors.ConfigError(str(e)) from None
    except TypeError:
      raise errors.ConfigError(
          f'config.mesh={config.mesh!r} is not (axis name, size) pairs; use '
          "e.g. --config.mesh=\"(('data', -1),)\".") from None
  validate_config(config, mesh)
  loss_weights = read_loss_weights(config)
  try:  # Optimiser names and schedules, also before any data work.
    tx = optim.make_optimizer(config.optimizer, config.num_train_steps)
    schedule = optim.make_schedule(config.optimizer, config.num_train_steps)
  except ValueError as e:
    raise errors.ConfigError(str(e)) from None
  return CheckedConfig(mesh, loss_weights, tx, schedule,
                       dataset_from_config.make_builder(config.dataset)
                       if make_builder else None)


# Class-name words whose meaning a left-right flip of the clip reverses.
_MIRRORED_WORDS = ('left', 'right')


def flip_warning(random_flip: bool, class_names) -> str:
  """A warning when training flips clips whose class names say left or
  right (a flipped clip then shows the opposite motion under the same
  label, and the direction cannot be learned); '' otherwise."""
  if not random_flip:
    return ''
  named = [n for n in class_names
           if set(re.split(r'[^a-z]+', str(n).lower())) & set(_MIRRORED_WORDS)]
  if not named:
    return ''
  return (f'config.dataset.random_flip is on, but class names say left or '
          f'right ({", ".join(named[:3])}{", ..." if len(named) > 3 else ""})'
          ': a flipped clip shows the opposite direction under the same '
          'label; set --config.dataset.random_flip=false if direction '
          'matters.')


def check_best_metric(metric: str,
                      meta: dataset_from_config.DatasetMeta) -> None:
  if meta.multi_label:
    valid = ('mAP',)
  else:
    valid = ('top1', 'mean_class_accuracy') + (
        ('top5',) if meta.num_classes >= 5 else ())
  if metric and metric not in valid:
    raise errors.ConfigError(
        f'config.best_metric={metric!r} is not computed for this dataset; '
        f'use one of {valid} (or \'\' to keep only the latest checkpoints).')


def check_against_dataset(config, meta: dataset_from_config.DatasetMeta,
                          dataset_name: str) -> None:
  """The checks that need the prepared dataset's metadata (a real dataset's
  classes and label kind are known only once its videos are listed): the
  label kind, the best-checkpoint metric, and a warning for flips that
  would reverse a class's meaning.

  Raises:
    errors.ConfigError: one line naming the key to set.
  """
  if meta.multi_label != config.model.multi_label:
    raise errors.ConfigError(
        f'Dataset {dataset_name} is '
        f'{"multi" if meta.multi_label else "single"}-label; set '
        f'--config.model.multi_label={meta.multi_label}.')
  check_best_metric(config.best_metric, meta)
  warning = flip_warning(config.dataset.random_flip, meta.class_names)
  if warning:
    logging.warning(warning)
