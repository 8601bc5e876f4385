"""Generated bad configs (tests/config_fuzz.py): each one ends in a one-line
error naming its key, before a dataset is built or a program compiled."""

import importlib

import pytest

from airstreams_jax.training import config_checks
from tests import config_fuzz


def test_every_generated_bad_config_is_caught_in_one_line(tmp_path):
  results = config_fuzz.run_all(str(tmp_path))
  escaped = [f'{" ".join(c.overrides)}: {c.why} {c.message}'
             for c in results if not c.caught]
  assert not escaped, '\n'.join(escaped)
  # Every kind was tried: unknown keys at every level, wrong types, values
  # out of range, teachers, loss-weight files, evolution settings.
  assert len(results) >= 190
  print(f'{len(results)} of {len(results)} bad configs caught in one line.')


def test_a_good_config_passes_the_same_checks(tmp_path):
  case = config_fuzz.Case([], key='')
  config_fuzz.run_case(case, str(tmp_path / 'data'))
  assert case.why == 'no error'  # Nothing raised for the smoke config.


@pytest.mark.parametrize('name', ['synthetic', 'video_folder', 'hmdb51', 'mit',
                                  'charades', 'toyota_smarthome'])
@pytest.mark.parametrize('arg', [None, 'smoke'])
def test_every_shipped_config_passes_the_value_checks(name, arg):
  config = importlib.import_module(f'configs.{name}').get_config(arg)
  config_checks.check_values(config)  # Raises ConfigError otherwise.
