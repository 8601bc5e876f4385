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

import collections
import os
import re
from typing import Dict, List, Sequence, Tuple

from absl import logging

from airstreams_jax import errors
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
  with open(path, encoding='utf-8-sig') as f:
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
  if not os.path.isdir(manual_dir):
    raise _error(f'manual_dir {manual_dir!r} is not a directory')
  split_dir = os.path.join(manual_dir, SPLIT_DIR)
  if not os.path.isdir(split_dir):
    raise _error(f'no split folder {split_dir}')
  files = {}
  for name in sorted(os.listdir(split_dir)):
    match = _SPLIT_FILE.match(name)
    if match and int(match['split']) == split:
      files[match['cls']] = os.path.join(split_dir, name)
  if not files:
    raise _error(f'no *_test_split{split}.txt files in {split_dir}')
  return files


def list_videos(
    manual_dir: str, split: int
) -> Tuple[Tuple[str, ...], Dict[str, List[VideoEntry]]]:
  """Lists the train and test videos of one official split.

  Class names are the split files' class names, sorted (the official 51;
  a different count is logged, not refused, so that partial copies work).
  A listed video missing on disk stays in the listing: the builder skips it
  and names it in its report of bad inputs. A class folder that is missing
  altogether, or a split with no video on disk, is an error.

  Args:
    manual_dir: The local copy's root (see the module docstring).
    split: 1, 2 or 3.

  Returns:
    (class names, {'train': [VideoEntry], 'test': [VideoEntry]}), entries
    sorted by class, then in split-file order.

  Raises:
    ConfigError: If a file or folder is missing or a split file is malformed.
  """
  manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
  files = split_files(manual_dir, split)
  class_names = tuple(files)
  if len(class_names) != NUM_CLASSES:
    logging.warning('HMDB51 split %d: %d classes, the official copy has %d.',
                    split, len(class_names), NUM_CLASSES)
  missing_dirs = [c for c in class_names
                  if not os.path.isdir(os.path.join(manual_dir, c))]
  if missing_dirs:
    raise _error(f'{len(missing_dirs)} class folder(s) missing: '
                 f'{_first(missing_dirs)}')
  splits = collections.defaultdict(list)
  for label, class_name in enumerate(class_names):
    for name, split_id in read_split_file(files[class_name]):
      if split_id == '0':
        continue
      splits[_SPLIT_IDS[split_id]].append(VideoEntry(
          video_id=f'{class_name}/{os.path.splitext(name)[0]}',
          path=os.path.join(manual_dir, class_name, name), label=label))
  for split_name in ('train', 'test'):
    entries = splits[split_name]
    if not entries:
      raise _error(f'split {split} lists no {split_name} video (id '
                   f'{"1" if split_name == "train" else "2"}) in {SPLIT_DIR}')
    _check_on_disk(entries, f'split {split} {split_name}')
  return class_names, {'train': splits['train'], 'test': splits['test']}


def _check_on_disk(entries: Sequence[VideoEntry], what: str) -> None:
  """Refuses a listing none of whose videos exist; logs partial gaps."""
  missing = [e.path for e in entries if not os.path.isfile(e.path)]
  if len(missing) == len(entries):
    raise _error(f'none of the {len(entries)} {what} videos is on disk '
                 f'(e.g. {missing[0]})')
  if missing:
    logging.warning('HMDB51 %s: %d of %d listed videos are missing (they '
                    'will be reported as bad inputs), e.g. %s', what,
                    len(missing), len(entries), _first(missing))


def _first(items: Sequence[str], n: int = 3) -> str:
  shown = ', '.join(items[:n])
  return shown + (f' and {len(items) - n} more' if len(items) > n else '')
