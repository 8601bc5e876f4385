"""From `config.dataset` to a prepared tfds builder and its metadata."""

import contextlib
import dataclasses
import fcntl
import io
import os
import time
from typing import Any, Dict, Tuple

from absl import logging
import jax
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax import mesh as mesh_lib
from airstreams_jax import user_paths
from airstreams_jax.data import charades
from airstreams_jax.data import hmdb51
from airstreams_jax.data import moments_in_time
from airstreams_jax.data import synthetic_actions
from airstreams_jax.data import synthetic_generator
from airstreams_jax.data import toyota_smarthome
from airstreams_jax.data import video_folder
from airstreams_jax.teachers import base as teacher_base
from airstreams_jax.teachers import factory as teacher_factory

# Real-video datasets: config.dataset.name -> (builder class, the values of
# config.dataset.builder_config -> options of its builder config; '' is the
# default).
_VIDEO_BUILDERS = {
    'video_folder': (video_folder.VideoFolder, {'': {}}),
    'hmdb51': (hmdb51.Hmdb51, {
        '': {'split': 1},
        **{f'split{s}': {'split': s} for s in hmdb51.SPLITS}}),
    'charades': (charades.Charades, {'': {}}),
    'toyota_smarthome': (toyota_smarthome.ToyotaSmarthome, {
        '': {'protocol': toyota_smarthome.PROTOCOLS[0]},
        **{p: {'protocol': p} for p in toyota_smarthome.PROTOCOLS}}),
    'moments_in_time': (moments_in_time.MomentsInTime, {'': {}}),
}


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
  return user_paths.absolute(dataset_config.data_dir or
                            '~/tensorflow_datasets')


def make_builder(dataset_config):
  """The tfds builder that `dataset_config` names (not yet prepared).

  Raises:
    errors.ConfigError: For an unknown dataset or, for real videos, a missing
      manual_dir, an unknown teacher or a storage option out of range.
  """
  if dataset_config.name == 'synthetic_actions':
    opts = dataset_config.synthetic
    return synthetic_actions.SyntheticActions(
        config=synthetic_actions.make_config(
            num_classes=opts.num_classes, num_frames=opts.num_frames,
            image_size=opts.image_size, num_train=opts.num_train,
            num_test=opts.num_test, seed=opts.seed,
            num_distractors=opts.get(
                'num_distractors', synthetic_generator.MAX_NUM_DISTRACTORS),
            # The oracle teacher's corruption (teachers/oracle.py).
            oracle_drop_prob=opts.get('oracle_drop_prob', 0.0),
            oracle_erode_px=opts.get('oracle_erode_px', 0),
            oracle_seed=opts.get('oracle_seed', 0)),
        data_dir=_data_dir(dataset_config))
  if dataset_config.name in _VIDEO_BUILDERS:
    builder_cls, variants = _VIDEO_BUILDERS[dataset_config.name]
    variant = dataset_config.get('builder_config', '')
    if variant not in variants:
      valid = ', '.join(repr(v) for v in variants if v) or "only ''"
      raise errors.ConfigError(
          f'--config.dataset.builder_config={variant!r} is not a config of '
          f'{dataset_config.name}; valid: {valid}.')
    return make_video_builder(builder_cls, dataset_config,
                              **variants[variant])
  available = ', '.join(repr(n) for n in ['synthetic_actions',
                                          *_VIDEO_BUILDERS])
  raise errors.ConfigError(f'config.dataset.name={dataset_config.name!r} is '
                           f'unknown; available: {available}.')


def _teacher_options(dataset_config) -> Dict[str, Any]:
  """The set teacher options (None = unset) as a plain dict."""
  options = dataset_config.get('teacher_options') or {}
  to_dict = getattr(options, 'to_dict', None)
  options = to_dict() if to_dict else dict(options)
  return {k: list(v) if isinstance(v, tuple) else v
          for k, v in options.items() if v is not None}


def make_video_builder(builder_cls, dataset_config, **config_options):
  """A real-video builder (a `video_builder.VideoDatasetBuilder` subclass).

  Checks everything cheap before any decoding: manual_dir exists, the
  teacher name, the storage options; and that an already built dataset in
  data_dir came from the same manual_dir.

  Args:
    builder_cls: The builder class.
    dataset_config: `config.dataset`.
    **config_options: Further fields of the builder's config class (e.g. an
      official split).

  Returns:
    The builder (prepare it with `prepare`).

  Raises:
    errors.ConfigError: Naming the problem and the flag that fixes it.
  """
  d = dataset_config
  name = d.name
  if not d.manual_dir:
    raise errors.ConfigError(
        f'Dataset {name!r} reads a local copy: set '
        '--config.dataset.manual_dir=DIR (and --config.dataset.data_dir for '
        'the built dataset).')
  manual_dir = user_paths.absolute(d.manual_dir)
  if not gfile.isdir(manual_dir):
    raise errors.ConfigError(
        f'--config.dataset.manual_dir={d.manual_dir}: no such directory; '
        f'{builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS}')
  if d.teacher not in teacher_factory.TEACHERS:
    raise errors.ConfigError(
        f'--config.dataset.teacher={d.teacher!r} cannot label real videos; '
        f'valid: {", ".join(teacher_factory.TEACHERS)}.')
  try:  # Missing or unknown options, before any model is loaded.
    teacher_factory.check_options(d.teacher, d.get('teacher_options'),
                                  manual_dir)
  except teacher_base.TeacherSetupError as e:
    raise errors.ConfigError(f'config.dataset.teacher={d.teacher!r}: {e}'
                             ) from None
  try:
    config = builder_cls.make_config(
        teacher=d.teacher, teacher_options=_teacher_options(d),
        short_side=d.short_side, fps=float(d.fps), max_frames=d.max_frames,
        mask_size=d.mask_size, **config_options)
  except ValueError as e:
    raise errors.ConfigError(f'config.dataset: {e}') from None
  builder = builder_cls(config=config, data_dir=_data_dir(d),
                        manual_dir=manual_dir,
                        num_workers=d.get('build_workers', 0),
                        clip=(d.num_frames, d.frame_stride))
  built_from = (builder.info.metadata or {}).get('manual_dir')
  if built_from and built_from != manual_dir:
    raise errors.ConfigError(
        f'{builder.data_dir} holds {name} built from {built_from}, not from '
        f'--config.dataset.manual_dir={d.manual_dir}; use that manual_dir, '
        'or another --config.dataset.data_dir to build from this one.')
  return builder


@contextlib.contextmanager
def build_lock(data_dir: str):
  """Serialises the builds of one dataset version by separate runs (e.g.
  the parallel units of a sweep that all need a dataset not yet built): an
  exclusive lock on `<data_dir>.lock`. Local paths only: an object store
  (gs://) has no lock that every run would honour (flock is local, and a
  lock object left by a killed run would block the others for good), so
  there the build is not serialised; build the dataset once
  (`python -m airstreams_jax.data.build`) before a sweep shares it.
  """
  if user_paths.is_remote(data_dir):
    logging.info('Not locking the build of %s: a remote data_dir has no '
                 'shared lock; build it once before parallel runs use it.',
                 data_dir)
    yield
    return
  os.makedirs(os.path.dirname(data_dir), exist_ok=True)
  with open(data_dir + '.lock', 'a') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def prepare(builder) -> None:
  """Builds the dataset on first use (a no-op once it exists).

  On a multi-process run, process 0 builds while the others wait, so that no
  two processes write the same files; separate runs on one machine take
  turns (`build_lock`).
  """
  if jax.process_index() == 0:
    with build_lock(builder.data_dir):
      if builder.is_prepared():
        logging.info('Dataset %s: %s', builder.info.full_name,
                     builder.data_dir)
      else:
        logging.info('Building %s in %s (once; later runs reuse it)...',
                     builder.info.full_name, builder.data_dir)
        start = time.time()
        # tfds prints its own "preparing" and "prepared" lines to stdout,
        # sizes unknown for generated data; the log lines here replace them.
        with contextlib.redirect_stdout(io.StringIO()):
          builder.download_and_prepare()
        logging.info('Built %s in %.0f s.', builder.info.full_name,
                     time.time() - start)
      _read_info_if_built_elsewhere(builder)
  if jax.process_count() > 1:
    # However long the build takes (a device collective would give up after
    # 30 s).
    mesh_lib.wait_for_all_processes(
        f'airstreams_jax: prepared {builder.info.full_name}')
    _read_info_if_built_elsewhere(builder)


def _read_info_if_built_elsewhere(builder) -> None:
  """tfds reads a dataset's info (splits, metadata) when the builder is
  made; a builder made before another run or process finished building has
  none, and download_and_prepare() then returns without reading it."""
  if not builder.info.splits:
    builder.info.read_from_directory(builder.data_dir)


def dataset_meta(builder) -> DatasetMeta:
  """Class names of the labels and of the teacher masks (from the builder).

  Single-label datasets name their classes in the 'label' ClassLabel;
  multi-label ones (per-frame 'frame_labels') in metadata['class_names'].
  """
  metadata = builder.info.metadata or {}
  if 'mask_class_names' not in metadata:
    raise errors.ConfigError(
        f'Dataset {builder.info.full_name} has no teacher classes '
        "(metadata['mask_class_names']); rebuild it with this version.")
  features = builder.info.features
  if 'label' in features:
    class_names = tuple(features['label'].names)
    multi_label = False
  elif 'class_names' in metadata:
    class_names = tuple(metadata['class_names'])
    multi_label = bool(metadata.get('multi_label', True))
  else:
    raise errors.ConfigError(
        f'Dataset {builder.info.full_name} has neither a label feature nor '
        "metadata['class_names']; rebuild it with this version.")
  return DatasetMeta(num_classes=len(class_names), class_names=class_names,
                     mask_class_names=tuple(metadata['mask_class_names']),
                     multi_label=multi_label)
