"""HMDB51 from a local copy: the official three train/test splits.

Expected layout under `manual_dir` (the unpacked `hmdb51_org.rar`, whose 51
per-class rars unpack into one folder each, and `test_train_splits.rar`):

  MANUAL_DIR/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi
  MANUAL_DIR/<class>/<video>.avi                      (51 class folders)
  MANUAL_DIR/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt

Each split file lists the videos of its class, one `<video>.avi <id>` per line:
id 1 = train, 2 = test, 0 = not used by that split (70 train and 30 test
videos per class and split, so 3,570 / 1,530 clips per split).
"""

import dataclasses
import os
import re
from typing import Dict, List, Sequence, Tuple

from absl import logging
import tensorflow_datasets as tfds
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax import user_paths
from airstreams_jax.data import video_dataset_builder
from airstreams_jax.data.video_entries import VideoEntry

NUM_CLASSES = 51
SPLITS = (1, 2, 3)
SPLIT_DIR = 'testTrainMulti_7030_splits'
URL = ('https://serre-lab.clps.brown.edu/resource/'
       'hmdb-a-large-human-motion-database/')
LAYOUT = (f'expected MANUAL_DIR/<class>/<video>.avi (unpack hmdb51_org.rar, '
          f'then each of its 51 <class>.rar) and MANUAL_DIR/{SPLIT_DIR}/'
          '<class>_test_split{1,2,3}.txt (unpack test_train_splits.rar), '
          f'both from {URL}')

_SPLIT_FILE = re.compile(r'^(?P<cls>.+)_test_split(?P<split>[123])\.txt$')
_SPLIT_IDS = {'1': 'train', '2': 'test'}  # '0' = not used by the split.


def _error(problem: str) -> errors.ConfigError:
  return errors.ConfigError(f'HMDB51: {problem}; {LAYOUT}.')


def read_split_file(path: str) -> List[Tuple[str, str]]:
  """Reads one `<class>_test_splitN.txt` file.

  Lines are `<video> <id>`. Surrounding whitespace (the official files end
  every line with a space) and blank lines are ignored; the id is the last
  whitespace-separated field, so a video name is never cut at a stray space.

  Args:
    path: The split file.

  Returns:
    (video file name, id) pairs in file order, id one of '0', '1', '2'.

  Raises:
    ConfigError: On a line that does not parse or a video listed twice,
      naming the file and line.
  """
  pairs = []
  seen = {}
  with user_paths.open_text(path) as f:
    for line_number, line in enumerate(f, 1):
      fields = line.strip().rsplit(None, 1)
      if not fields:
        continue
      if len(fields) != 2 or fields[1] not in ('0', '1', '2'):
        raise errors.ConfigError(
            f'HMDB51: {path}:{line_number}: expected "<video>.avi <0|1|2>", '
            f'got {line.rstrip(chr(10))!r}; fix or re-extract the file from '
            'test_train_splits.rar.')
      name, split_id = fields
      if name in seen:
        raise errors.ConfigError(
            f'HMDB51: {path}:{line_number}: {name} is already listed on line '
            f'{seen[name]}; re-extract the file from test_train_splits.rar.')
      seen[name] = line_number
      pairs.append((name, split_id))
  return pairs


def split_files(manual_dir: str, split: int) -> Dict[str, str]:
  """The split files of one split, by class name.

  Args:
    manual_dir: The local copy's root.
    split: 1, 2 or 3.

  Returns:
    {class name: path of `<class>_test_split<split>.txt`}, sorted by class.

  Raises:
    ConfigError: If `split` is not 1-3 or the split files are missing.
  """
  if split not in SPLITS:
    raise errors.ConfigError(f'HMDB51 split must be 1, 2 or 3, got {split!r}.')
  if not gfile.isdir(manual_dir):
    raise _error(f'manual_dir {manual_dir!r} is not a directory')
  split_dir = os.path.join(manual_dir, SPLIT_DIR)
  if not gfile.isdir(split_dir):
    raise _error(f'no split folder {split_dir}')
  files = {}
  for name in sorted(gfile.listdir(split_dir)):
    match = _SPLIT_FILE.match(name)
    if match and int(match['split']) == split:
      files[match['cls']] = os.path.join(split_dir, name)
  if not files:
    raise _error(f'no *_test_split{split}.txt files in {split_dir}')
  return files


def list_videos(manual_dir: str, split: int) -> video_dataset_builder.VideoListing:
  """Lists the train and test videos of one official split.

  Class names are the split files' class names, sorted (the official 51;
  a different count is logged, not refused, so that partial copies work).
  A listed video missing on disk is left out and named in the listing's
  `bad_inputs` (the builder's report). A class folder that is missing
  altogether, or a split with no video on disk, is an error.

  Args:
    manual_dir: The local copy's root (see the module docstring).
    split: 1, 2 or 3.

  Returns:
    The class names and {'train': [VideoEntry], 'test': [VideoEntry]},
    entries sorted by class, then in split-file order.

  Raises:
    ConfigError: If a file or folder is missing or a split file is malformed.
  """
  manual_dir = user_paths.absolute(manual_dir)
  files = split_files(manual_dir, split)
  class_names = tuple(files)
  if len(class_names) != NUM_CLASSES:
    logging.warning('HMDB51 split %d: %d classes, the official copy has %d.',
                    split, len(class_names), NUM_CLASSES)
  missing_dirs = [c for c in class_names
                  if not gfile.isdir(os.path.join(manual_dir, c))]
  if missing_dirs:
    raise _error(f'{len(missing_dirs)} class folder(s) missing: '
                 f'{_first(missing_dirs)}')
  splits = {'train': [], 'test': []}
  bad = []
  for label, class_name in enumerate(class_names):
    for name, split_id in read_split_file(files[class_name]):
      if split_id == '0':
        continue
      split_name = _SPLIT_IDS[split_id]
      path = os.path.join(manual_dir, class_name, name)
      if not user_paths.is_file(path):
        bad.append(video_dataset_builder.BadInput(
            path, f'listed in {files[class_name]} but not on disk',
            split_name))
        continue
      splits[split_name].append(VideoEntry(
          video_id=f'{class_name}/{os.path.splitext(name)[0]}', path=path,
          label=label))
  for split_name, entries in splits.items():
    num_missing = sum(b.split == split_name for b in bad)
    if not entries:
      raise _error(f'split {split} lists no {split_name} video on disk '
                   f'({num_missing} listed, none found)')
    if num_missing:
      logging.warning('HMDB51 split %d %s: %d listed videos are not on disk '
                      '(named in the report of bad inputs).', split,
                      split_name, num_missing)
  return video_dataset_builder.VideoListing(class_names=class_names, splits=splits,
                                    bad_inputs=bad)


def _first(items: Sequence[str], n: int = 3) -> str:
  shown = ', '.join(items[:n])
  return shown + (f' and {len(items) - n} more' if len(items) > n else '')


@dataclasses.dataclass(eq=False)
class Hmdb51Config(video_dataset_builder.VideoBuilderConfig):
  """Storage options plus the official split (1, 2 or 3)."""
  split: int = 1

  def validate(self) -> None:
    super().validate()
    if self.split not in SPLITS:
      raise ValueError(f'HMDB51 split must be 1, 2 or 3, got {self.split!r}.')

  def options_name(self) -> str:
    return f'split{self.split}_{super().options_name()}'


class Hmdb51(video_dataset_builder.VideoDatasetBuilder):
  """HMDB51 with teacher masks; one builder config per official split."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [Hmdb51Config(split=s) for s in SPLITS]
  MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT[0].upper() + LAYOUT[1:] + '.'
  DESCRIPTION = (
      'HMDB51: 6,766 clips of 51 human actions from movies and web videos; '
      'three official 70/30 train/test splits per class (the config). '
      "`masks` holds the teacher's per-pixel class ids, named by "
      "metadata['mask_class_names'].")

  def _list_videos(self, manual_dir: str) -> video_dataset_builder.VideoListing:
    return list_videos(manual_dir, self.builder_config.split)
