"""Draws the teachers' person masks on real clips, to judge them by eye.

Usage (from the repository root):
  python -m experiments.teacher_montage --out=/tmp/teacher_montage \
      [--root=../shared/realdata] [--videos --short_side=240 --fps=10] \
      [--frames=8] [--teachers=selfie,pose] [--option=pose.max_people=1]

For every clip under ROOT/actions/<class>/ (and ROOT/videos/ with
--videos), the teachers label every frame (as a dataset build does; --fps
and --short_side as dataset.fps and dataset.short_side), and OUT/<clip>.png
shows --frames of them, evenly spread: for each, the frame with each
teacher's mask tinted over it, one row per teacher (selfie red, pose green;
the pose teacher's regions of interest outlined in yellow), with the masked
share of the pixels. Prints each teacher's frames/s over all the clips
(decoding excluded). The 1080p clips of videos/ want --short_side (e.g. 240)
to fit in memory.

The clips are for research and evaluation only (see ROOT/PROVENANCE.md):
write the montages outside the repository, and never commit them.
"""

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

from airstreams_jax.data import video_io
from airstreams_jax.teachers import factory
from airstreams_jax.teachers import pose as pose_teacher
from airstreams_jax.tools import real_video_figures

_DEFAULT_ROOT = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), '..', 'shared', 'realdata')
# Frames per montage row (each row shows every teacher for these frames).
_COLUMNS = 4


def clips(root: str, videos: bool):
  """The clips to draw: actions/<class>/*, then videos/* if asked."""
  paths = sorted(glob.glob(os.path.join(root, 'actions', '*', '*')))
  if videos:
    paths += sorted(glob.glob(os.path.join(root, 'videos', '*')))
  return paths


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', required=True,
                      help='Folder for the PNGs (outside the repository).')
  parser.add_argument('--root', default=_DEFAULT_ROOT,
                      help='The real clips (see its PROVENANCE.md).')
  parser.add_argument('--videos', action='store_true',
                      help='Also draw the clips of ROOT/videos/.')
  parser.add_argument('--frames', type=int, default=8,
                      help='Frames shown per clip, evenly spread.')
  parser.add_argument('--fps', type=float, default=0.0,
                      help='Frames the teachers label per second of video '
                      '(0: every frame), as dataset.fps.')
  parser.add_argument('--teachers', default='selfie,pose')
  parser.add_argument('--option', action='append', default=[],
                      metavar='TEACHER.KEY=VALUE',
                      help='A teacher option, e.g. pose.max_people=1 '
                      '(repeatable; the value is read as JSON, else text).')
  parser.add_argument('--short_side', type=int, default=0,
                      help='Resize frames to this short side first, as a '
                      'dataset build does (0: the clip\'s own size).')
  args = parser.parse_args()

  root = os.path.abspath(args.root)
  out_dir = os.path.abspath(args.out)
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if out_dir == repo or out_dir.startswith(repo + os.sep):
    sys.exit(f'--out={out_dir} is inside the repository; the montages are '
             'made from clips that must not be committed: write them '
             'elsewhere (e.g. /tmp/teacher_montage).')
  paths = clips(root, args.videos)
  if not paths:
    sys.exit(f'No clips under {root}/actions (see --root).')
  names = [n for n in args.teachers.split(',') if n]
  options = {n: {} for n in names}
  for text in args.option:
    key, _, value = text.partition('=')
    name, _, key = key.partition('.')
    if name not in options or not key or not value:
      sys.exit(f'--option={text}: expected TEACHER.KEY=VALUE with TEACHER '
               f'one of {names}.')
    try:
      options[name][key] = json.loads(value)
    except json.JSONDecodeError:
      options[name][key] = value
  teachers = {n: factory.make_teacher(n, options=options[n]) for n in names}
  os.makedirs(out_dir, exist_ok=True)
  seconds = {n: 0.0 for n in names}
  num_frames = 0
  for path in paths:
    # Every frame (or --fps of them), as a dataset build labels them: the
    # pose teacher tracks people from frame to frame.
    try:
      video = video_io.decode(path, fps=args.fps, short_side=args.short_side)
    except video_io.VideoDecodeError as e:
      print(f'{path}: skipped ({e})', flush=True)
      continue
    frames = video.frames
    num_frames += len(frames)
    shown = np.unique(np.linspace(0, len(frames) - 1, args.frames).round()
                      .astype(int))
    masks = {}
    for name, teacher in teachers.items():
      start = time.perf_counter()
      masks[name] = teacher(frames)
      seconds[name] += time.perf_counter() - start
    # The regions, for the picture only (a second, untimed pass).
    rois = {name: [r for _, r in teacher.run(frames, masks[name].shape[1:])]
            for name, teacher in teachers.items()
            if isinstance(teacher, pose_teacher.PoseTeacher)}
    image = real_video_figures.teacher_montage(frames, video.indices, masks,
                                               rois, shown, _COLUMNS)
    clip = os.path.splitext(os.path.basename(path))[0]
    target = os.path.join(out_dir, f'{clip}.png')
    image.save(target)
    print(f'{target}: {len(frames)} frames {frames.shape[2]}x'
          f'{frames.shape[1]}', flush=True)
  for name in names:
    print(f'{name}: {num_frames / seconds[name]:.1f} frames/s over '
          f'{num_frames} frames of {len(paths)} clips')


if __name__ == '__main__':
  main()
