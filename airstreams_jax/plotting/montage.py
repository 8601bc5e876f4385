"""Frames with masks tinted over them, captioned and tiled: the teacher
montage (`tools/real_video_figures.py`, `experiments/teacher_montage.py`).

Only what is drawn: which teacher made a mask, and how, is the caller's.
"""

from typing import Sequence

import numpy as np
from PIL import Image
from PIL import ImageDraw

ROI_COLOUR = (255, 230, 0)
# Panels are drawn this tall (frames are scaled, keeping the aspect).
PANEL_HEIGHT = 240
_CAPTION = 14


def overlay(frame: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
  """The frame with the mask (any size) tinted over it."""
  h, w = frame.shape[:2]
  big = np.asarray(Image.fromarray(mask * 255).resize(
      (w, h), Image.Resampling.NEAREST)) > 127
  out = frame.astype(np.float32)
  out[big] = 0.45 * out[big] + 0.55 * np.asarray(colour, np.float32)
  return out.astype(np.uint8)


def corners(roi) -> np.ndarray:
  """A rotated rectangle's 4 corners [4, 2] (x, y) in pixels; `roi` has
  cx, cy, width, height and rotation (radians), as the pose teacher's
  regions of interest."""
  c, s = np.cos(roi.rotation), np.sin(roi.rotation)
  half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * (
      roi.width / 2, roi.height / 2)
  rot = np.array([[c, -s], [s, c]])
  return half @ rot.T + (roi.cx, roi.cy)


def panel(image: np.ndarray, caption: str, rois=(),
          height: int = PANEL_HEIGHT) -> Image.Image:
  """A captioned panel, `height` tall, with regions of interest outlined."""
  h, w = image.shape[:2]
  pw = max(1, round(w * height / h))
  img = Image.fromarray(image).resize((pw, height),
                                      Image.Resampling.BILINEAR)
  draw = ImageDraw.Draw(img)
  for roi in rois:
    draw.polygon([tuple(p) for p in corners(roi) * (height / h)],
                 outline=ROI_COLOUR)
  out = Image.new('RGB', (pw, height + _CAPTION), (0, 0, 0))
  out.paste(img, (0, _CAPTION))
  ImageDraw.Draw(out).text((2, 1), caption, fill=(255, 255, 255))
  return out


def montage(rows: Sequence[Sequence[Image.Image]]) -> Image.Image:
  """Stacks rows of panels, left to right and top to bottom."""
  width = max(sum(p.width for p in row) for row in rows)
  height = sum(max(p.height for p in row) for row in rows)
  out = Image.new('RGB', (width, height), (40, 40, 40))
  y = 0
  for row in rows:
    x = 0
    for p in row:
      out.paste(p, (x, y))
      x += p.width
    y += max(p.height for p in row)
  return out
