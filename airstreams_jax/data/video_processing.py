"""The per-video work of the real-video builders and its worker pools.

`process_video` turns one `VideoEntry` into a stored example: `video_io.decode`
keeps the frames at the configured rate and size, the teacher labels them,
the masks are resized (nearest neighbour) to the stored mask size and the
frames JPEG-encoded. `video_dataset_builder.VideoDatasetBuilder` runs it in
`WorkerPools` of spawned worker processes (one teacher per worker), in order
(`ordered_results`), replacing a pool whose worker died.
"""

import collections
import concurrent.futures
import contextlib
import dataclasses
import io
import multiprocessing
import sys
import types
from typing import (Any, Callable, Dict, Iterator, List, Mapping, Optional,
                    Sequence, Tuple)

from absl import logging
import numpy as np
import PIL.Image

from airstreams_jax.data import video_io
from airstreams_jax.data.video_entries import VideoEntry
from airstreams_jax.teachers import base as teacher_base

JPEG_QUALITY = 90


def resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
  """Nearest-neighbour resize of uint8 [T, h, w] class ids to [T, H, W]."""
  _, h, w = masks.shape
  rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64),
                    h - 1)
  cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64),
                    w - 1)
  return masks[:, rows][:, :, cols]


def frame_labels(intervals, timestamps: np.ndarray,
                 num_classes: int) -> np.ndarray:
  """Multi-hot uint8 [T, num_classes]: the actions under each frame.

  Args:
    intervals: `ActionInterval`s (class, start and end in seconds).
    timestamps: [T] time of each stored frame in seconds.
    num_classes: Number of action classes.

  Returns:
    labels[t, c] = 1 iff an interval of class c covers timestamps[t]
    (start and end included).
  """
  labels = np.zeros((len(timestamps), num_classes), np.uint8)
  for interval in intervals:
    covered = (timestamps >= interval.start) & (timestamps <= interval.end)
    labels[covered, interval.label] = 1
  return labels


def encode_jpeg(frames: np.ndarray, quality: int = JPEG_QUALITY
                ) -> List[bytes]:
  """JPEG bytes of each uint8 [H, W, 3] frame of `frames`."""
  encoded = []
  for frame in frames:
    buffer = io.BytesIO()
    PIL.Image.fromarray(frame).save(buffer, format='JPEG', quality=quality)
    encoded.append(buffer.getvalue())
  return encoded


# ------------------------------------------------------ per-video work


@dataclasses.dataclass(frozen=True)
class Work:
  """Everything a worker needs to turn an entry into an example."""
  teacher: str
  teacher_options: Mapping[str, Any]
  manual_dir: str
  fps: float
  max_frames: int
  short_side: int
  mask_size: int
  multi_label: bool
  num_classes: int
  # video_io.decode, or a stand-in with its signature (a builder's `decode`).
  decode: Callable[..., Any] = video_io.decode


def make_teacher(name: str, manual_dir: str,
                 options: Mapping[str, Any]) -> teacher_base.Teacher:
  """`teachers.factory.make_teacher` (imported here: it loads models)."""
  from airstreams_jax.teachers import factory  # pylint: disable=g-import-not-at-top
  return factory.make_teacher(name, manual_dir=manual_dir,
                              options=dict(options))


# One teacher per worker process, created by `_init_worker`.
_worker_state: Dict[str, Any] = {}


def _init_worker(work: Work) -> None:
  _worker_state['work'] = work
  _worker_state['teacher'] = make_teacher(work.teacher, work.manual_dir,
                                          work.teacher_options)


def _process_in_worker(entry: VideoEntry):
  return process_video(entry, _worker_state['work'],
                       _worker_state['teacher'])


def process_video(entry: VideoEntry, work: Work,
                  teacher: teacher_base.Teacher
                  ) -> Tuple[Optional[Dict[str, Any]], str]:
  """Decodes, labels and encodes one video.

  Returns:
    (example, '') or, for a bad input, (None, one-line reason).
  """
  try:
    video = work.decode(entry.path, fps=work.fps, max_frames=work.max_frames,
                        short_side=work.short_side)
  except video_io.VideoDecodeError as e:
    return None, str(e)
  source = teacher_base.FrameSource(
      video_path=entry.path,
      frame_indices=tuple(int(i) for i in video.indices),
      num_video_frames=video.num_video_frames)
  try:
    masks = teacher(video.frames, source)
  except ValueError as e:  # Includes the teachers' TeacherInputError.
    return None, f'teacher: {" ".join(str(e).split())}'
  height, width = video_io.resized_shape(*video.frames.shape[1:3],
                                         work.mask_size)
  example = {
      'video': encode_jpeg(video.frames),
      'masks': resize_masks(masks, height, width),
      'video_id': entry.video_id,
  }
  if work.multi_label:
    example['frame_labels'] = frame_labels(entry.intervals, video.timestamps,
                                           work.num_classes)
  else:
    example['label'] = entry.label
  return example, ''


@contextlib.contextmanager
def _workers_skip_the_main_module():
  """Worker processes started in this context do not re-run `__main__`.

  A spawned process first re-imports the parent's main module; for
  `python -m airstreams_jax.main` that loads JAX and TensorFlow, which costs
  each worker seconds and hundreds of MB and is of no use to it (its work
  lives in this module). The pool starts workers only inside `submit`.
  """
  main = sys.modules['__main__']
  sys.modules['__main__'] = types.ModuleType('__main__')
  try:
    yield
  finally:
    sys.modules['__main__'] = main


# The reason given for a video whose worker died while processing it alone.
WORKER_CRASHED = ('its build worker crashed on it (a crash inside the decoder '
                  'or the teacher; build_workers=1 shows the error)')


def ordered_results(entries: Sequence[VideoEntry],
                    pools: Optional['WorkerPools'], in_flight: int, work: Work,
                    teacher: teacher_base.Teacher
                    ) -> Iterator[Tuple[Any, str]]:
  """process_video over entries, in order, at most `in_flight` at a time.

  A worker that dies (a segfault in a decoder, the OOM killer) breaks the
  whole pool and fails every video in flight. Those are then processed again
  one at a time in a one-worker pool: the one that kills its worker again is
  reported bad with WORKER_CRASHED, the others are kept, and the build goes
  on with a new pool.
  """
  if pools is None:
    for entry in entries:
      yield process_video(entry, work, teacher)
    return
  pending = collections.deque()
  entries = iter(entries)
  while True:
    while len(pending) < in_flight:
      entry = next(entries, None)
      if entry is None:
        break
      pending.append((entry, pools.submit(entry)))
    if not pending:
      return
    try:
      result = pending[0][1].result()
    except concurrent.futures.process.BrokenProcessPool:
      pools.replace()
      for entry, _ in pending:
        yield pools.alone(entry)
      pending.clear()
      continue
    yield result
    pending.popleft()


class WorkerPools:
  """The build's worker pool, replaced when a worker dies."""

  def __init__(self, num_workers: int, work: Work):
    self._num_workers = num_workers
    self._work = work
    self._pool = None
    self._single = None  # For videos processed alone after a crash.

  def _new(self, num_workers: int) -> concurrent.futures.Executor:
    # Spawned, not forked: the parent may run TensorFlow and JAX threads.
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=num_workers,
        mp_context=multiprocessing.get_context('spawn'),
        initializer=_init_worker, initargs=(self._work,))

  def submit(self, entry: VideoEntry) -> concurrent.futures.Future:
    if self._pool is None:
      self._pool = self._new(self._num_workers)
    try:
      with _workers_skip_the_main_module():
        return self._pool.submit(_process_in_worker, entry)
    except concurrent.futures.process.BrokenProcessPool as e:
      # Broke before this submit: fails like the videos already in flight.
      failed = concurrent.futures.Future()
      failed.set_exception(e)
      return failed

  def alone(self, entry: VideoEntry) -> Tuple[Any, str]:
    """Processes one video in a one-worker pool (kept until it breaks), so
    that a crash names its video."""
    if self._single is None:
      self._single = self._new(1)
    try:
      with _workers_skip_the_main_module():
        return self._single.submit(_process_in_worker, entry).result()
    except concurrent.futures.process.BrokenProcessPool:
      logging.warning('A build worker died processing %s; skipping it.',
                      entry.path)
      self._single.shutdown(cancel_futures=True)
      self._single = None
      return None, WORKER_CRASHED

  def replace(self) -> None:
    """Drops the current (broken) pool; the next submit starts a new one."""
    if self._pool is not None:
      self._pool.shutdown(cancel_futures=True)
      self._pool = None

  def shutdown(self) -> None:
    self.replace()
    if self._single is not None:
      self._single.shutdown(cancel_futures=True)
      self._single = None
