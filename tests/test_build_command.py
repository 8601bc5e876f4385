"""python -m airstreams_jax.data.build: the config's dataset, built as `main`
builds it (the same directory), with a summary."""

import os

from airstreams_jax.data import build
from airstreams_jax.data import dataset_from_config
from configs import synthetic


def test_build_makes_the_dataset_main_would_use(data_dir):
  config = synthetic.get_config('smoke')
  with config.unlocked():
    config.dataset.data_dir = data_dir
  summary = build.build(config.dataset)
  builder = dataset_from_config.make_builder(config.dataset)
  assert builder.is_prepared()
  first = summary.splitlines()[0]
  assert first == f'{builder.info.full_name} in {builder.data_dir}'
  assert os.path.isdir(builder.data_dir)
  splits = {name: s.num_examples for name, s in builder.info.splits.items()}
  assert summary.splitlines()[1].startswith(
      '  videos: ' + ', '.join(f'{k} {v}' for k, v in sorted(splits.items())))
