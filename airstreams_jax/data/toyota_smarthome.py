"""Toyota Smarthome (trimmed) from a local copy: the cross-subject protocol.

Expected layout under `manual_dir` (the unpacked mp4 archive of the trimmed
release):

  MANUAL_DIR/mp4/Cook.Cleandishes_p02_r00_v02_c03.mp4
  MANUAL_DIR/mp4/<Activity>_p<SS>_r<RR>_v<VV>_c<CC>.mp4

The activity is the label (31 classes); p<SS> is the subject. Cross-subject
(CS) protocol: subjects 3, 4, 6, 7, 9, 12, 13, 15, 17, 19 and 25 train, all
other subjects test.
"""

import dataclasses
import os
import re
from typing import Tuple

from absl import logging
import tensorflow_datasets as tfds
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax import user_paths
from airstreams_jax.data import video_dataset_builder
from airstreams_jax.data.video_entries import VideoEntry

NUM_CLASSES = 31
VIDEO_DIR = 'mp4'
TRAIN_SUBJECTS = frozenset((3, 4, 6, 7, 9, 12, 13, 15, 17, 19, 25))
URL = 'https://project.inria.fr/toyotasmarthome/'
LAYOUT = (f'expected MANUAL_DIR/{VIDEO_DIR}/<Activity>_p<SS>_r<RR>_v<VV>_'
          f'c<CC>.mp4, e.g. {VIDEO_DIR}/Cook.Cleandishes_p02_r00_v02_c03.mp4 '
          f'(the trimmed mp4 release, on request from {URL})')

_NAME = re.compile(
    r'^(?P<activity>.+)_p(?P<subject>\d+)_r\d+_v\d+_c\d+\.mp4$', re.IGNORECASE)


def _error(problem: str) -> errors.ConfigError:
  return errors.ConfigError(f'Toyota Smarthome: {problem}; {LAYOUT}.')


def parse_name(file_name: str) -> Tuple[str, int]:
  """(activity, subject) of a file name such as `Walk_p03_r01_v05_c07.mp4`.

  Args:
    file_name: The base name of a video.

  Returns:
    The activity (the label) and the subject number.

  Raises:
    ConfigError: If the name does not follow the release's pattern.
  """
  match = _NAME.match(file_name)
  if not match:
    raise _error(f'cannot parse the video name {file_name!r} (move or '
                 'rename files that are not part of the release)')
  return match['activity'], int(match['subject'])


def list_videos(manual_dir: str) -> video_dataset_builder.VideoListing:
  """Lists the cross-subject train and test videos.

  Class names are the activities found in the file names, sorted (the
  release has 31; another count is logged, not refused). Files other than
  `.mp4` are ignored.

  Args:
    manual_dir: The local copy's root (see the module docstring).

  Returns:
    The class names and {'train': [VideoEntry], 'test': [VideoEntry]},
    entries sorted by file name.

  Raises:
    ConfigError: If the video folder is missing or empty, an mp4 name does
      not parse, or a split would be empty.
  """
  manual_dir = user_paths.absolute(manual_dir)
  video_dir = os.path.join(manual_dir, VIDEO_DIR)
  if not gfile.isdir(video_dir):
    raise _error(f'no folder {video_dir}')
  names = sorted(n for n in gfile.listdir(video_dir)
                 if n.lower().endswith('.mp4'))
  if not names:
    raise _error(f'no .mp4 file in {video_dir}')
  parsed = [(name, *parse_name(name)) for name in names]
  class_names = tuple(sorted({activity for _, activity, _ in parsed}))
  if len(class_names) != NUM_CLASSES:
    logging.warning('Toyota Smarthome: %d activities in %s, the release has '
                    '%d.', len(class_names), video_dir, NUM_CLASSES)
  label_of = {name: i for i, name in enumerate(class_names)}
  splits = {'train': [], 'test': []}
  for name, activity, subject in parsed:
    split = 'train' if subject in TRAIN_SUBJECTS else 'test'
    splits[split].append(VideoEntry(
        video_id=os.path.splitext(name)[0],
        path=os.path.join(video_dir, name), label=label_of[activity]))
  for split, entries in splits.items():
    if not entries:
      raise _error(f'no {split} video in {video_dir} (cross-subject train '
                   f'subjects: {sorted(TRAIN_SUBJECTS)})')
  return video_dataset_builder.VideoListing(class_names=class_names, splits=splits)


PROTOCOLS = ('cross_subject',)


@dataclasses.dataclass(eq=False)
class ToyotaSmarthomeConfig(video_dataset_builder.VideoBuilderConfig):
  """Storage options plus the evaluation protocol (cross-subject)."""
  protocol: str = 'cross_subject'

  def validate(self) -> None:
    super().validate()
    if self.protocol not in PROTOCOLS:
      raise ValueError(f'Toyota Smarthome protocol must be one of '
                       f'{PROTOCOLS}, got {self.protocol!r}.')

  def options_name(self) -> str:
    return f'{self.protocol}_{super().options_name()}'


class ToyotaSmarthome(video_dataset_builder.VideoDatasetBuilder):
  """Toyota Smarthome (trimmed) with teacher masks, cross-subject split."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [ToyotaSmarthomeConfig()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT[0].upper() + LAYOUT[1:] + '.'
  DESCRIPTION = (
      'Toyota Smarthome (trimmed): about 16k clips of 31 daily activities '
      'of elderly people at home, 7 cameras; cross-subject protocol (11 '
      "training subjects). `masks` holds the teacher's per-pixel class ids, "
      "named by metadata['mask_class_names'].")

  def _list_videos(self, manual_dir: str) -> video_dataset_builder.VideoListing:
    return list_videos(manual_dir)
