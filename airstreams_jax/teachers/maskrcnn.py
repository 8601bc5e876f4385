"""The `maskrcnn` teacher: torchvision's Mask R-CNN with COCO weights.

An optional extra (torch and torchvision are not in requirements.txt, and
weigh about 5.5 GB): the user supplies a weights file, e.g. torchvision's
maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth, and installs torchvision. Instance
masks are painted into one class map in ascending score order, so where
instances overlap the higher-scoring one wins. Mask values are COCO category
ids (torchvision's 91 labels: 0 = background, 1..90 with ten unused ids).
"""

import os
import pickle
import sys
from typing import Optional, Tuple

import numpy as np

from airstreams_jax import user_paths
from airstreams_jax.teachers import base

INSTALL_HINT = ('pip install torch==2.14.1 torchvision==0.29.1 (x86_64; '
                'about 5.5 GB)')
ARCHITECTURES = ('maskrcnn_resnet50_fpn', 'maskrcnn_resnet50_fpn_v2')

# torchvision's COCO labels (index = category id); ids COCO leaves unused are
# named 'unused_<id>' so that every name is unique.
_COCO_NAMES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
    'truck', 'boat', 'traffic light', 'fire hydrant', None, 'stop sign',
    'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', None, 'backpack', 'umbrella',
    None, None, 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard',
    'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard',
    'surfboard', 'tennis racket', 'bottle', None, 'wine glass', 'cup', 'fork',
    'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', None, 'dining table', None, None,
    'toilet', None, 'tv', 'laptop', 'mouse', 'remote', 'keyboard',
    'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator',
    None, 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier',
    'toothbrush')
CLASS_NAMES = ('background',) + tuple(
    name or f'unused_{i}' for i, name in enumerate(_COCO_NAMES, start=1))
assert len(CLASS_NAMES) == 91


def import_torch():
  """Imports torch and torchvision (safely beside TensorFlow).

  Returns:
    The torch and torchvision modules.

  Raises:
    base.TeacherSetupError: If they are not installed; says how to.
  """
  if 'tensorflow' in sys.modules and 'triton' not in sys.modules:
    # torch's CUDA wheels bring triton, whose bundled LLVM segfaults the
    # process when imported after TensorFlow (seen with torch 2.14.1 and
    # TF 2.21; dataset builders have TF loaded). torchvision imports it only
    # to probe for GPU kernels, which CPU inference never uses; None in
    # sys.modules makes that import fail cleanly instead.
    sys.modules['triton'] = None
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise base.TeacherSetupError(
        f'The maskrcnn teacher needs torchvision ({e}); install it with '
        f'{INSTALL_HINT}, or use teacher selfie, tflite or files.') from e
  return torch, torchvision


def paint_instances(masks: np.ndarray, labels: np.ndarray,
                    scores: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
  """Paints instance masks into one class map, higher scores on top.

  Args:
    masks: bool [N, h, w] instance masks.
    labels: int [N] class ids.
    scores: float [N] confidences.
    hw: (h, w) of the map (used when N = 0).

  Returns:
    uint8 [h, w] class ids, 0 where no instance is.
  """
  out = np.zeros(hw, np.uint8)
  # Stable sort: equal scores keep the model's order, the later one on top.
  for i in np.argsort(scores, kind='stable'):
    out[masks[i]] = labels[i]
  return out


class MaskRCNNTeacher(base.Teacher):
  """COCO class maps from torchvision's Mask R-CNN (CPU)."""

  def __init__(self, weights_path: str,
               arch: str = 'maskrcnn_resnet50_fpn',
               score_threshold: float = 0.5, mask_threshold: float = 0.5,
               min_size: int = 800, num_threads: Optional[int] = None):
    """Builds the model and loads the weights.

    Args:
      weights_path: A state_dict saved with torch.save (e.g. torchvision's
        COCO checkpoint for `arch`).
      arch: One of `ARCHITECTURES`.
      score_threshold: Instances scoring below it are ignored.
      mask_threshold: Mask probability above which a pixel is the instance's.
      min_size: The short side the model resizes frames to (torchvision's
        default 800; smaller is faster and coarser).
      num_threads: torch CPU threads (None: torch's default).

    Raises:
      base.TeacherSetupError: If torchvision is missing, the file is missing
        or the weights do not fit the architecture.
    """
    for name, value in (('score_threshold', score_threshold),
                        ('mask_threshold', mask_threshold)):
      if not 0.0 <= value < 1.0:
        raise base.TeacherSetupError(f'{name} must be in [0, 1), got '
                                     f'{value}.')
    if arch not in ARCHITECTURES:
      raise base.TeacherSetupError(f'Unknown maskrcnn arch {arch!r}; valid: '
                                   f'{", ".join(ARCHITECTURES)}.')
    weights_path = os.path.expanduser(weights_path)
    if not user_paths.is_file(weights_path):
      raise base.TeacherSetupError(
          f'Mask R-CNN weights file {weights_path} does not exist; download '
          f"torchvision's COCO weights for {arch} and pass their path as "
          'teacher_options.weights_path.')
    torch, torchvision = import_torch()
    self._torch = torch
    if num_threads:
      torch.set_num_threads(num_threads)
    build = getattr(torchvision.models.detection, arch)
    # No weights argument: nothing is fetched; the user's file is loaded.
    self._model = build(weights=None, weights_backbone=None,
                        num_classes=len(CLASS_NAMES), min_size=min_size)
    try:
      state = torch.load(user_paths.local_file(weights_path),
                         map_location='cpu', weights_only=True)
      self._model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError, KeyError, EOFError,
            pickle.UnpicklingError) as e:
      lines = str(e).strip().splitlines()
      raise base.TeacherSetupError(
          f'{weights_path} is not a {arch} COCO state_dict: '
          f'{lines[0] if lines else type(e).__name__}') from e
    self._model.eval()
    self._score_threshold = score_threshold
    self._mask_threshold = mask_threshold

  @property
  def class_names(self) -> Tuple[str, ...]:
    return CLASS_NAMES

  def segment(self, frames: np.ndarray,
              source: Optional[base.FrameSource] = None) -> np.ndarray:
    """Class maps at the frames' own size."""
    del source  # An image segmenter needs only the pixels.
    torch = self._torch
    out = []
    with torch.inference_mode():
      for frame in frames:
        image = torch.from_numpy(frame).permute(2, 0, 1).float() / 255
        pred = self._model([image])[0]
        keep = pred['scores'] >= self._score_threshold
        masks = (pred['masks'][keep, 0] > self._mask_threshold).numpy()
        out.append(paint_instances(masks, pred['labels'][keep].numpy(),
                                   pred['scores'][keep].numpy(),
                                   frame.shape[:2]))
    return np.stack(out)
