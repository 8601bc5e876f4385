"""The `files` teacher: masks that another tool already produced.

Layout (e.g. Detectron2's Mask R-CNN run on a GPU cluster):
  ROOT/classes.txt                  one class name per line, background first
  ROOT/.../<stem>.<video extension> any video the dataset lists
  ROOT/.../<stem>.masks.npz         beside it: `masks`, uint8 [T, h, w] class
                                    ids, T = the video's frame count
Each call selects the masks of the frames handed over (`source.frame_indices`).
A bad mask file raises `TeacherInputError`, so the video is reported like a
bad video.
"""

import os
import zipfile
from typing import Optional, Tuple

import numpy as np

from airstreams_jax import user_paths
from airstreams_jax.teachers import base
from airstreams_jax.teachers import tflite

CLASSES_FILE = 'classes.txt'
MASKS_SUFFIX = '.masks.npz'
MASKS_KEY = 'masks'
# Mask and frame aspect ratios may differ this much (rounding of small mask
# sizes); beyond it the masks cannot be aligned with the frames (e.g. a
# transposed array).
_ASPECT_TOLERANCE = 0.1


def masks_path(video_path: str) -> str:
  """`<stem>.masks.npz` beside `<stem>.<ext>`."""
  return os.path.splitext(video_path)[0] + MASKS_SUFFIX


class FilesTeacher(base.Teacher):
  """Reads precomputed masks from `<stem>.masks.npz` beside each video."""

  def __init__(self, classes_file: str):
    """Reads the class names.

    Args:
      classes_file: The dataset root's classes.txt: one class name per line,
        background first; mask value i is the class on line i + 1.

    Raises:
      base.TeacherSetupError: If the file is missing or malformed.
    """
    self._class_names = tflite.read_class_names(
        classes_file, what='files-teacher class list')
    if len(self._class_names) > 256:
      raise base.TeacherSetupError(
          f'{classes_file} lists {len(self._class_names)} classes; uint8 '
          'masks hold at most 256.')

  @property
  def class_names(self) -> Tuple[str, ...]:
    return self._class_names

  def load(self, source: base.FrameSource) -> np.ndarray:
    """All of one video's masks [T, h, w], checked.

    Args:
      source: The video (its path and frame count are used).

    Returns:
      The uint8 masks of every frame of the video.

    Raises:
      base.TeacherInputError: If the mask file is missing, unreadable, or its
        masks have the wrong dtype, rank, frame count or class ids.
    """
    path = masks_path(source.video_path)
    if not user_paths.is_file(path):
      raise base.TeacherInputError(
          f'{path}: missing; the files teacher needs a {MASKS_SUFFIX} file '
          f'beside every video.')
    try:
      loaded = np.load(user_paths.local_file(path), allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
      raise base.TeacherInputError(
          f'{path}: not a readable .npz file ({e}).') from e
    if not isinstance(loaded, np.lib.npyio.NpzFile):
      raise base.TeacherInputError(
          f'{path}: a bare .npy array, not an .npz archive; save it with '
          f'np.savez_compressed(path, {MASKS_KEY}=masks).')
    with loaded:
      if MASKS_KEY not in loaded.files:
        raise base.TeacherInputError(
            f'{path}: has arrays {loaded.files}, no {MASKS_KEY!r}.')
      try:
        masks = loaded[MASKS_KEY]
      except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise base.TeacherInputError(
            f'{path}: cannot read {MASKS_KEY!r} ({e}).') from e
    if masks.dtype != np.uint8 or masks.ndim != 3:
      raise base.TeacherInputError(
          f'{path}: {MASKS_KEY!r} is {masks.dtype} with shape '
          f'{list(masks.shape)}; expected uint8 [T, h, w].')
    if len(masks) != source.num_video_frames:
      raise base.TeacherInputError(
          f'{path}: has masks for {len(masks)} frames, the video has '
          f'{source.num_video_frames}.')
    num_classes = len(self._class_names)
    if masks.size and int(masks.max()) >= num_classes:
      raise base.TeacherInputError(
          f'{path}: class id {int(masks.max())} is outside the '
          f'{num_classes} classes of {CLASSES_FILE}.')
    return masks

  def segment(self, frames: np.ndarray,
              source: Optional[base.FrameSource] = None) -> np.ndarray:
    if source is None:
      raise ValueError('The files teacher reads masks per video file; pass '
                       'the FrameSource of the frames.')
    if len(source.frame_indices) != len(frames):
      raise ValueError(f'{len(frames)} frames but {len(source.frame_indices)}'
                       ' frame indices.')
    masks = self.load(source)
    bad = [i for i in source.frame_indices
           if not 0 <= i < source.num_video_frames]
    if bad:
      raise ValueError(f'Frame indices {bad[:5]} are outside the '
                       f'{source.num_video_frames} frames of '
                       f'{source.video_path}.')
    mask_aspect = masks.shape[2] / masks.shape[1]
    frame_aspect = frames.shape[2] / frames.shape[1]
    if abs(mask_aspect / frame_aspect - 1) > _ASPECT_TOLERANCE:
      raise base.TeacherInputError(
          f'{masks_path(source.video_path)}: masks are {masks.shape[1]}x'
          f'{masks.shape[2]} (h x w), which does not match the aspect ratio '
          f'of the {frames.shape[1]}x{frames.shape[2]} frames.')
    return masks[np.asarray(source.frame_indices, np.int64)]
