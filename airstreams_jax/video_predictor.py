"""A trained run that judges whole videos: windows slide over the video,
each window is scored on the evaluation protocol's crops, and the video's
answer is the mean over its windows.

  predictor = VideoPredictor('workdirs/synthetic')
  result = predictor.predict('clip.mp4')
  result.top(3), result.windows[0].start_seconds

The model and its compiled scoring program are loaded once and serve every
video (`predict` over a folder runs in one process): windows go through in
batches of a fixed size, so every video reuses the same program. Only the
RGB path to the merged head runs; the flow layer and the segmentation net
are computed inside the network.
"""

import dataclasses
import functools
from typing import List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from absl import logging

from airstreams_jax.data import pipeline
from airstreams_jax.data import video_io
from airstreams_jax.data import video_windows
from airstreams_jax.training import steps
from airstreams_jax.training import trained_run


@dataclasses.dataclass(frozen=True)
class WindowScores:
  """One window: the time it covers (seconds) and its class scores."""
  start_seconds: float
  end_seconds: float
  scores: np.ndarray  # [C]


@dataclasses.dataclass(frozen=True)
class VideoPrediction:
  """A video's answer: `scores` [C] (the mean over its windows), each
  window's, and how short the video was for the model."""
  path: str
  class_names: Tuple[str, ...]
  scores: np.ndarray
  windows: List[WindowScores]
  num_stored_frames: int
  repeated_frames: int  # Of each clip, when the video is shorter than one.

  def top(self, k: int) -> List[Tuple[str, float]]:
    """The k best (class name, score) of the video, best first."""
    order = np.argsort(-self.scores, kind='stable')[:k]
    return [(self.class_names[i], float(self.scores[i])) for i in order]

  def window_top(self) -> List[Tuple[float, float, str, float]]:
    """Each window's (start s, end s, top class, its score): the timeline."""
    return [(w.start_seconds, w.end_seconds,
             self.class_names[int(np.argmax(w.scores))],
             float(np.max(w.scores))) for w in self.windows]


# What a video is judged by: windows over the whole video, or the
# evaluation protocol's views (`dataset.eval_clips` clips evenly spaced x
# `eval_crops` crops, as the test-set evaluation and the exported model's
# classify_video signature score a video).
VIEWS = ('windows', 'eval')


def decode_as_stored(path: str, dataset_config) -> video_io.DecodedVideo:
  """A video's frames as the run's dataset stored them: the same
  `video_io.decode` and the same `fps`, `max_frames` and `short_side` as the
  build, so a window of the model's clip covers the same seconds of video
  in predict as in training, whatever the source's frame rate."""
  d = dataset_config
  return video_io.decode(path, fps=d.get('fps', 0.0),
                         max_frames=d.get('max_frames', 0),
                         short_side=d.get('short_side', 0))


class VideoPredictor:
  """Scores whole videos with a trained run; see the module docstring.

  Args:
    workdir: a training run's workdir (its config, classes, checkpoint).
    window_stride_seconds: how far apart windows start; None: one clip's
      duration (windows side by side, each frame seen once).
    batch_size: windows scored at once (the compiled program's batch).
    views: 'windows' (the default) or 'eval' (see `VIEWS`; no timeline).
  """

  def __init__(self, workdir: str,
               window_stride_seconds: Optional[float] = None,
               batch_size: int = 8, views: str = 'windows'):
    if views not in VIEWS:
      raise ValueError(f'views={views!r}: use one of {VIEWS}.')
    self.views = views
    if window_stride_seconds is not None and not window_stride_seconds > 0:
      raise ValueError('The window stride must be > 0 seconds, got '
                       f'{window_stride_seconds}.')
    if batch_size < 1:
      raise ValueError(f'batch_size must be >= 1, got {batch_size}.')
    self.run = trained_run.TrainedRun.load(workdir)
    self.window_stride_seconds = window_stride_seconds
    self.batch_size = batch_size
    dataset = self.run.config.dataset
    self.num_frames = int(dataset.num_frames)
    self.frame_stride = int(dataset.frame_stride)
    self._dataset = dataset
    # A window's frames are cut here; the pipeline's evaluation views then
    # take all of them (one clip at stride 1) and its crops.
    self._view_config = dataset.copy_and_resolve_references()
    with self._view_config.unlocked():
      self._view_config.eval_clips = 1
      self._view_config.frame_stride = 1
    self._state = self.run.state()
    self._score = jax.jit(functools.partial(
        steps.video_scores, model=self.run.model,
        multi_label=self.run.classes['multi_label'], stream_heads=False))

  @property
  def class_names(self) -> Tuple[str, ...]:
    return tuple(self.run.classes['class_names'])

  def views_description(self) -> str:
    """What is scored, in words (for --views and the logs)."""
    d = self._dataset
    rate = f'{d.fps:g} stored frames/s' if d.fps else 'every source frame'
    crops = {1: 'the centre square crop',
             3: 'three square crops (both ends and the centre of the long '
                'side)'}.get(int(d.eval_crops),
                             f'{d.eval_crops} square crops along the long side')
    if self.views == 'eval':
      return (f'the evaluation views: {d.eval_clips} clip(s) of '
              f'{self.num_frames} frames (one stored frame in '
              f'{self.frame_stride}; {rate}, short side {d.short_side} px) '
              f'evenly spaced over the video (one: the middle clip), each on '
              f'{crops} resized to {d.image_size} px; the scores are their '
              'mean (no timeline)')
    stride = (f'every {self.window_stride_seconds:g} s'
              if self.window_stride_seconds else
              'side by side (each starting where the last ended)')
    taken = ('consecutive stored frames' if self.frame_stride == 1 else
             f'one stored frame in {self.frame_stride}')
    return (f'windows of {self.num_frames} frames, {taken} ({rate}, short side '
            f'{d.short_side} px), {stride}, over the whole video; each window '
            f'scored on {crops} resized to {d.image_size} px; the video\'s '
            'scores are the mean of its windows\'')

  def decode(self, path: str) -> video_io.DecodedVideo:
    """The video's frames as the dataset stored them (rate, short side)."""
    return decode_as_stored(path, self._dataset)

  def _warn_if_short(self, path: str, num_stored: int, repeated: int):
    """Once per video: never pad a short one silently."""
    if repeated:
      logging.warning(
          '%s: %d stored frames, shorter than the model\'s clip of %d frames '
          'at stride %d: %d of its %d frames repeat the last one.', path,
          num_stored, self.num_frames, self.frame_stride, repeated,
          self.num_frames)

  def _window_views(self, frames: np.ndarray) -> np.ndarray:
    """uint8 [V, T, S, S, 3]: the evaluation crops of one window."""
    example = {'video': tf.constant(frames), 'label': tf.constant(-1)}
    return pipeline.preprocess_eval(
        example, dataset_config=self._view_config)['video'].numpy()

  def _scores(self, views: Sequence[np.ndarray]) -> np.ndarray:
    """[W, C] merged-head scores of windows' views, in fixed-size batches."""
    out = []
    for start in range(0, len(views), self.batch_size):
      batch = np.stack(views[start:start + self.batch_size])
      valid = len(batch)
      if valid < self.batch_size:  # Padded: one compiled shape for all.
        batch = np.concatenate([batch, np.zeros(
            (self.batch_size - valid,) + batch.shape[1:], batch.dtype)])
      scores = self._score(self._state, jnp.asarray(batch))['merged']
      out.append(np.asarray(scores)[:valid])
    return np.concatenate(out)

  def predict(self, path: str) -> VideoPrediction:
    """Scores every window of the video at `path`.

    Raises:
      video_io.VideoDecodeError: the file is not a readable video.
    """
    video = self.decode(path)
    frames, times = video.frames, np.asarray(video.timestamps, np.float64)
    num_stored = len(frames)
    if self.views == 'eval':
      return self._predict_eval_views(path, frames)
    # The stored frames' rate, for the stride and the windows' ends.
    rate = ((num_stored - 1) / (times[-1] - times[0])
            if num_stored > 1 and times[-1] > times[0] else
            (self._dataset.fps or video.fps or 1.0))
    clip_span = video_windows.clip_span(self.num_frames, self.frame_stride)
    stride = (video_windows.stride_in_frames(self.window_stride_seconds, rate)
              if self.window_stride_seconds else clip_span)
    windows = video_windows.sliding_windows(
        num_stored, self.num_frames, self.frame_stride, stride)
    self._warn_if_short(path, num_stored, windows.repeated)
    scores = self._scores([self._window_views(frames[idx])
                           for idx in windows.indices])
    scored = [WindowScores(float(times[idx[0]]),
                           float(times[idx[-1]]) + 1.0 / rate, s)
              for idx, s in zip(windows.indices, scores)]
    return VideoPrediction(path=path, class_names=self.class_names,
                           scores=scores.mean(0), windows=scored,
                           num_stored_frames=num_stored,
                           repeated_frames=windows.repeated)

  def _predict_eval_views(self, path: str,
                          frames: np.ndarray) -> VideoPrediction:
    """The evaluation protocol's views of the whole video, scored at once."""
    repeated = video_windows.repeated_frames(len(frames), self.num_frames,
                                             self.frame_stride)
    self._warn_if_short(path, len(frames), repeated)
    example = {'video': tf.constant(frames), 'label': tf.constant(-1)}
    views = pipeline.preprocess_eval(
        example, dataset_config=self._dataset)['video'].numpy()
    scores = np.asarray(self._score(self._state, jnp.asarray(
        views[None]))['merged'][0])
    return VideoPrediction(path=path, class_names=self.class_names,
                           scores=scores, windows=[],
                           num_stored_frames=len(frames),
                           repeated_frames=repeated)
