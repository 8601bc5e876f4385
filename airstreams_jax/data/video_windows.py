"""Windows over a whole video: the clips that `predict` scores one by one.

A model sees `num_frames` stored frames taken every `frame_stride`-th, a
clip spanning `(num_frames - 1) * frame_stride + 1` stored frames. To judge
a whole video, windows of that span slide over it every `stride` stored
frames; the last window ends on the last frame, so the tail is seen too.
A video shorter than one clip gives one window that repeats its last frame
(as the dataset pipeline does, `video_ops.clip_indices`); `repeated_frames`
counts those copies, so that callers can say so instead of padding
silently.

Pure NumPy: the same indices serve the command line, a notebook and tests.
"""

import dataclasses
import math

import numpy as np


def clip_span(num_frames: int, frame_stride: int) -> int:
  """How many stored frames one clip spans, first to last."""
  return (num_frames - 1) * frame_stride + 1


def repeated_frames(num_stored: int, num_frames: int,
                    frame_stride: int) -> int:
  """How many of a clip's frames repeat the last stored frame because the
  video is shorter than the clip (0 when it is long enough). Each repeat is
  also a frame pair in which the flow sees no motion."""
  # Frame i repeats frame i - 1 once (i - 1) * frame_stride reaches the
  # last stored frame.
  return max(0, num_frames - 1 - math.ceil((num_stored - 1) / frame_stride))


@dataclasses.dataclass(frozen=True)
class Windows:
  """The windows of one video.

  Attributes:
    indices: int [W, num_frames], stored-frame indices of each window.
    repeated: frames of each window that repeat the last stored frame (the
      same for every window; > 0 only when there is a single window).
  """
  indices: np.ndarray
  repeated: int

  @property
  def starts(self) -> np.ndarray:
    return self.indices[:, 0]

  @property
  def ends(self) -> np.ndarray:
    """The last stored frame each window shows."""
    return self.indices[:, -1]


def sliding_windows(num_stored: int, num_frames: int, frame_stride: int,
                    stride: int) -> Windows:
  """Windows every `stride` stored frames over a video of `num_stored`.

  Raises:
    ValueError: an empty video or a stride < 1.
  """
  if num_stored < 1:
    raise ValueError('The video has no frames.')
  if stride < 1:
    raise ValueError(f'The window stride must be >= 1 frame, got {stride}.')
  span = clip_span(num_frames, frame_stride)
  last_start = max(num_stored - span, 0)
  starts = np.arange(0, last_start + 1, stride)
  if starts[-1] != last_start:  # The tail: a last window ending on it.
    starts = np.append(starts, last_start)
  indices = starts[:, None] + np.arange(num_frames)[None] * frame_stride
  return Windows(indices=np.minimum(indices, num_stored - 1),
                 repeated=repeated_frames(num_stored, num_frames,
                                          frame_stride))


def stride_in_frames(seconds: float, frames_per_second: float) -> int:
  """A window stride given in seconds, as stored frames (at least 1)."""
  if not seconds > 0 or not math.isfinite(seconds):
    raise ValueError(f'The window stride must be > 0 seconds, got {seconds}.')
  return max(1, int(round(seconds * frames_per_second)))
