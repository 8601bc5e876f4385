"""The `oracle` teacher: true masks, corrupted to imitate a teacher's mistakes.

Only a generator that draws the frames knows their true masks (the synthetic
dataset), so this teacher corrupts masks rather than labelling frames:
  - drop: each object class is missed for a whole clip with probability
    `drop_prob` (its pixels become background), like a segmenter that does
    not know an object;
  - erode: every object shrinks by `erode_px` pixels (a square structuring
    element), like a segmenter with poor boundaries.
Corruption is a deterministic function of (seed, video key).
"""

from typing import Optional, Sequence, Tuple, Union

import numpy as np
from scipy import ndimage

from airstreams_jax.teachers import base

VideoKey = Union[int, Sequence[int]]


class OracleTeacher(base.Teacher):
  """Corrupts true masks; see the module docstring."""

  def __init__(self, class_names: Sequence[str], drop_prob: float = 0.0,
               erode_px: int = 0, seed: int = 0):
    """Validates the options.

    Args:
      class_names: The mask classes, background first (for the synthetic
        dataset, `synthetic_generator.CATEGORY_NAMES`).
      drop_prob: Probability in [0, 1] that an object class is dropped from a
        whole clip.
      erode_px: Pixels (>= 0) by which every object shrinks.
      seed: Non-negative seed of the dropping decisions.

    Raises:
      ValueError: If an option is out of range.
    """
    if len(class_names) < 2:
      raise ValueError(f'An oracle needs the background and at least one '
                       f'class, got {list(class_names)}.')
    if not 0.0 <= drop_prob <= 1.0:
      raise ValueError(f'drop_prob must be in [0, 1], got {drop_prob}.')
    if int(erode_px) != erode_px or erode_px < 0:
      raise ValueError(f'erode_px must be an integer >= 0, got {erode_px}.')
    if int(seed) != seed or seed < 0:
      raise ValueError(f'seed must be an integer >= 0, got {seed}.')
    self._class_names = tuple(class_names)
    self.drop_prob = float(drop_prob)
    self.erode_px = int(erode_px)
    self.seed = int(seed)

  @property
  def class_names(self) -> Tuple[str, ...]:
    return self._class_names

  @property
  def is_identity(self) -> bool:
    """True when `corrupt` returns the masks unchanged."""
    return self.drop_prob == 0.0 and self.erode_px == 0

  def dropped_classes(self, video_key: VideoKey) -> np.ndarray:
    """Boolean [num_classes]: the object classes dropped from this video."""
    key = (video_key,) if np.isscalar(video_key) else tuple(video_key)
    # The key length is part of the entropy so that (a,) and (a, 0) differ.
    rng = np.random.default_rng(
        np.random.SeedSequence([self.seed, len(key), *map(int, key)]))
    # One draw per class whatever the clip holds, so that a class's fate does
    # not depend on which other classes are present.
    drop = rng.random(len(self._class_names)) < self.drop_prob
    drop[0] = False  # Background cannot be dropped.
    return drop

  def corrupt(self, masks: np.ndarray, video_key: VideoKey) -> np.ndarray:
    """Returns the masks of one video with this teacher's mistakes.

    Args:
      masks: True uint8 class ids [T, h, w] of one video.
      video_key: Identifies the video, e.g. (split index, example index);
        the same key and seed always give the same corruption.

    Returns:
      Corrupted uint8 masks [T, h, w] (the input itself when `is_identity`).
    """
    base.check_masks(masks, len(masks), self._class_names)
    if self.is_identity:
      return masks
    out = masks
    if self.drop_prob > 0.0:
      out = np.where(self.dropped_classes(video_key)[out], 0, out).astype(
          np.uint8)
    if self.erode_px > 0:
      # A pixel keeps its class only if every pixel within erode_px
      # (Chebyshev distance, same frame) has that class: the min and max
      # filters agree exactly there. 'nearest' extends objects past the
      # frame border, so the border itself does not erode them.
      size = (1, 2 * self.erode_px + 1, 2 * self.erode_px + 1)
      low = ndimage.minimum_filter(out, size=size, mode='nearest')
      high = ndimage.maximum_filter(out, size=size, mode='nearest')
      out = np.where(low == high, out, 0).astype(np.uint8)
    return out

  def segment(self, frames: np.ndarray,
              source: Optional[base.FrameSource] = None) -> np.ndarray:
    raise base.TeacherSetupError(
        'The oracle teacher cannot label frames: it corrupts the true masks '
        'that the synthetic generator supplies (OracleTeacher.corrupt). For '
        "real videos set dataset.teacher to 'selfie', 'tflite', 'files' or "
        "'maskrcnn'.")
