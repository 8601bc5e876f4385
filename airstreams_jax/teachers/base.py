"""The teacher interface: RGB frames in, per-pixel class ids out."""

import abc
import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np

from airstreams_jax import errors


class TeacherSetupError(errors.ConfigError):
  """A teacher cannot be built: a missing option, model file or package.

  Raised by constructors and `factory.make_teacher`, before any video is
  read; `main` prints it as one line. The message names the fix.
  """


class TeacherInputError(ValueError):
  """One video's teacher input is bad (e.g. its precomputed mask file).

  Dataset builders catch it, skip the video and name it in their bad-file
  report; the message names the file and the problem.
  """


@dataclasses.dataclass(frozen=True)
class FrameSource:
  """Where the frames handed to a teacher came from.

  Teachers that read precomputed masks (the `files` teacher) need it; image
  segmenters ignore it.

  Attributes:
    video_path: The video file.
    frame_indices: Index in the video of each frame passed to `segment`.
    num_video_frames: The number of frames the whole video has.
  """
  video_path: str
  frame_indices: Tuple[int, ...]
  num_video_frames: int


class Teacher(abc.ABC):
  """A segmenter that labels every pixel of every frame with a class id.

  Subclasses set `class_names` (background first, id 0) and implement
  `segment`. Dataset builders call a teacher once per video, then resize the
  masks (nearest neighbour) to the stored mask resolution.
  """

  @property
  @abc.abstractmethod
  def class_names(self) -> Tuple[str, ...]:
    """Names of the mask values: `class_names[i]` is id i; 0 is background."""

  @abc.abstractmethod
  def segment(self, frames: np.ndarray,
              source: Optional[FrameSource] = None) -> np.ndarray:
    """Labels frames.

    Args:
      frames: uint8 [T, H, W, 3] RGB frames of one video.
      source: Where the frames came from (None for frames not from a file).

    Returns:
      uint8 [T, h, w] class ids in [0, len(class_names)); (h, w) is the
      teacher's own output size (the caller resizes).
    """

  def __call__(self, frames: np.ndarray,
               source: Optional[FrameSource] = None) -> np.ndarray:
    """`segment` with its input and output checked."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
      raise ValueError('A teacher takes uint8 [T, H, W, 3] frames, got '
                       f'{frames.dtype} {frames.shape}.')
    masks = self.segment(frames, source)
    check_masks(masks, len(frames), self.class_names)
    return masks


def check_masks(masks: np.ndarray, num_frames: int,
                class_names: Sequence[str]) -> None:
  """Raises ValueError unless `masks` is uint8 [num_frames, h, w], ids valid."""
  if masks.dtype != np.uint8 or masks.ndim != 3:
    raise ValueError(f'Masks must be uint8 [T, h, w], got {masks.dtype} '
                     f'{masks.shape}.')
  if masks.shape[0] != num_frames:
    raise ValueError(f'Masks have {masks.shape[0]} frames, the video has '
                     f'{num_frames}.')
  if masks.size and int(masks.max()) >= len(class_names):
    raise ValueError(f'Mask id {int(masks.max())} is outside the '
                     f'{len(class_names)} classes {list(class_names)}.')
