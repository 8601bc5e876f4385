"""What a real-dataset listing yields: one entry per video, before decoding.

The dataset-specific modules (video_folder, hmdb51, charades, ...) turn a
user's local copy into `VideoEntry`s; the shared video builder decodes them,
runs the teacher and writes the tfds examples. The stored feature contract
that `data/pipeline.py` reads:

  'video':  encoded frames [T, H, W, 3] (tfds.features.Video)
  'masks':  uint8 teacher class ids [T, h, w] (h, w may be smaller than H, W)
  'label':  ClassLabel (single-label datasets), or
  'frame_labels': uint8 multi-hot [T, num_classes] (multi-label datasets:
            the actions whose intervals cover each stored frame)
  'video_id': the entry's id (text)
"""

import dataclasses
from typing import Tuple


@dataclasses.dataclass(frozen=True)
class ActionInterval:
  """A multi-label action: class index and its span in seconds."""
  label: int
  start: float
  end: float


@dataclasses.dataclass(frozen=True)
class VideoEntry:
  """One video of a split.

  Attributes:
    video_id: A unique id within the dataset (e.g. the file stem).
    path: Absolute path of the video file.
    label: The class index (single-label datasets); -1 when multi-label.
    intervals: The actions and their spans (multi-label datasets).
  """
  video_id: str
  path: str
  label: int = -1
  intervals: Tuple[ActionInterval, ...] = ()
