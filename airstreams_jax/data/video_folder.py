"""Any folder of labelled videos as a dataset with teacher masks.

Layout (split and class names are the folder names):

  ROOT/train/<class>/<video>.mp4     also .avi, .mkv, .webm, .mov (any case)
  ROOT/test/<class>/<video>.avi

Classes are the class folders of all splits together, sorted (a class may
be missing from a split). Other files (e.g. a `files` teacher's
`<stem>.masks.npz` or `ROOT/classes.txt`) and hidden folders are ignored; a
class folder that cannot be read, and an entry named like a video that is
not a file (a directory, a broken symlink or a symlink loop, a pipe), are
skipped and named in the bad-input report. Each video's id is `<class>/<file name>`.

From `main` (builds on first use; see configs/video_folder.py):

  python -m airstreams_jax.main --config=configs/video_folder.py \
      --workdir=W --config.dataset.manual_dir=ROOT \
      --config.dataset.data_dir=D --config.dataset.teacher=selfie

Built ahead of training, with the same storage options as the config (so
`main` then finds it built):

  python -m airstreams_jax.data.build --config=configs/video_folder.py \
      --config.dataset.manual_dir=ROOT --config.dataset.data_dir=D

With tfds's build command, which knows no experiment config: its defaults
(selfie teacher, short side 128, every frame, masks of short side 64) are
not configs/video_folder.py's (short side 96, masks 48), so `main` with that
config would build again; `--config` takes a JSON of other options:

  python -m airstreams_jax.data.video_folder --manual_dir=ROOT \
      --data_dir=D [--config '{"teacher": "files", "fps": 8}']

runs tfds's own build code with the flags of `tfds build
airstreams_jax/data/video_folder.py`. The `tfds` command itself does not start
without apache_beam (not installed here): tensorflow-datasets 4.9.10 imports
it at start-up for its convert_format subcommand.
"""

import os
import re
from typing import Dict, List, Tuple

import tensorflow_datasets as tfds
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax import user_paths
from airstreams_jax.data import video_dataset_builder
from airstreams_jax.data.video_entries import VideoEntry

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.webm', '.mov')
LAYOUT = ('expected ROOT/<split>/<class>/<video> (e.g. ROOT/train/jump/'
          'a.mp4, ROOT/test/jump/b.avi) with .mp4, .avi, .mkv, .webm or '
          '.mov videos')
# tfds split names: letters, digits and underscores.
_SPLIT_NAME = re.compile(r'^\w+$')


def _error(problem: str) -> errors.ConfigError:
  return errors.ConfigError(f'video_folder: {problem}; {LAYOUT}.')


def _remote_listing(path: str) -> Tuple[List[str], List[str]]:
  """(folders, files) in a remote `path` (an object store has no symlinks,
  pipes or devices: every entry is one or the other)."""
  folders, files = [], []
  for name in gfile.listdir(path):
    name = name.rstrip('/')  # GCS lists folders with a trailing slash.
    (folders if gfile.isdir(os.path.join(path, name)) else files).append(name)
  return folders, files


def _subfolders(path: str) -> List[str]:
  """Sorted names of the non-hidden folders in `path`."""
  if user_paths.is_remote(path):
    return sorted(n for n in _remote_listing(path)[0]
                  if not n.startswith('.'))
  with os.scandir(path) as it:
    return sorted(e.name for e in it
                  if e.is_dir() and not e.name.startswith('.'))


def _videos(path: str) -> Tuple[List[str], List[Tuple[str, str]]]:
  """Sorted names of the video files in `path`, and the entries named like
  videos that are not files, each with its reason."""
  if user_paths.is_remote(path):
    folders, files = _remote_listing(path)
    video = lambda n: os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS
    return (sorted(filter(video, files)),
            sorted((n, 'a directory named like a video')
                   for n in folders if video(n)))
  videos, not_files = [], []
  with os.scandir(path) as it:
    for e in it:
      if os.path.splitext(e.name)[1].lower() not in VIDEO_EXTENSIONS:
        continue
      try:  # is_file and is_dir follow symlinks: a loop raises ELOOP.
        is_file, is_dir = e.is_file(), e.is_dir()
      except OSError:
        is_file = is_dir = False
      if is_file:
        videos.append(e.name)
      elif is_dir:
        not_files.append((e.name, 'a directory named like a video'))
      elif e.is_symlink():
        not_files.append((e.name, 'a symlink that leads nowhere (broken, or '
                                  'a loop)'))
      else:
        not_files.append((e.name, 'not a regular file (a pipe, socket or '
                                  'device)'))
  return sorted(videos), sorted(not_files)


def list_videos(root: str) -> video_dataset_builder.VideoListing:
  """Lists `ROOT/<split>/<class>/<video>`.

  Args:
    root: The dataset folder.

  Returns:
    The class names, each split's entries (sorted by class, then file name)
    and the class folders that could not be read.

  Raises:
    errors.ConfigError: If ROOT is missing or unreadable, has no split
      folder, or a split holds no video.
  """
  root = user_paths.absolute(root)
  if not gfile.isdir(root):
    raise _error(f'{root} is not a directory')
  try:
    split_names = _subfolders(root)
  except OSError as e:
    raise _error(f'cannot read {root} ({e.strerror})') from None
  if not split_names:
    raise _error(f'{root} has no split folders')
  bad_names = [s for s in split_names if not _SPLIT_NAME.match(s)]
  if bad_names:
    raise _error(f'split folder names may hold only letters, digits and _, '
                 f'got {bad_names} in {root}')
  class_folders: Dict[str, List[str]] = {}
  for split in split_names:
    try:
      class_folders[split] = _subfolders(os.path.join(root, split))
    except OSError as e:
      raise _error(f'cannot read split folder {os.path.join(root, split)} '
                   f'({e.strerror})') from None
  class_names = sorted(set().union(*class_folders.values()))
  label = {name: i for i, name in enumerate(class_names)}
  splits, bad = {}, []
  for split in split_names:
    entries = []
    for name in class_folders[split]:
      folder = os.path.join(root, split, name)
      try:
        files, not_files = _videos(folder)
      except OSError as e:
        bad.append(video_dataset_builder.BadInput(
            folder, f'unreadable class folder ({e.strerror})', split))
        continue
      bad.extend(video_dataset_builder.BadInput(os.path.join(folder, f), reason, split)
                 for f, reason in not_files)
      entries.extend(
          VideoEntry(video_id=f'{name}/{f}', path=os.path.join(folder, f),
                     label=label[name]) for f in files)
    if not entries and not any(b.split == split for b in bad):
      raise _error(f'split folder {os.path.join(root, split)} holds no '
                   'videos')
    splits[split] = entries
  return video_dataset_builder.VideoListing(class_names=class_names, splits=splits,
                                    bad_inputs=bad)


class VideoFolder(video_dataset_builder.VideoDatasetBuilder):
  """Videos from `ROOT/<split>/<class>/<video>` with teacher masks."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [video_dataset_builder.VideoBuilderConfig()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Point manual_dir at your video folder: {LAYOUT}.')
  DESCRIPTION = (
      'Labelled videos from a local folder ROOT/<split>/<class>/<video>; '
      "`masks` holds the teacher's per-pixel class ids, named by "
      "metadata['mask_class_names'].")

  def _list_videos(self, manual_dir: str) -> video_dataset_builder.VideoListing:
    return list_videos(manual_dir)


if __name__ == '__main__':
  # `tfds build` on this module, with its flags (see the module docstring).
  # The `tfds` command itself cannot start without apache_beam in
  # tensorflow-datasets 4.9.10 (another subcommand imports it), while its
  # build subcommand does not need it.
  import sys  # pylint: disable=g-import-not-at-top
  import simple_parsing  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.scripts.cli import build  # pylint: disable=g-import-not-at-top
  simple_parsing.parse(build.Args, args=[__file__, *sys.argv[1:]]).execute()
