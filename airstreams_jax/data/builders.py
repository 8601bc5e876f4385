"""From `config.dataset` to a prepared tfds builder and its metadata."""

import dataclasses
import os
from typing import Tuple

from absl import logging
import jax
from jax.experimental import multihost_utils

from airstreams_jax import errors
from airstreams_jax.data import synthetic_actions


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
  """What the model needs to know about a dataset."""
  num_classes: int
  class_names: Tuple[str, ...]
  mask_class_names: Tuple[str, ...]  # Teacher classes; background first.
  multi_label: bool = False

  @property
  def num_seg_classes(self) -> int:
    return len(self.mask_class_names)


def _data_dir(dataset_config) -> str:
  return os.path.expanduser(dataset_config.data_dir or
                            '~/tensorflow_datasets')


def make_builder(dataset_config):
  """The tfds builder that `dataset_config` names (not yet prepared)."""
  if dataset_config.name == 'synthetic_actions':
    opts = dataset_config.synthetic
    return synthetic_actions.SyntheticActions(
        config=synthetic_actions.make_config(
            num_classes=opts.num_classes, num_frames=opts.num_frames,
            image_size=opts.image_size, num_train=opts.num_train,
            num_test=opts.num_test, seed=opts.seed),
        data_dir=_data_dir(dataset_config))
  raise errors.ConfigError(f'Unknown dataset {dataset_config.name!r}; '
                           "available: 'synthetic_actions'.")


def prepare(builder) -> None:
  """Builds the dataset on first use (a no-op once it exists).

  On a multi-process run, process 0 builds while the others wait, so that no
  two processes write the same files.
  """
  if jax.process_index() == 0:
    logging.info('Preparing %s in %s', builder.info.full_name,
                 builder.data_dir)
    builder.download_and_prepare()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f'prepared {builder.info.full_name}')
    builder.download_and_prepare()  # Now only reads the finished dataset.


def dataset_meta(builder) -> DatasetMeta:
  """Class names of the labels and of the teacher masks (from the builder)."""
  class_names = tuple(builder.info.features['label'].names)
  metadata = builder.info.metadata or {}
  if 'mask_class_names' not in metadata:
    raise errors.ConfigError(
        f'Dataset {builder.info.full_name} has no teacher classes '
        "(metadata['mask_class_names']); rebuild it with this version.")
  return DatasetMeta(num_classes=len(class_names), class_names=class_names,
                     mask_class_names=tuple(metadata['mask_class_names']))
