"""A multi-label run end to end: fake Charades -> sigmoid losses -> mAP.

The real `charades` builder on a tiny fake copy (real CSV formats, the
`files` teacher), `configs/charades.py:smoke`, the library trainer.
"""

import json
import os

import pytest

from airstreams_jax.training import train
from configs import charades

import fake_datasets


@pytest.fixture(scope='module')
def charades_copy(tmp_path_factory):
  return fake_datasets.make_charades(
      str(tmp_path_factory.mktemp('charades')), masks=True)


def test_charades_smoke_trains_and_reports_map(charades_copy, data_dir,
                                               tmp_path):
  config = charades.get_config('smoke')
  with config.unlocked():
    config.dataset.manual_dir = charades_copy
    config.dataset.data_dir = data_dir
    config.dataset.teacher = 'files'
    config.dataset.short_side = 32
    config.dataset.mask_size = 8
    config.num_train_steps = 4
    config.checkpoint_every_steps = 2
    config.eval_every_steps = 4
    # The label path does not depend on the streams; RGB alone compiles fast.
    config.model.streams = ('rgb',)
  workdir = str(tmp_path / 'run')
  results = train.train_and_evaluate(config, workdir)
  assert 0.0 <= results['mAP'] <= 1.0
  assert 'top1' not in results
  assert set(results['per_stream']) == {'rgb', 'merged'}
  assert results['per_stream']['merged'] == results['mAP']
  with open(os.path.join(workdir, 'classes.json')) as f:
    assert json.load(f)['multi_label']
  # The best checkpoint by mAP is kept beside the newest ones.
  assert '4' in os.listdir(os.path.join(workdir, 'checkpoints'))
