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
