r"""Builds a config's dataset ahead of training, exactly as `main` would.

  python -m airstreams_jax.data.build --config=configs/video_folder.py \
      --config.dataset.manual_dir=ROOT --config.dataset.data_dir=D

The dataset is the one `main` builds on first use with the same config and
overrides (the same storage options, so the same directory): a later
`python -m airstreams_jax.main --config=configs/video_folder.py ...` with the
same `--config.dataset.*` finds it built and starts training at once. It
prints where the dataset is, its splits and classes, and the report of bad
inputs and videos shorter than a clip.
"""

if __name__ == '__main__':
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start()

import json
import os

from absl import flags
from ml_collections import config_flags
from tensorflow.io import gfile

from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax.data import dataset_from_config
from airstreams_jax.data import video_dataset_builder

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined by `cli.run`)."""
  config_flags.DEFINE_config_file(
      'config', None, 'Experiment config file whose `dataset` block is built, '
      'e.g. configs/video_folder.py.', lock_config=True)
  flags.mark_flags_as_required(['config'])


def build(dataset_config) -> str:
  """Builds (or finds built) the dataset of `config.dataset`; returns a
  summary of it in a few lines."""
  builder = dataset_from_config.make_builder(dataset_config)
  dataset_from_config.prepare(builder)
  meta = dataset_from_config.dataset_meta(builder)
  splits = ', '.join(f'{name} {split.num_examples}'
                     for name, split in sorted(builder.info.splits.items()))
  lines = [f'{builder.info.full_name} in {builder.data_dir}',
           f'  videos: {splits}; {meta.num_classes} classes; teacher classes '
           f'{", ".join(meta.mask_class_names)}']
  report = os.path.join(builder.data_dir,
                        video_dataset_builder.REPORT_FILENAME)
  if gfile.exists(report):
    with gfile.GFile(report) as f:
      counts = json.load(f)
    lines.append(f"  bad inputs skipped: {counts['num_bad_inputs']}; videos "
                 'shorter than a clip: '
                 f"{counts.get('num_short_videos', 'not counted')} ({report})")
  return '\n'.join(lines)


def main() -> None:
  print(build(FLAGS.config.dataset))


if __name__ == '__main__':
  cli.run(main, define_flags, config_flag='config',
          one_line_errors=(errors.ConfigError,))
