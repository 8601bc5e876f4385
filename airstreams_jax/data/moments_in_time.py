"""Moments in Time from a local copy: the training and validation sets.

Expected layout (the unpacked `Moments_in_Time_Raw` archive; `manual_dir` may
be that folder or the folder containing it):

  Moments_in_Time_Raw/moments_categories.txt  (`<name>,<index>` per line)
  Moments_in_Time_Raw/trainingSet.csv         (no header; rows
                                               `<class>/<file>.mp4,<label>,
                                               <yes votes>,<no votes>`)
  Moments_in_Time_Raw/validationSet.csv
  Moments_in_Time_Raw/training/<class>/<file>.mp4
  Moments_in_Time_Raw/validation/<class>/<file>.mp4

The categories file is the source of truth for class indices (339 classes in
the release the paper used; later releases differ): the CSV label of each
video is looked up in it. The splits are 'train' and 'validation' (the
validation set is the test set that results are reported on).
"""

import csv
import os
from typing import Dict, List, Tuple

from absl import logging
import tensorflow_datasets as tfds
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax import user_paths
from airstreams_jax.data import video_dataset_builder
from airstreams_jax.data.video_entries import VideoEntry

NUM_CLASSES = 339
ROOT_DIR = 'Moments_in_Time_Raw'
CATEGORIES_FILE = 'moments_categories.txt'
# split -> (CSV file, video folder).
SPLIT_FILES = {'train': ('trainingSet.csv', 'training'),
               'validation': ('validationSet.csv', 'validation')}
URL = 'http://moments.csail.mit.edu/'
LAYOUT = (f'expected {ROOT_DIR}/{{{CATEGORIES_FILE},trainingSet.csv,'
          'validationSet.csv}, ' + ROOT_DIR + '/training/<class>/<file>.mp4 '
          f'and {ROOT_DIR}/validation/<class>/<file>.mp4 (manual_dir = '
          f'{ROOT_DIR} or its parent folder), on request from {URL}')


def _error(problem: str) -> errors.ConfigError:
  return errors.ConfigError(f'Moments in Time: {problem}; {LAYOUT}.')


def find_root(manual_dir: str) -> str:
  """The `Moments_in_Time_Raw` folder: `manual_dir` or its child.

  Args:
    manual_dir: The local copy (see the module docstring).

  Returns:
    The absolute folder holding the categories file, the CSVs and the video
    folders.

  Raises:
    ConfigError: Naming what is missing.
  """
  manual_dir = user_paths.absolute(manual_dir)
  if not gfile.isdir(manual_dir):
    raise _error(f'manual_dir {manual_dir!r} is not a directory')
  nested = os.path.join(manual_dir, ROOT_DIR)
  root = nested if gfile.isdir(nested) else manual_dir
  wanted = [CATEGORIES_FILE] + [f for f, _ in SPLIT_FILES.values()]
  missing = [f for f in wanted if not user_paths.is_file(os.path.join(root, f))]
  missing += [d + '/' for _, d in SPLIT_FILES.values()
              if not gfile.isdir(os.path.join(root, d))]
  if missing:
    raise _error(f'missing in {root}: {", ".join(missing)}')
  return root


def read_categories(path: str) -> Tuple[str, ...]:
  """Reads `moments_categories.txt` (`<name>,<index>` lines).

  Args:
    path: The categories file.

  Returns:
    The class names ordered by index.

  Raises:
    ConfigError: On a malformed line, a repeated name or index, or indices
      that are not 0..N-1, naming the file (and line).
  """
  by_index = {}
  names = set()
  with user_paths.open_text(path) as f:
    for line_number, line in enumerate(f, 1):
      text = line.strip()
      if not text:
        continue
      name, _, index = text.rpartition(',')
      name = name.strip()
      where = f'{path}:{line_number}'
      if not name or not index.strip().isdigit():
        raise errors.ConfigError(
            f'Moments in Time: {where}: expected "<name>,<index>", got '
            f'{text!r}; re-extract the file from the release.')
      index = int(index)
      if index in by_index or name in names:
        raise errors.ConfigError(
            f'Moments in Time: {where}: repeated class name or index in '
            f'{text!r}; re-extract the file from the release.')
      by_index[index] = name
      names.add(name)
  if sorted(by_index) != list(range(len(by_index))) or not by_index:
    raise errors.ConfigError(
        f'Moments in Time: {path}: class indices must be 0..N-1, each once; '
        're-extract the file from the release.')
  if len(by_index) != NUM_CLASSES:
    logging.info('Moments in Time: %d classes in %s (the release the paper '
                 'used has %d).', len(by_index), path, NUM_CLASSES)
  return tuple(by_index[i] for i in range(len(by_index)))


def read_split(path: str, video_dir: str, video_id_prefix: str,
               label_of: Dict[str, int]) -> List[VideoEntry]:
  """Reads `trainingSet.csv` or `validationSet.csv` into entries.

  Args:
    path: The CSV file (no header; `<class>/<file>.mp4,<label>,...` rows).
    video_dir: The folder that the file names are relative to.
    video_id_prefix: Prefixed to the file name (without extension) to make
      the video id unique across splits.
    label_of: Class name -> index, from the categories file.

  Returns:
    One entry per row, in file order.

  Raises:
    ConfigError: On a row without file name and label, a label not in the
      categories file or a repeated file name, naming the file and line.
  """
  entries = []
  seen = set()
  with user_paths.open_text(path, newline='') as f:
    reader = csv.reader(f)
    for row in reader:
      fields = [field.strip() for field in row]
      if not any(fields):
        continue
      where = f'{path}:{reader.line_num}'
      if len(fields) < 2 or not fields[0] or not fields[1]:
        raise errors.ConfigError(
            f'Moments in Time: {where}: expected "<class>/<file>.mp4,<label>'
            f',...", got {",".join(row)!r}; re-extract the file.')
      file_name, label = fields[0], fields[1]
      if label not in label_of:
        raise errors.ConfigError(
            f'Moments in Time: {where}: label {label!r} is not in '
            f'{CATEGORIES_FILE}; use the categories file of the same release.')
      if file_name in seen:
        raise errors.ConfigError(
            f'Moments in Time: {where}: {file_name} is listed twice; '
            're-extract the file.')
      seen.add(file_name)
      entries.append(VideoEntry(
          video_id=f'{video_id_prefix}/{os.path.splitext(file_name)[0]}',
          path=os.path.join(video_dir, file_name), label=label_of[label]))
  return entries


def list_videos(manual_dir: str) -> video_dataset_builder.VideoListing:
  """Lists the training and validation videos.

  Args:
    manual_dir: The local copy (see the module docstring).

  Returns:
    The class names by index and {'train': [...], 'validation': [...]} in
    CSV order. A listed video missing on disk is left out and named in the
    listing's `bad_inputs` (the builder's report).

  Raises:
    ConfigError: If a file is missing or malformed, or no listed video of a
      split is on disk.
  """
  root = find_root(manual_dir)
  class_names = read_categories(os.path.join(root, CATEGORIES_FILE))
  label_of = {name: i for i, name in enumerate(class_names)}
  splits, bad = {}, []
  for split, (csv_name, folder) in SPLIT_FILES.items():
    path = os.path.join(root, csv_name)
    entries = read_split(path, os.path.join(root, folder), folder, label_of)
    present, missing = video_dataset_builder.split_on_disk(
        entries, dataset='Moments in Time', split=split, listed_in=path)
    if not present:
      raise _error(f'none of the {len(entries)} videos listed in {csv_name} '
                   f'is in {os.path.join(root, folder)}')
    bad += missing
    splits[split] = present
  return video_dataset_builder.VideoListing(class_names=class_names, splits=splits,
                                    bad_inputs=bad)


class MomentsInTime(video_dataset_builder.VideoDatasetBuilder):
  """Moments in Time with teacher masks: training and validation sets."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [video_dataset_builder.VideoBuilderConfig()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT[0].upper() + LAYOUT[1:] + '.'
  DESCRIPTION = (
      'Moments in Time: about 800k 3-second clips of 339 events (people, '
      'animals, objects, nature); splits train and validation (results are '
      "reported on validation). `masks` holds the teacher's per-pixel class "
      "ids, named by metadata['mask_class_names'].")

  def _list_videos(self, manual_dir: str) -> video_dataset_builder.VideoListing:
    return list_videos(manual_dir)
