r"""Writes the synthetic clips as a folder of videos, with their masks.

The `video_folder` dataset reads any ROOT/<split>/<class>/<video> folder; this
script makes one from the embedded generator, so the folder path (PyAV
decoding, the `files` teacher, lossy video codecs) can be tried and measured
without a real dataset:

  python -m airstreams_jax.tools.make_video_folder --root=/tmp/synthetic_folder
  python -m airstreams_jax.main --config=configs/video_folder.py \
      --workdir=workdirs/folder --config.dataset.manual_dir=/tmp/synthetic_folder \
      --config.dataset.teacher=files --config.dataset.random_flip=false

Half of the classes are "moves left" and "moves right", so flipping clips
(the real-video configs' default) would show the opposite motion under the
same label: turn it off, as configs/synthetic.py does.

Every video gets `<stem>.masks.npz` (the `files` teacher's format: uint8
[T, h, w] class ids), the generator's true masks or, with the oracle's
corruption options, a corrupted copy imitating an imperfect teacher; ROOT gets
`classes.txt`. Videos are H.264 (libx264, CRF 18) mp4 files.
"""

if __name__ == '__main__':
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start(tensorflow=False)

import os

from absl import flags
import numpy as np

from airstreams_jax import cli
from airstreams_jax.data import synthetic_generator
from airstreams_jax.teachers import oracle
from airstreams_jax.tools import video_files

_SPLITS = (('train', 0), ('test', 1))


def write_folder(root: str, *, num_train: int, num_test: int,
                 num_classes: int, num_frames: int, image_size: int, fps: int,
                 seed: int, drop_prob: float = 0.0, erode_px: int = 0) -> None:
  """Writes ROOT/{train,test}/<class>/<index>.mp4 + masks, ROOT/classes.txt."""
  if image_size % 2:
    raise ValueError(f'image_size must be even for H.264, got {image_size}.')
  names = synthetic_generator.class_names(num_classes)
  teacher = oracle.OracleTeacher(synthetic_generator.CATEGORY_NAMES,
                                 drop_prob=drop_prob, erode_px=erode_px,
                                 seed=seed)
  for split, split_index in _SPLITS:
    count = num_train if split == 'train' else num_test
    for index, (key, clip) in enumerate(synthetic_generator.generate_split(
        seed, count, num_classes, num_frames, image_size,
        split_index=split_index)):
      folder = os.path.join(root, split, names[clip['label']])
      os.makedirs(folder, exist_ok=True)
      stem = os.path.join(folder, key)
      video_files.write_mp4(stem + '.mp4', clip['video'], fps)
      np.savez_compressed(
          stem + '.masks.npz',
          masks=teacher.corrupt(clip['masks'], (split_index, index)))
  with open(os.path.join(root, 'classes.txt'), 'w') as f:
    f.write('\n'.join(synthetic_generator.CATEGORY_NAMES) + '\n')


def define_flags() -> None:
  """The command's flags (defined by `cli.run`)."""
  flags.DEFINE_string('root', None, 'Folder to write (created).')
  flags.DEFINE_integer('num_train', 512, 'Training videos.')
  flags.DEFINE_integer('num_test', 128, 'Test videos.')
  flags.DEFINE_integer('num_classes', 6, 'Action classes.')
  flags.DEFINE_integer('num_frames', 16, 'Frames per video.')
  flags.DEFINE_integer('image_size', 96, 'Frame side (pixels).')
  flags.DEFINE_integer('fps', 8, 'Frame rate written in the files.')
  flags.DEFINE_integer('seed', 0, 'Generator seed.')
  flags.DEFINE_float('oracle_drop_prob', 0.0,
                     'Teacher misses an object class for a whole video with '
                     'this probability.')
  flags.DEFINE_integer('oracle_erode_px', 0,
                       'Teacher shrinks objects by this many pixels.')
  flags.mark_flags_as_required(['root'])


def main() -> None:
  args = flags.FLAGS
  write_folder(args.root, num_train=args.num_train, num_test=args.num_test,
               num_classes=args.num_classes, num_frames=args.num_frames,
               image_size=args.image_size, fps=args.fps, seed=args.seed,
               drop_prob=args.oracle_drop_prob,
               erode_px=args.oracle_erode_px)
  print(f'Wrote {args.num_train} train and {args.num_test} test videos to '
        f'{args.root}')


if __name__ == '__main__':
  cli.run(main, define_flags, console_logging=False)
