"""Charades v1 from a local copy: multi-label, with action intervals.

Expected layout under `manual_dir` (the unpacked `Charades.zip` annotations,
which unzip into `Charades/`, and `Charades_v1_480.zip`):

  MANUAL_DIR/Charades/Charades_v1_train.csv    (or directly in MANUAL_DIR)
  MANUAL_DIR/Charades/Charades_v1_test.csv
  MANUAL_DIR/Charades/Charades_v1_classes.txt
  MANUAL_DIR/Charades_v1_480/<id>.mp4          (or Charades_v1/<id>.mp4)

The CSVs have a header row with (among others) the columns `id` and
`actions`; `actions` is `;`-separated `c<NNN> <start s> <end s>` triples, e.g.
`c092 11.90 21.20;c147 0.00 12.60`, and empty for a video without actions.
`Charades_v1_classes.txt` has one `c<NNN> <name>` line per class (157).

Videos without actions: kept in 'test' (the official mAP protocol scores
them as trailing negatives), dropped from 'train' (the official training
code samples clips from within action intervals, so they give no
positives; their count is logged).
"""

import csv
import os
import re
from typing import List, Sequence, Tuple

from absl import logging
import tensorflow_datasets as tfds
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax import user_paths
from airstreams_jax.data import video_dataset_builder
from airstreams_jax.data.video_entries import ActionInterval, VideoEntry

NUM_CLASSES = 157
ANNOTATION_DIRS = ('Charades', '')  # Relative to manual_dir, in this order.
VIDEO_DIRS = ('Charades_v1_480', 'Charades_v1')
CLASSES_FILE = 'Charades_v1_classes.txt'
SPLIT_FILES = {'train': 'Charades_v1_train.csv',
               'test': 'Charades_v1_test.csv'}
URL = 'https://prior.allenai.org/projects/charades'
LAYOUT = ('expected MANUAL_DIR/Charades/{Charades_v1_train.csv,'
          'Charades_v1_test.csv,Charades_v1_classes.txt} (Charades.zip; or '
          'these files directly in MANUAL_DIR) and MANUAL_DIR/'
          f'Charades_v1_480/<id>.mp4 (Charades_v1_480.zip), from {URL}')

_CLASS_LINE = re.compile(r'^(?P<id>c\d+)\s+(?P<name>\S.*)$')
_ACTION = re.compile(r'^(?P<id>c\d+)\s+(?P<start>\S+)\s+(?P<end>\S+)$')


def _error(problem: str) -> errors.ConfigError:
  return errors.ConfigError(f'Charades: {problem}; {LAYOUT}.')


def find_files(manual_dir: str) -> Tuple[str, str]:
  """The annotation folder and the video folder of a local copy.

  Args:
    manual_dir: The local copy's root (see the module docstring).

  Returns:
    (annotation folder, video folder), absolute.

  Raises:
    ConfigError: Naming what is missing.
  """
  manual_dir = user_paths.absolute(manual_dir)
  if not gfile.isdir(manual_dir):
    raise _error(f'manual_dir {manual_dir!r} is not a directory')
  wanted = [CLASSES_FILE, *SPLIT_FILES.values()]
  annotation_dir = None
  for candidate in ANNOTATION_DIRS:
    folder = os.path.join(manual_dir, candidate)
    if all(user_paths.is_file(os.path.join(folder, f)) for f in wanted):
      annotation_dir = os.path.normpath(folder)
      break
  if annotation_dir is None:
    missing = [f for f in wanted
               if not any(user_paths.is_file(os.path.join(manual_dir, d, f))
                          for d in ANNOTATION_DIRS)]
    if missing:
      raise _error(f'annotation file(s) missing: {", ".join(missing)}')
    raise _error(f'{", ".join(wanted)} must be in the same folder')
  for candidate in VIDEO_DIRS:
    video_dir = os.path.join(manual_dir, candidate)
    if gfile.isdir(video_dir):
      return annotation_dir, video_dir
  raise _error(f'no video folder {" or ".join(VIDEO_DIRS)} in {manual_dir}')


def read_classes(path: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
  """Reads `Charades_v1_classes.txt`.

  Args:
    path: The file; one `c<NNN> <name>` line per class.

  Returns:
    (class ids such as 'c000', class names), in file order (index = label).

  Raises:
    ConfigError: On a malformed line or a repeated id, naming the line.
  """
  ids, names = [], []
  with user_paths.open_text(path) as f:
    for line_number, line in enumerate(f, 1):
      text = line.strip()
      if not text:
        continue
      match = _CLASS_LINE.match(text)
      if not match:
        raise errors.ConfigError(
            f'Charades: {path}:{line_number}: expected "c<NNN> <name>", got '
            f'{text!r}; re-extract the file from Charades.zip.')
      if match['id'] in ids:
        raise errors.ConfigError(
            f'Charades: {path}:{line_number}: class {match["id"]} is listed '
            'twice; re-extract the file from Charades.zip.')
      ids.append(match['id'])
      names.append(match['name'].strip())
  if not ids:
    raise _error(f'{path} lists no class')
  if len(ids) != NUM_CLASSES:
    logging.warning('Charades: %d classes in %s, v1 has %d.', len(ids), path,
                    NUM_CLASSES)
  return tuple(ids), tuple(names)


def parse_actions(text: str, class_ids: Sequence[str],
                  where: str) -> Tuple[ActionInterval, ...]:
  """Parses an `actions` field such as `c092 11.90 21.20;c147 0.00 12.60`.

  Args:
    text: The field; empty for a video without actions.
    class_ids: The class ids in label order.
    where: `file:line` for error messages.

  Returns:
    The intervals in field order. An interval that ends before it starts
    is dropped with a warning (it covers no frame).

  Raises:
    ConfigError: On an action that does not parse or an unknown class.
  """
  label_of = {c: i for i, c in enumerate(class_ids)}
  intervals = []
  for action in filter(None, (a.strip() for a in text.split(';'))):
    match = _ACTION.match(action)
    try:
      start, end = float(match['start']), float(match['end'])
    except (TypeError, ValueError):
      raise errors.ConfigError(
          f'Charades: {where}: action {action!r} is not "c<NNN> <start> '
          '<end>"; re-extract the file from Charades.zip.') from None
    if match['id'] not in label_of:
      raise errors.ConfigError(
          f'Charades: {where}: action class {match["id"]} is not in '
          f'{CLASSES_FILE}; use the classes file of the same release.')
    if end < start:
      logging.warning('Charades %s: dropped action %r (ends before it '
                      'starts).', where, action)
      continue
    intervals.append(ActionInterval(label_of[match['id']], start, end))
  return tuple(intervals)


def read_split(path: str, class_ids: Sequence[str],
               video_dir: str) -> List[VideoEntry]:
  """Reads `Charades_v1_{train,test}.csv` into entries (all rows).

  Args:
    path: The CSV file.
    class_ids: The class ids in label order.
    video_dir: The folder holding `<id>.mp4`.

  Returns:
    One entry per row, in file order, with its intervals.

  Raises:
    ConfigError: On a missing column, an empty or repeated id, or a
      malformed action, naming the file and line.
  """
  entries = []
  seen = set()
  with user_paths.open_text(path, newline='') as f:
    reader = csv.DictReader(f)
    missing = {'id', 'actions'} - set(reader.fieldnames or ())
    if missing:
      raise errors.ConfigError(
          f'Charades: {path}: no column {", ".join(sorted(missing))} in the '
          f'header {reader.fieldnames}; re-extract it from Charades.zip.')
    for row in reader:
      where = f'{path}:{reader.line_num}'
      video_id = (row['id'] or '').strip()
      if not video_id or video_id in seen:
        raise errors.ConfigError(
            f'Charades: {where}: {"repeated" if video_id else "empty"} video '
            f'id {video_id!r}; re-extract the file from Charades.zip.')
      seen.add(video_id)
      entries.append(VideoEntry(
          video_id=video_id,
          path=os.path.join(video_dir, video_id + '.mp4'),
          intervals=parse_actions(row['actions'] or '', class_ids, where)))
  return entries


def list_videos(manual_dir: str) -> video_dataset_builder.VideoListing:
  """Lists the train and test videos with their action intervals.

  Args:
    manual_dir: The local copy's root (see the module docstring).

  Returns:
    The class names and {'train': [VideoEntry], 'test': [VideoEntry]} in CSV
    order; train without the videos that have no action (module docstring).
    A listed video missing on disk is left out and named in the listing's
    `bad_inputs` (the builder's report).

  Raises:
    ConfigError: If a file is missing or malformed, or no listed video of a
      split is on disk.
  """
  annotation_dir, video_dir = find_files(manual_dir)
  class_ids, class_names = read_classes(
      os.path.join(annotation_dir, CLASSES_FILE))
  splits, bad = {}, []
  for split, file_name in SPLIT_FILES.items():
    path = os.path.join(annotation_dir, file_name)
    entries = read_split(path, class_ids, video_dir)
    if split == 'train':
      labelled = [e for e in entries if e.intervals]
      if len(labelled) < len(entries):
        logging.info('Charades train: %d of %d videos have no action and are '
                     'left out.', len(entries) - len(labelled), len(entries))
      entries = labelled
    present, missing = video_dataset_builder.split_on_disk(
        entries, dataset='Charades', split=split, listed_in=path)
    if not present:
      raise _error(f'none of the {len(entries)} {split} videos listed in '
                   f'{file_name} is in {video_dir}')
    bad += missing
    splits[split] = present
  return video_dataset_builder.VideoListing(class_names=class_names, splits=splits,
                                    bad_inputs=bad)


class Charades(video_dataset_builder.VideoDatasetBuilder):
  """Charades v1 with teacher masks and per-frame multi-hot action labels."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [video_dataset_builder.VideoBuilderConfig()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT[0].upper() + LAYOUT[1:] + '.'
  DESCRIPTION = (
      'Charades v1: 9,848 videos of daily indoor activities, 157 action '
      'classes with temporal intervals (multi-label). `frame_labels` holds '
      'the actions covering each stored frame (class names in '
      "metadata['class_names']); `masks` the teacher's per-pixel class ids, "
      "named by metadata['mask_class_names']. Train leaves out the videos "
      'without actions; test keeps them.')
  MULTI_LABEL = True

  def _list_videos(self, manual_dir: str) -> video_dataset_builder.VideoListing:
    return list_videos(manual_dir)
