"""The `tflite` teacher: any semantic-segmentation .tflite plus a label file.

The input size and dtype and the output layout are read from the model:
  - input [1, H, W, 3] float32 (pixels mapped linearly to `input_range`),
    uint8 (raw pixels, the convention of quantised image models) or int8
    (pixels - 128);
  - output [1, h, w, C] scores (logits or probabilities, float or quantised)
    -> argmax over C, with C equal to the number of labels; or [1, h, w]
    integer class ids.
Frames are stretched to the input size; masks are resized (nearest neighbour)
back to the frame's aspect ratio, as in `litert_model.output_hw`.
"""

from typing import Optional, Sequence, Tuple

import numpy as np

from airstreams_jax import user_paths
from airstreams_jax.teachers import base
from airstreams_jax.teachers import litert_model

_CHUNK_FRAMES = 64


def read_class_names(path: str, what: str = 'label file') -> Tuple[str, ...]:
  """Reads one class name per line (background first); blank lines dropped.

  Args:
    path: The text file.
    what: How error messages name the file.

  Returns:
    The names, stripped of surrounding whitespace.

  Raises:
    base.TeacherSetupError: If the file is missing, has fewer than two names
      or repeats a name.
  """
  if not user_paths.is_file(path):
    raise base.TeacherSetupError(
        f'The {what} {path} does not exist; it lists one class name per '
        'line, background first.')
  with open(user_paths.local_file(path), encoding='utf-8') as f:
    # Stripped, because a stray space would otherwise make a distinct name.
    names = tuple(line.strip() for line in f if line.strip())
  if len(names) < 2:
    raise base.TeacherSetupError(
        f'The {what} {path} lists {len(names)} class names; it needs the '
        'background and at least one class, one per line.')
  seen = set()
  for i, name in enumerate(names):
    if name in seen:
      raise base.TeacherSetupError(
          f'The {what} {path} repeats the class name {name!r} (entry '
          f'{i + 1}); names must be unique.')
    seen.add(name)
  return names


class TFLiteTeacher(base.Teacher):
  """Class ids from a user-supplied segmentation model."""

  def __init__(self, model_path: str, labels_path: str,
               input_range: Sequence[float] = (0.0, 1.0),
               num_threads: int = litert_model.DEFAULT_NUM_THREADS,
               batch_size: int = litert_model.DEFAULT_BATCH_SIZE):
    """Loads the model and checks it against the label file.

    Args:
      model_path: The .tflite file.
      labels_path: One class name per line, background first; line i names
        the model's class i.
      input_range: (low, high) that pixel values 0 and 255 map to, for float
        inputs (e.g. (-1, 1) for DeepLab, (0, 255) for models that rescale
        inside); ignored for quantised inputs.
      num_threads: Interpreter threads.
      batch_size: Frames per call, when the model's batch axis is dynamic.

    Raises:
      base.TeacherSetupError: For a missing file, an unsupported input or
        output layout, or a class count that differs from the labels.
    """
    self._class_names = read_class_names(labels_path)
    if len(self._class_names) > 256:
      raise base.TeacherSetupError(
          f'{labels_path} lists {len(self._class_names)} classes; uint8 '
          'masks hold at most 256.')
    low, high = (float(v) for v in input_range)
    if not high > low:
      raise base.TeacherSetupError(
          f'input_range must be (low, high) with high > low, got '
          f'{tuple(input_range)}.')
    self._scale, self._offset = (high - low) / 255, low
    self._model = litert_model.LiteRTModel(model_path, num_threads,
                                           batch_size)
    m = self._model
    if m.input_dtype not in (np.float32, np.uint8, np.int8):
      raise base.TeacherSetupError(
          f'{model_path} takes {m.input_dtype} input; supported: float32, '
          'uint8 or int8.')
    num_classes = len(self._class_names)
    if len(m.output_shape) == 3:
      if m.output_shape[2] != num_classes:
        raise base.TeacherSetupError(
            f'{model_path} outputs {m.output_shape[2]} class scores per '
            f'pixel but {labels_path} names {num_classes} classes; give one '
            'name per output channel, background first.')
      self._scores = True
    elif len(m.output_shape) == 2 and np.issubdtype(m.output_dtype,
                                                    np.integer):
      self._scores = False
    else:
      raise base.TeacherSetupError(
          f'{model_path} outputs {m.output_dtype} {[1, *m.output_shape]}; '
          'supported: [1, h, w, C] class scores or [1, h, w] integer class '
          'ids.')

  @property
  def class_names(self) -> Tuple[str, ...]:
    return self._class_names

  def _model_input(self, frames: np.ndarray) -> np.ndarray:
    x = litert_model.resize_frames(frames, self._model.input_hw)
    dtype = self._model.input_dtype
    if dtype == np.uint8:
      return x
    if dtype == np.int8:
      return (x.astype(np.int16) - 128).astype(np.int8)
    return x.astype(np.float32) * np.float32(self._scale) + np.float32(
        self._offset)

  def segment(self, frames: np.ndarray,
              source: Optional[base.FrameSource] = None) -> np.ndarray:
    del source  # An image segmenter needs only the pixels.
    hw = litert_model.output_hw(frames.shape[1:3], self._model.input_hw)
    masks = []
    for start in range(0, len(frames), _CHUNK_FRAMES):
      out = self._model.run(self._model_input(
          frames[start:start + _CHUNK_FRAMES]))
      # Quantised scores share one positive scale, so their argmax is the
      # argmax of the real-valued scores.
      ids = np.argmax(out, axis=-1) if self._scores else out
      if ids.size and (ids.min() < 0 or ids.max() >= len(self._class_names)):
        raise ValueError(
            f'{self._model.path} output class ids in [{int(ids.min())}, '
            f'{int(ids.max())}], outside '
            f'the {len(self._class_names)} labels.')
      masks.append(litert_model.resize_nearest(ids.astype(np.uint8), hw))
    return np.concatenate(masks)
