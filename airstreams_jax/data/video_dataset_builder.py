"""The shared tfds builder for real videos: decode, label with a teacher, store.

A dataset module (video_folder, hmdb51, charades, ...) subclasses
`VideoDatasetBuilder` and supplies only what is specific to it:

  class MyDataset(video_builder.VideoDatasetBuilder):
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Initial release.'}
    BUILDER_CONFIGS = [video_builder.VideoBuilderConfig()]  # The default.
    MANUAL_DOWNLOAD_INSTRUCTIONS = 'Place ... in manual_dir.'
    DESCRIPTION = 'One paragraph about the dataset.'
    MULTI_LABEL = False

    def _list_videos(self, manual_dir):
      return video_builder.VideoListing(
          class_names=[...], splits={'train': [VideoEntry(...)], ...})

Everything else happens here. For each `VideoEntry`, in a pool of worker
processes (one teacher per worker): `video_io.decode` keeps the frames at the
configured rate and size, the teacher labels them, the masks are resized
(nearest neighbour) to the stored mask size and the frames JPEG-encoded. The
stored features are the contract of `video_entries` ('video', 'masks',
'label' or 'frame_labels', 'video_id'). Metadata: 'mask_class_names' (the
teacher's), 'class_names', 'multi_label', 'num_bad_inputs',
'num_short_videos', 'manual_dir'.

A file that does not decode, or that the teacher rejects (`ValueError`, e.g.
the teachers' `TeacherInputError`), is skipped; so is anything the listing
reports in `VideoListing.bad_inputs` (e.g. an unreadable folder). Every
skipped input is named with its reason in `bad_inputs.json` beside the
dataset (`<data_dir>/<name>/<config>/<version>/bad_inputs.json`) and counted
in the log. A split left without any good video is an error. A video
shorter than the config's clip is kept, but warned about once and named in
the same report (`short_videos`): its clips repeat the last frame.

Each builder config's name encodes every option that changes the stored
data (`VideoBuilderConfig.options_name`), so datasets built with different
options never share a directory.
"""

import abc
import collections
import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow_datasets as tfds
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax import user_paths
from airstreams_jax.data import video_io
from airstreams_jax.data import video_processing
from airstreams_jax.data import video_windows
from airstreams_jax.data.video_entries import VideoEntry

REPORT_FILENAME = 'bad_inputs.json'
# Teacher options that change only speed or caching, not the masks: left
# out of the config name so that changing them reuses the dataset.
_OPTIONS_NOT_IN_NAME = ('num_threads', 'batch_size', 'cache_dir')
# The listing may skip thousands of inputs (e.g. videos missing from disk):
# the log names the first ones, the report all.
_MAX_LOGGED_LISTING_SKIPS = 20
# Videos in flight per worker: keeps both cores busy while results are
# written in order, without holding a whole split in memory.
_IN_FLIGHT_PER_WORKER = 4


@dataclasses.dataclass(eq=False)
class VideoBuilderConfig(tfds.core.BuilderConfig):
  """How videos become examples. The name is derived from the options.

  Attributes:
    name: Leave empty: set to `options_name()`.
    teacher: Teacher name for `teachers.factory.make_teacher`.
    teacher_options: The teacher's options (JSON-serialisable; None values
      count as unset and are dropped).
    short_side: Stored frames are resized so their short side has this many
      pixels (aspect ratio kept).
    fps: Frames are kept at this rate (0: every frame of the source).
    max_frames: At most this many frames per video, evenly spread over it
      (0: no limit).
    mask_size: Short side of the stored masks, at most `short_side`.
  """
  name: str = ''
  teacher: str = 'selfie'
  teacher_options: Dict[str, Any] = dataclasses.field(default_factory=dict)
  short_side: int = 128
  fps: float = 0.
  max_frames: int = 0
  mask_size: int = 64

  def __post_init__(self):
    self.teacher_options = {k: v for k, v in dict(self.teacher_options).items()
                            if v is not None}
    self.validate()
    if not self.name:
      self.name = self.options_name()
    if not self.description:
      self.description = self.name

  def validate(self) -> None:
    """Raises ValueError naming the first option out of range."""
    if not self.teacher:
      raise ValueError('teacher must be set (e.g. selfie, files, tflite).')
    try:
      json.dumps(self.teacher_options, sort_keys=True)
    except (TypeError, ValueError) as e:
      raise ValueError(f'teacher_options must be JSON-serialisable: {e}'
                       ) from None
    if self.short_side < 8:
      raise ValueError(f'short_side must be >= 8, got {self.short_side}.')
    if self.fps < 0:
      raise ValueError(f'fps must be >= 0 (0: every frame), got {self.fps}.')
    if self.max_frames < 0:
      raise ValueError('max_frames must be >= 0 (0: no limit), got '
                       f'{self.max_frames}.')
    if not 1 <= self.mask_size <= self.short_side:
      raise ValueError(f'mask_size must be in [1, short_side={self.short_side}'
                       f'], got {self.mask_size}.')

  def options_name(self) -> str:
    """E.g. 'selfie_s128_fps8_max64_m32'; options add a hash to the teacher.

    Subclasses with more options (e.g. an official split) prepend them.
    """
    teacher = self.teacher
    options = {k: v for k, v in self.teacher_options.items()
               if k not in _OPTIONS_NOT_IN_NAME}
    if options:
      digest = hashlib.sha1(json.dumps(options, sort_keys=True)
                            .encode()).hexdigest()[:8]
      teacher = f'{teacher}-{digest}'
    fps = f'{self.fps:g}'.replace('.', 'p') if self.fps else 'all'
    max_frames = self.max_frames or 'all'
    return (f'{teacher}_s{self.short_side}_fps{fps}_max{max_frames}'
            f'_m{self.mask_size}')


@dataclasses.dataclass(frozen=True)
class ShortVideo:
  """A video shorter than a clip: `repeated` of a clip's frames copy its
  last stored frame."""
  path: str
  split: str
  num_frames: int
  repeated: int


@dataclasses.dataclass(frozen=True)
class BadInput:
  """An input left out of the dataset, and why."""
  path: str
  reason: str
  split: str = ''


def split_on_disk(entries: Sequence[VideoEntry], *, dataset: str,
                  split: str, listed_in: str
                  ) -> Tuple[List[VideoEntry], List[BadInput]]:
  """The listed videos that exist, and a BadInput for each that does not.

  Args:
    entries: the videos a split file lists.
    dataset: the dataset's name, for the log.
    split: the split's name.
    listed_in: the file that lists them, named in the report.

  Returns:
    (present entries, bad inputs for the missing ones); the caller decides
    whether an empty split is an error.
  """
  present = [e for e in entries if user_paths.is_file(e.path)]
  missing = [e.path for e in entries if not user_paths.is_file(e.path)]
  if missing:
    logging.warning('%s %s: %d of %d listed videos are not on disk (named in '
                    'the report of bad inputs).', dataset, split, len(missing),
                    len(entries))
  return present, [BadInput(p, f'listed in {listed_in} but not on disk', split)
                   for p in missing]


@dataclasses.dataclass(frozen=True)
class VideoListing:
  """What a dataset module finds in `manual_dir`.

  Attributes:
    class_names: Action class names; entry labels index them.
    splits: Split name -> its videos, in a deterministic order.
    bad_inputs: What the listing skipped (e.g. unreadable folders); they
      go into the report with the videos that fail to decode.
  """
  class_names: Sequence[str]
  splits: Mapping[str, Sequence[VideoEntry]]
  bad_inputs: Sequence[BadInput] = ()


class VideoDatasetBuilder(tfds.core.GeneratorBasedBuilder):
  """Base of the real-video builders; see the module docstring.

  Subclasses set VERSION, RELEASE_NOTES, BUILDER_CONFIGS (at least a default
  `VideoBuilderConfig`, or a subclass of it), MANUAL_DOWNLOAD_INSTRUCTIONS,
  DESCRIPTION, MULTI_LABEL, and implement `_list_videos`.
  """

  DESCRIPTION = ''
  MULTI_LABEL = False
  # The decoder the workers run (a module-level function, so that spawned
  # workers can import it).
  decode = staticmethod(video_io.decode)

  def __init__(self, *, manual_dir: str = '', num_workers: int = 0,
               clip: Tuple[int, int] = (0, 1), **kwargs):
    """Creates the builder (nothing is read until it is prepared).

    Args:
      manual_dir: The local copy of the dataset; when empty, tfds's
        `download_config.manual_dir` (`tfds build --manual_dir=...`).
      num_workers: Worker processes for decoding and the teacher (0: one
        per CPU core; 1: work in this process).
      clip: (num_frames, frame_stride) of the clips the training config
        takes, to count (and name in the report) the videos shorter than a
        clip, whose clips repeat their last frame; (0, 1): not counted. Not
        part of the dataset's identity: clips are cut when reading.
      **kwargs: For `tfds.core.GeneratorBasedBuilder` (data_dir, config,
        ...).
    """
    self._manual_dir = user_paths.absolute(manual_dir) if manual_dir else ''
    self._num_workers = num_workers or os.cpu_count() or 1
    self._bad_inputs: List[BadInput] = []
    self._clip = clip
    self._short_videos: List[ShortVideo] = []
    self._pool = None
    self._teacher = None
    self._work = None
    super().__init__(**kwargs)
    # While building, `data_dir` names a temporary directory that tfds
    # renames to this one when the build succeeds.
    self._final_data_dir = self.data_dir

  @classmethod
  def make_config(cls, **options) -> VideoBuilderConfig:
    """A config of this builder from its options.

    Args:
      **options: Fields of the builder's config class (`teacher`,
        `short_side`, ...).

    Returns:
      The config; the predefined instance of `BUILDER_CONFIGS` when the
      options name one (tfds refuses a look-alike with the same name).

    Raises:
      ValueError: If an option is out of range.
    """
    config = cls.builder_config_cls(**options)
    return cls.builder_configs.get(config.name, config)

  @abc.abstractmethod
  def _list_videos(self, manual_dir: str) -> VideoListing:
    """Finds the videos of every split in the local copy.

    Args:
      manual_dir: The local copy (an existing directory).

    Returns:
      The class names, the entries of each split (labels index the class
      names; single-label entries set `label`, multi-label ones
      `intervals`; `video_id`s unique within a split) and anything skipped.

    Raises:
      errors.ConfigError: When expected files are missing, with the layout
        expected and where to get the data.
    """

  def _info(self) -> tfds.core.DatasetInfo:
    features = {
        'video': tfds.features.Video(shape=(None, None, None, 3),
                                     encoding_format='jpeg'),
        'masks': tfds.features.Tensor(shape=(None, None, None),
                                      dtype=np.uint8,
                                      encoding=tfds.features.Encoding.ZLIB),
        'video_id': tfds.features.Text(),
    }
    if self.MULTI_LABEL:
      features['frame_labels'] = tfds.features.Tensor(
          shape=(None, None), dtype=np.uint8,
          encoding=tfds.features.Encoding.ZLIB)
    else:
      # Names are set from the listing when the dataset is built, and read
      # back from the dataset's files afterwards.
      features['label'] = tfds.features.ClassLabel()
    return self.dataset_info_from_configs(
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(),
    )

  def _resolve_manual_dir(self, dl_manager) -> str:
    if self._manual_dir:
      manual_dir = self._manual_dir
    else:
      manual_dir = os.fspath(dl_manager.manual_dir)
    if not gfile.isdir(manual_dir):
      raise errors.ConfigError(
          f'manual_dir {manual_dir} is not a directory; '
          f'{self.MANUAL_DOWNLOAD_INSTRUCTIONS or ""}'.strip())
    return manual_dir

  def check_manual_dir(self) -> None:
    """Lists the local copy and checks the listing as a build would, without
    decoding anything (names and file sizes), so that a launcher can refuse
    a folder that cannot make this dataset before any run starts.

    Raises:
      errors.ConfigError: no such directory, expected files missing, no
        classes or an empty split.
    """
    manual_dir = self._manual_dir
    if not manual_dir or not gfile.isdir(manual_dir):
      raise errors.ConfigError(
          f'manual_dir {manual_dir!r} is not a directory; '
          f'{self.MANUAL_DOWNLOAD_INSTRUCTIONS or ""}'.strip())
    self._check_listing(self._list_videos(manual_dir))

  def _check_listing(self, listing: VideoListing) -> None:
    """Raises ConfigError for a listing that cannot make a dataset."""
    num_classes = len(listing.class_names)
    if not num_classes:
      raise errors.ConfigError(f'{self.name}: the listing found no classes.')
    for split, entries in listing.splits.items():
      if not entries:
        skipped = sum(b.split == split for b in listing.bad_inputs)
        raise errors.ConfigError(
            f'{self.name}: split {split!r} lists no videos ({skipped} inputs '
            'skipped while listing it).')
      ids = collections.Counter(e.video_id for e in entries)
      twice = [i for i, n in ids.items() if n > 1]
      if twice:
        raise errors.ConfigError(f'{self.name}: video ids listed twice in '
                                 f'split {split!r}: {twice[:5]}')
      for e in entries:
        labels = [i.label for i in e.intervals] if self.MULTI_LABEL else [
            e.label]
        if any(not 0 <= label < num_classes for label in labels):
          raise errors.ConfigError(
              f'{self.name}: {e.path} has label(s) {labels} outside the '
              f'{num_classes} classes.')

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    manual_dir = self._resolve_manual_dir(dl_manager)
    listing = self._list_videos(manual_dir)
    self._bad_inputs = list(listing.bad_inputs)
    for bad in self._bad_inputs[:_MAX_LOGGED_LISTING_SKIPS]:
      logging.warning('Skipping %s: %s', bad.path, bad.reason)
    if len(self._bad_inputs) > _MAX_LOGGED_LISTING_SKIPS:
      logging.warning('... and %d more skipped while listing (see %s).',
                      len(self._bad_inputs) - _MAX_LOGGED_LISTING_SKIPS,
                      REPORT_FILENAME)
    self._check_listing(listing)
    class_names = [str(n) for n in listing.class_names]
    # The teacher in this process: its class names go into the metadata,
    # and a misconfigured teacher fails before any video is decoded.
    self._teacher = video_processing.make_teacher(cfg.teacher, manual_dir,
                                                  cfg.teacher_options)
    self._work = video_processing.Work(
        teacher=cfg.teacher, teacher_options=dict(cfg.teacher_options),
        manual_dir=manual_dir, fps=cfg.fps, max_frames=cfg.max_frames,
        short_side=cfg.short_side, mask_size=cfg.mask_size,
        multi_label=self.MULTI_LABEL, num_classes=len(class_names),
        decode=type(self).decode)
    if not self.MULTI_LABEL:
      self.info.features['label'].names = class_names
    self.info.metadata.update(
        mask_class_names=list(self._teacher.class_names),
        class_names=class_names, multi_label=self.MULTI_LABEL,
        manual_dir=manual_dir)
    return {split: self._generate_examples(split, list(entries))
            for split, entries in listing.splits.items()}

  def _download_and_prepare(self, dl_manager, download_config=None):
    """Runs tfds's generation inside a worker pool; writes the report."""
    self._bad_inputs = []
    self._short_videos = []
    try:
      super()._download_and_prepare(dl_manager, download_config)
    except Exception:
      if self._bad_inputs:
        # The incomplete dataset directory is about to be deleted: keep the
        # report beside it.
        self._write_report(os.path.dirname(self._final_data_dir))
      raise
    finally:
      if self._pool is not None:
        self._pool.shutdown()
        self._pool = None
    self.info.metadata['num_bad_inputs'] = len(self._bad_inputs)
    self.info.metadata['num_short_videos'] = len(self._short_videos)
    self._write_report(self.data_dir)  # Renamed to the version dir after.
    if self._bad_inputs:
      logging.warning('%s: %d bad inputs skipped, named in %s',
                      self.info.full_name, len(self._bad_inputs),
                      os.path.join(self._final_data_dir, REPORT_FILENAME))

  def _write_report(self, directory: str) -> None:
    with gfile.GFile(os.path.join(directory, REPORT_FILENAME), 'w') as f:
      json.dump({'num_bad_inputs': len(self._bad_inputs),
                 'bad_inputs': [dataclasses.asdict(b)
                                for b in self._bad_inputs],
                 'clip': {'num_frames': self._clip[0],
                          'frame_stride': self._clip[1]},
                 'num_short_videos': len(self._short_videos),
                 'short_videos': [dataclasses.asdict(v)
                                  for v in self._short_videos]}, f, indent=1)

  def _count_if_short(self, path: str, split: str, num_stored: int) -> None:
    """Warns once for a video shorter than a clip and keeps it for the
    report: its clips repeat the last frame (flow pairs without motion)."""
    num_frames, frame_stride = self._clip
    if not num_frames:
      return
    repeated = video_windows.repeated_frames(num_stored, num_frames,
                                             frame_stride)
    if repeated:
      logging.warning(
          '%s: %d stored frames, shorter than a clip of %d frames at stride '
          '%d; %d of its frames repeat the last one.', path, num_stored,
          num_frames, frame_stride, repeated)
      self._short_videos.append(ShortVideo(path, split, num_stored, repeated))

  def _get_pool(self) -> Optional[video_processing.WorkerPools]:
    if self._num_workers <= 1:
      return None
    if self._pool is None:
      self._pool = video_processing.WorkerPools(self._num_workers, self._work)
    return self._pool

  def _generate_examples(self, split: str, entries: List[VideoEntry]):
    pool = self._get_pool()
    num_good = 0
    bad = []
    results = video_processing.ordered_results(
        entries, pool, _IN_FLIGHT_PER_WORKER * self._num_workers, self._work,
        self._teacher)
    # tfds's tqdm: off after `tfds.disable_progress_bar()`, like tfds's own.
    with tfds.core.utils.tqdm(total=len(entries), unit='video',
                              dynamic_ncols=True,
                              desc=f'{self.name} {split}') as progress:
      for entry, (example, reason) in zip(entries, results):
        progress.update()
        if example is None:
          logging.warning('Skipping %s: %s', entry.path, reason)
          bad.append(BadInput(entry.path, reason, split))
          continue
        num_good += 1
        self._count_if_short(entry.path, split, len(example['video']))
        yield entry.video_id, example
    self._bad_inputs.extend(bad)
    short = sum(v.split == split for v in self._short_videos)
    logging.info('%s %s: %d videos, %d skipped%s.', self.name, split,
                 num_good, len(bad),
                 f', {short} shorter than a clip (last frame repeated)'
                 if short else '')
    if not num_good:
      reasons = '; '.join(f'{os.path.basename(b.path)}: {b.reason}'
                          for b in bad[:3])
      report = os.path.join(os.path.dirname(self._final_data_dir),
                            REPORT_FILENAME)
      raise errors.ConfigError(
          f'{self.name}: split {split!r} has no good video ({len(entries)} '
          f'listed{", e.g. " + reasons if reasons else ""}); see {report}.')

