"""A single-input, single-output .tflite model run with ai-edge-litert.

Shared by the `selfie` and `tflite` teachers: loading with one-line errors,
batched inference when the model allows it, and the resizing that maps frames
to the model's input and its output back to the frame's aspect ratio.
"""

from typing import Optional, Tuple

import numpy as np
from PIL import Image

from airstreams_jax import user_paths
from airstreams_jax.teachers import base

# Frames per interpreter call when the batch dimension can be resized. The
# selfie model ran at 3.2 ms/frame in batches of 4 versus 4.2 ms one by one
# on an idle machine; larger batches were no faster
# (experiments/bench_teacher.py).
DEFAULT_BATCH_SIZE = 4
# Interpreter threads. Dataset builders run one worker process per core, and
# on the 2-core machine one thread was as fast as two or faster (225 vs 193
# frames/s on carphone, experiments/bench_teacher.py).
DEFAULT_NUM_THREADS = 1


class LiteRTModel:
  """Runs a .tflite model on batches of images.

  Attributes:
    path: The model file.
    input_hw: (height, width) of the model's input.
    input_dtype: numpy dtype of the input tensor.
    output_shape: Shape of one example's output, without the batch axis.
    output_dtype: numpy dtype of the output tensor.
  """

  def __init__(self, path: str, num_threads: Optional[int] = None,
               batch_size: int = DEFAULT_BATCH_SIZE):
    """Loads the model and reads its input and output details.

    Args:
      path: A .tflite file.
      num_threads: Interpreter threads (None: LiteRT's default).
      batch_size: Frames per call when the model's batch axis is resizable.

    Raises:
      base.TeacherSetupError: If the file is missing, not a model, or has
        other than one image input and one output.
    """
    # Imported here so that teachers that need no interpreter (files,
    # oracle) do not load it.
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
    self.path = path
    if not user_paths.is_file(path):
      raise base.TeacherSetupError(f'Model file {path} does not exist.')
    if batch_size < 1:
      raise base.TeacherSetupError(f'batch_size must be >= 1, got '
                                   f'{batch_size}.')
    try:
      self._interpreter = litert.Interpreter(
          model_path=user_paths.local_file(path), num_threads=num_threads)
    except (ValueError, RuntimeError) as e:
      raise base.TeacherSetupError(
          f'{path} is not a TFLite model LiteRT can load: '
          f'{_first_line(e)}') from e
    inputs = self._interpreter.get_input_details()
    outputs = self._interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
      raise base.TeacherSetupError(
          f'{path} has {len(inputs)} inputs and {len(outputs)} outputs; a '
          'segmentation teacher needs exactly one image input and one '
          'output.')
    self._input, self._output = inputs[0], outputs[0]
    shape = tuple(int(d) for d in self._input['shape'])
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
      raise base.TeacherSetupError(
          f'{path} takes input of shape {list(shape)}; expected '
          '[1, height, width, 3] (NHWC).')
    self.input_hw = shape[1:3]
    self.input_dtype = np.dtype(self._input['dtype'])
    self.output_dtype = np.dtype(self._output['dtype'])
    self.output_shape = tuple(int(d) for d in self._output['shape'])[1:]
    self._batch_size = 1
    # Only a batch axis the model declares dynamic (-1) is resized: a fixed
    # [1, ...] graph may reshape with a hard-coded batch of 1 inside.
    signature = self._input.get('shape_signature', self._input['shape'])
    if batch_size > 1 and int(signature[0]) == -1:
      self._resize(batch_size)
    else:
      self._interpreter.allocate_tensors()

  def allow_batching(self, batch_size: int) -> None:
    """Resizes the batch axis of a model declared with a fixed batch of 1.

    For models known to be batch-independent (the selfie model's batched
    outputs equal its one-by-one outputs exactly; see tests).

    Args:
      batch_size: Frames per interpreter call.
    """
    if batch_size > 1:
      self._resize(batch_size)

  def _resize(self, batch_size: int) -> None:
    self._interpreter.resize_tensor_input(
        self._input['index'], [batch_size, *self.input_hw, 3])
    self._interpreter.allocate_tensors()
    self._batch_size = batch_size

  def run(self, images: np.ndarray) -> np.ndarray:
    """Runs the model on images already in its input size and dtype.

    Args:
      images: [N, height, width, channels] of `input_dtype`.

    Returns:
      [N, *output_shape] outputs.
    """
    n = len(images)
    out = np.empty((n, *self.output_shape), self.output_dtype)
    step = self._batch_size
    for start in range(0, n, step):
      chunk = images[start:start + step]
      size = len(chunk)
      if size < step:
        # Pad the last batch rather than resizing the tensors (which
        # re-plans the whole graph).
        pad = np.zeros((step - size, *chunk.shape[1:]), chunk.dtype)
        chunk = np.concatenate([chunk, pad])
      self._interpreter.set_tensor(self._input['index'], chunk)
      self._interpreter.invoke()
      out[start:start + size] = (
          self._interpreter.get_tensor(self._output['index'])[:size])
    return out


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def resize_frames(frames: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
  """Bilinearly resizes uint8 RGB frames [T, H, W, 3] to [T, *hw, 3].

  Pillow's bilinear filter widens its support when shrinking, so large frames
  are low-pass filtered rather than aliased.
  """
  h, w = hw
  if frames.shape[1:3] == (h, w):
    return frames
  return np.stack([np.asarray(Image.fromarray(f).resize(
      (w, h), Image.Resampling.BILINEAR)) for f in frames])


def resize_maps(maps: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
  """Bilinearly resizes float32 maps [T, h, w] to [T, *hw]."""
  h, w = hw
  if maps.shape[1:3] == (h, w):
    return maps
  # A float32 2-D array becomes a Pillow 'F' (32-bit float) image.
  return np.stack([np.asarray(Image.fromarray(m).resize(
      (w, h), Image.Resampling.BILINEAR)) for m in maps.astype(np.float32)])


def resize_nearest(masks: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of id maps [T, h, w] to [T, *hw]."""
  h, w = hw
  src_h, src_w = masks.shape[1:3]
  if (src_h, src_w) == (h, w):
    return masks
  # Sample each output pixel's centre in source coordinates.
  rows = np.minimum(((np.arange(h) + 0.5) * src_h / h).astype(np.int64),
                    src_h - 1)
  cols = np.minimum(((np.arange(w) + 0.5) * src_w / w).astype(np.int64),
                    src_w - 1)
  return masks[:, rows[:, None], cols[None, :]]


def output_hw(frame_hw: Tuple[int, int],
              model_hw: Tuple[int, int]) -> Tuple[int, int]:
  """The mask size for frames of `frame_hw`: the frame's aspect ratio.

  The frame's own size when it fits in the model's input, else scaled down
  until it does (finer masks than the model's output carry no information).

  Args:
    frame_hw: (H, W) of the frames.
    model_hw: (height, width) of the model's input.

  Returns:
    (h, w) of the masks.
  """
  fh, fw = frame_hw
  scale = min(1.0, model_hw[0] / fh, model_hw[1] / fw)
  return max(1, round(fh * scale)), max(1, round(fw * scale))
