"""The teacher interface: RGB frames in, per-pixel class ids out."""

import abc
from typing import Sequence, Tuple

import numpy as np


class Teacher(abc.ABC):
  """A segmenter that labels every pixel of every frame with a class id.

  Subclasses set `class_names` (background first, id 0) and implement
  `segment`. Dataset builders call a teacher once per video, then resize the
  masks (nearest neighbour) to the stored mask resolution.
  """

  @property
  @abc.abstractmethod
  def class_names(self) -> Tuple[str, ...]:
    """Names of the mask values: `class_names[i]` is id i; id 0 is background."""

  @abc.abstractmethod
  def segment(self, frames: np.ndarray) -> np.ndarray:
    """Labels frames.

    Args:
      frames: uint8 [T, H, W, 3] RGB frames of one video.

    Returns:
      uint8 [T, h, w] class ids in [0, len(class_names)); (h, w) is the
      teacher's own output size (the caller resizes).
    """

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    """`segment` with its input and output checked."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
      raise ValueError('A teacher takes uint8 [T, H, W, 3] frames, got '
                       f'{frames.dtype} {frames.shape}.')
    masks = self.segment(frames)
    check_masks(masks, len(frames), self.class_names)
    return masks


def check_masks(masks: np.ndarray, num_frames: int,
                class_names: Sequence[str]) -> None:
  """Raises ValueError unless `masks` is uint8 [num_frames, h, w] of valid ids."""
  if masks.dtype != np.uint8 or masks.ndim != 3:
    raise ValueError(f'Masks must be uint8 [T, h, w], got {masks.dtype} '
                     f'{masks.shape}.')
  if masks.shape[0] != num_frames:
    raise ValueError(f'Masks have {masks.shape[0]} frames, the video has '
                     f'{num_frames}.')
  if masks.size and int(masks.max()) >= len(class_names):
    raise ValueError(f'Mask id {int(masks.max())} is outside the '
                     f'{len(class_names)} classes {list(class_names)}.')
