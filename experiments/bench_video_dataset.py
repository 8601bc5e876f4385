r"""Build and read speed of a real-video dataset, on generated videos.

  python -m experiments.bench_video_dataset [--num_videos=48] \
      [--seconds=3] [--teacher=files]

Writes `num_videos` H.264 clips of 320x240 at 30 fps (a textured background
panning under a moving square, so that the codecs have real work) as
ROOT/{train,test}/<class>/<clip>.mp4 with `files`-teacher masks beside them,
then prints:
  - decode: clips/s of `video_io.decode` alone (one process);
  - build: clips/s of `video_folder` building the dataset with 1 and with 2
    worker processes (decode, teacher, JPEG encoding, tfds writing);
  - read: clips/s of the training input pipeline (`pipeline.
    make_train_dataset`: read, JPEG decode, random clip, crop, resize) at the
    given training resolution, which the train step must not outpace.
`--teacher=selfie` builds with the real selfie teacher instead (fetched once
from PyPI); its own speed is in experiments/bench_teacher.py.
"""

import os
import shutil
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import av
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from airstreams_jax.data import dataset_from_config
from airstreams_jax.data import pipeline
from airstreams_jax.data import video_io
from configs import video_folder as video_folder_config

_NUM_VIDEOS = flags.DEFINE_integer('num_videos', 48, 'Clips to generate '
                                   '(3/4 train, 1/4 test).')
_SECONDS = flags.DEFINE_float('seconds', 3.0, 'Length of each clip.')
_TEACHER = flags.DEFINE_string('teacher', 'files', 'files or selfie.')
_SHORT_SIDE = flags.DEFINE_integer('short_side', 128, 'Stored short side.')
_FPS = flags.DEFINE_float('fps', 0.0, 'Stored frame rate (0: all frames).')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 112, 'Training resolution.')
_NUM_FRAMES = flags.DEFINE_integer('num_frames', 8, 'Frames per clip.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Read batch size.')
_READ_BATCHES = flags.DEFINE_integer('read_batches', 30, 'Batches timed.')
_CLASSES = 4
_HEIGHT, _WIDTH, _RATE = 240, 320, 30


def _write_clip(path: str, num_frames: int, rng: np.random.Generator):
  """A panning texture with a square moving across it, and its masks."""
  texture = rng.integers(0, 256, (_HEIGHT, 2 * _WIDTH, 3), np.uint8)
  texture = (texture.astype(np.float32) * 0.3 + 90).astype(np.uint8)
  masks = np.zeros((num_frames, _HEIGHT // 4, _WIDTH // 4), np.uint8)
  with av.open(path, 'w') as container:
    stream = container.add_stream('libx264', rate=_RATE)
    stream.width, stream.height, stream.pix_fmt = _WIDTH, _HEIGHT, 'yuv420p'
    for t in range(num_frames):
      frame = texture[:, t:t + _WIDTH].copy()
      y, x = 60 + t % 60, 40 + 3 * t % 200
      frame[y:y + 60, x:x + 60] = (220, 60, 60)
      masks[t, y // 4:(y + 60) // 4, x // 4:(x + 60) // 4] = 1
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame)):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  np.savez_compressed(os.path.splitext(path)[0] + '.masks.npz', masks=masks)


def _make_folder(root: str) -> list:
  rng = np.random.default_rng(0)
  num_frames = int(_SECONDS.value * _RATE)
  paths = []
  for i in range(_NUM_VIDEOS.value):
    split = 'test' if i % 4 == 3 else 'train'
    folder = os.path.join(root, split, f'class{i % _CLASSES}')
    os.makedirs(folder, exist_ok=True)
    paths.append(os.path.join(folder, f'clip{i:04d}.mp4'))
    _write_clip(paths[-1], num_frames, rng)
  with open(os.path.join(root, 'classes.txt'), 'w') as f:
    f.write('background\nperson\n')
  return paths


def _dataset_config(root: str, data_dir: str, workers: int):
  config = video_folder_config.get_config()
  d = config.dataset
  d.update(dict(manual_dir=root, data_dir=data_dir, teacher=_TEACHER.value,
                short_side=_SHORT_SIDE.value, fps=_FPS.value,
                build_workers=workers, image_size=_IMAGE_SIZE.value,
                num_frames=_NUM_FRAMES.value))
  return d


def main(argv):
  del argv
  tf.config.set_visible_devices([], 'GPU')
  logging.set_verbosity(logging.ERROR)
  tfds.disable_progress_bar()
  work = tempfile.mkdtemp(prefix='bench_video_dataset_')
  try:
    root = os.path.join(work, 'videos')
    paths = _make_folder(root)
    n = len(paths)
    print(f'{n} clips of {_WIDTH}x{_HEIGHT}, {_SECONDS.value:g} s at '
          f'{_RATE} fps; stored short side {_SHORT_SIDE.value}, fps '
          f'{_FPS.value or "all"}; teacher {_TEACHER.value}; '
          f'{os.cpu_count()} CPU cores')

    start = time.perf_counter()
    for path in paths:
      video_io.decode(path, fps=_FPS.value, short_side=_SHORT_SIDE.value)
    print(f'decode: {n / (time.perf_counter() - start):.1f} clips/s '
          '(one process)')

    builder = None
    for workers in (1, 2):
      data_dir = os.path.join(work, f'tfds{workers}')
      builder = dataset_from_config.make_builder(_dataset_config(root, data_dir,
                                                      workers))
      start = time.perf_counter()
      builder.download_and_prepare()
      seconds = time.perf_counter() - start
      print(f'build: {n / seconds:.1f} clips/s with {workers} worker '
            f'process(es) ({seconds:.1f} s)')

    d = _dataset_config(root, os.path.join(work, 'tfds2'), 2)
    ds = pipeline.make_train_dataset(builder, d,
                                     local_batch_size=_BATCH.value, seed=0)
    batches = iter(ds)
    next(batches)  # Tracing and the first fill of the buffers.
    start = time.perf_counter()
    for _ in range(_READ_BATCHES.value):
      next(batches)
    seconds = time.perf_counter() - start
    print(f'read: {_READ_BATCHES.value * _BATCH.value / seconds:.1f} clips/s '
          f'at {_NUM_FRAMES.value}x{_IMAGE_SIZE.value}x{_IMAGE_SIZE.value} '
          f'(batches of {_BATCH.value}; videos of '
          f'{int(_SECONDS.value * (_FPS.value or _RATE))} stored frames)')
  finally:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
