"""Every config file loads, locked, with and without its smoke argument."""

import glob
import os

import pytest
from absl import flags
from ml_collections import config_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(
    p for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
    if not os.path.basename(p).startswith(('_', 'base')))


def _load(argv):
  flag_values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file('config', None, 'config',
                                           flag_values=flag_values,
                                           lock_config=True)
  flag_values(['prog'] + argv)
  return holder.value


def test_there_are_config_files():
  assert any(p.endswith('synthetic.py') for p in CONFIG_FILES)


@pytest.mark.parametrize('path', CONFIG_FILES)
@pytest.mark.parametrize('arg', ['', ':smoke'])
def test_config_loads_locked(path, arg):
  config = _load([f'--config={path}{arg}'])
  for key in ('num_train_steps', 'batch_size', 'seed', 'loss_weights',
              'loss_weights_file', 'mesh'):
    assert key in config
  for key in ('streams', 'merge_after', 'stop_gradient'):
    assert key in config.model
  for key in ('name', 'manual_dir', 'data_dir', 'teacher', 'num_frames',
              'image_size'):
    assert key in config.dataset
  assert set(config.loss_weights) == {'rgb', 'flow', 'semantic', 'merged',
                                      'interm'}
  with pytest.raises(AttributeError):
    config.num_train_step = 3  # A typo must not create a new field.


def test_unknown_config_argument():
  path = os.path.join(ROOT, 'configs', 'synthetic.py')
  with pytest.raises(flags.IllegalFlagValueError):
    _load([f'--config={path}:smok'])


REAL_DATASET_CONFIGS = ('hmdb51', 'mit', 'charades', 'toyota_smarthome')


@pytest.mark.parametrize('name', REAL_DATASET_CONFIGS)
def test_ablation_arguments(name, tmp_path):
  path = os.path.join(ROOT, 'configs', f'{name}.py')
  config = _load([f'--config={path}'])
  assert config.model.streams == ('rgb', 'flow', 'semantic')
  assert not config.model.stop_gradient
  assert dict(config.loss_weights) == dict(rgb=1.0, flow=0.0, semantic=0.0,
                                           merged=1.0, interm=1.0)
  assert config.loss_weights_file == ''
  weights = tmp_path / 'weights.json'
  config = _load([f'--config={path}:streams=rgb_sem,grad=stop,'
                  f'weights={weights}'])
  assert config.model.streams == ('rgb', 'semantic')
  assert config.model.stop_gradient
  assert config.loss_weights_file == str(weights)
  config = _load([f'--config={path}:streams=rgb_flow,weights=uniform'])
  assert config.model.streams == ('rgb', 'flow')
  assert set(config.loss_weights.values()) == {1.0}
  with pytest.raises(flags.IllegalFlagValueError, match='rgb_sem'):
    _load([f'--config={path}:streams=flow_only'])
  with pytest.raises(flags.IllegalFlagValueError, match='propagate'):
    _load([f'--config={path}:grad=none'])


def test_real_dataset_configs_share_the_paper_scale_model():
  """One model and clip size for all: test_model_info checks its budget."""
  configs = [_load([f'--config={os.path.join(ROOT, "configs", n)}.py'])
             for n in REAL_DATASET_CONFIGS]
  for config in configs[1:]:
    assert config.model.tower == configs[0].model.tower
    assert config.model.seg == configs[0].model.seg
    for key in ('num_frames', 'image_size'):
      assert config.dataset[key] == configs[0].dataset[key]


def test_hmdb51_split_argument():
  path = os.path.join(ROOT, 'configs', 'hmdb51.py')
  assert _load([f'--config={path}:split=3']).dataset.builder_config == 'split3'
  with pytest.raises(flags.IllegalFlagValueError, match='splits 1, 2 and 3'):
    _load([f'--config={path}:split=4'])


def test_charades_is_multi_label_and_can_start_from_mit():
  path = os.path.join(ROOT, 'configs', 'charades.py')
  config = _load([f'--config={path}:init=workdirs/mit'])
  assert config.model.multi_label
  assert config.init_from == 'workdirs/mit'
  assert config.best_metric == 'mAP'


def test_synthetic_distractors_argument():
  from airstreams_jax import errors  # pylint: disable=g-import-not-at-top
  from airstreams_jax.data import dataset_from_config  # pylint: disable=g-import-not-at-top
  from airstreams_jax.training import config_checks  # pylint: disable=g-import-not-at-top
  path = os.path.join(ROOT, 'configs', 'synthetic.py')
  default = _load([f'--config={path}'])
  assert default.dataset.synthetic.num_distractors == 2
  alone = _load([f'--config={path}:distractors=0'])
  assert alone.dataset.synthetic.num_distractors == 0
  # Its own dataset version, beside the default one.
  names = [dataset_from_config.make_builder(c.dataset).builder_config.name
           for c in (default, alone)]
  assert names == ['c6_t10_s32_n2048x256_seed0',
                   'c6_t10_s32_n2048x256_seed0_d0']
  assert _load([f'--config={path}:smoke,distractors=1']
               ).dataset.synthetic.num_distractors == 1
  with pytest.raises(errors.ConfigError, match='num_distractors=3'):
    config_checks.check_values(_load([f'--config={path}:distractors=3']))


def test_flipping_classes_that_name_a_direction_is_warned():
  from airstreams_jax.training import config_checks  # pylint: disable=g-import-not-at-top
  folder = ('ball_left', 'ball_right', 'box_left', 'box_right',
            'person_left', 'person_right')
  warning = config_checks.flip_warning(True, folder)
  assert warning.startswith('config.dataset.random_flip is on, but class '
                            'names say left or right (ball_left, ball_right,'
                            ' box_left, ...)')
  assert '--config.dataset.random_flip=false' in warning
  assert config_checks.flip_warning(False, folder) == ''
  # HMDB51-like names, and words that only contain "left"/"right".
  assert config_checks.flip_warning(True, ('brush_hair', 'cartwheel', 'ride_bike',
                                   'leftover', 'bright_light')) == ''
  assert config_checks.flip_warning(True, ('Turn Left', 'jump')) != ''


def test_the_real_video_config_gets_every_flow_pyramid_level():
  """configs/video_folder.py's coarse-to-fine flow (docs/real_video.md) at
  its input size: no level is dropped for being under the pyramid's
  smallest side (64 -> 32 -> 16 px), and the flow runs coarse to fine."""
  from airstreams_jax.models import flow_pyramid  # pylint: disable=g-import-not-at-top
  from configs import video_folder  # pylint: disable=g-import-not-at-top
  config = video_folder.get_config()
  flow, size = config.model.flow, config.dataset.image_size
  sizes = flow_pyramid.pyramid_sizes(size, size, flow.pyramid_levels,
                                     flow.scale_step)
  assert flow.pyramid_levels > 1 and len(sizes) == flow.pyramid_levels
