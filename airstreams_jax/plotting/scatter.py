"""Scatter plots with error bars in panels, drawn with Pillow.

For the proxy-fidelity measurement (tools/fidelity.py): one panel per proxy
length, proxy fitness on x against full-training top-1 on y, each point
with its ± SE bars on both axes and its label. Pillow, like the other
figures, so it draws with nothing extra installed.
"""

import dataclasses
import io
import math
from typing import Optional, Sequence, Tuple

from PIL import Image
from PIL import ImageDraw

from airstreams_jax.plotting import figures

# Layout, in pixels (tests find the points with `Panel.pixel`).
PANEL_WIDTH, PANEL_HEIGHT = 360, 300  # The plot area of one panel.
LEFT, TOP, BOTTOM, GAP = 64, 64, 48, 40
_AXIS = (60, 60, 60)
_GRID = (225, 225, 225)
_BAR = (150, 150, 150)
_DOT = (31, 119, 180)


@dataclasses.dataclass(frozen=True)
class Point:
  x: float
  y: float
  x_err: Optional[float] = None
  y_err: Optional[float] = None
  label: str = ''


def _range(values: Sequence[float]) -> Tuple[float, float]:
  finite = [v for v in values if math.isfinite(v)]
  if not finite:
    return 0.0, 1.0
  low, high = min(finite), max(finite)
  pad = max(0.01, 0.08 * (high - low))
  return low - pad, high + pad


@dataclasses.dataclass(frozen=True)
class Panel:
  """One panel's points and axes; `index` is its place, left to right."""
  title: str
  points: Sequence[Point]
  index: int = 0

  def x_range(self) -> Tuple[float, float]:
    return _range([p.x + s * (p.x_err or 0.0) for p in self.points
                   for s in (-1, 1)])

  def y_range(self) -> Tuple[float, float]:
    return _range([p.y + s * (p.y_err or 0.0) for p in self.points
                   for s in (-1, 1)])

  def left(self) -> int:
    return LEFT + self.index * (PANEL_WIDTH + LEFT + GAP)

  def pixel(self, x: float, y: float) -> Tuple[int, int]:
    """Where the value (x, y) is drawn."""
    (x0, x1), (y0, y1) = self.x_range(), self.y_range()
    return (self.left() + int(round((x - x0) / (x1 - x0) * PANEL_WIDTH)),
            TOP + PANEL_HEIGHT - int(round((y - y0) / (y1 - y0) *
                                           PANEL_HEIGHT)))


def size(num_panels: int) -> Tuple[int, int]:
  return (LEFT + num_panels * (PANEL_WIDTH + LEFT + GAP) - LEFT,
          TOP + PANEL_HEIGHT + BOTTOM)


def draw(panels: Sequence[Panel], x_label: str, y_label: str,
         title: str) -> Image.Image:
  image = Image.new('RGB', size(len(panels)), 'white')
  d = ImageDraw.Draw(image)
  font, small = figures.font(13), figures.font(10)
  d.text((LEFT, 8), title, fill=(0, 0, 0), font=font)
  for panel in panels:
    _draw_panel(d, panel, x_label, y_label, font, small)
  return image


def _draw_panel(d, panel: Panel, x_label, y_label, font, small) -> None:
  left, bottom = panel.left(), TOP + PANEL_HEIGHT
  (x0, x1), (y0, y1) = panel.x_range(), panel.y_range()
  d.text((left, TOP - 24), panel.title, fill=(0, 0, 0), font=font)
  for i in range(5):  # Grid and tick values.
    x = x0 + (x1 - x0) * i / 4
    y = y0 + (y1 - y0) * i / 4
    px, _ = panel.pixel(x, y0)
    _, py = panel.pixel(x0, y)
    d.line([px, TOP, px, bottom], fill=_GRID)
    d.line([left, py, left + PANEL_WIDTH, py], fill=_GRID)
    d.text((px - 14, bottom + 4), f'{x:.3f}', fill=_AXIS, font=small)
    d.text((left - 40, py - 6), f'{y:.3f}', fill=_AXIS, font=small)
  d.rectangle([left, TOP, left + PANEL_WIDTH, bottom], outline=_AXIS)
  d.text((left + PANEL_WIDTH // 2 - 60, bottom + 20), x_label, fill=_AXIS,
         font=small)
  d.text((left - 60, TOP - 40), y_label, fill=_AXIS, font=small)
  for p in panel.points:
    if not (math.isfinite(p.x) and math.isfinite(p.y)):
      continue
    cx, cy = panel.pixel(p.x, p.y)
    if p.x_err:
      d.line([panel.pixel(p.x - p.x_err, p.y), panel.pixel(p.x + p.x_err,
                                                           p.y)], fill=_BAR)
    if p.y_err:
      d.line([panel.pixel(p.x, p.y - p.y_err), panel.pixel(p.x,
                                                           p.y + p.y_err)],
             fill=_BAR)
    d.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=_DOT)
    d.text((cx + 5, cy - 12), p.label, fill=_AXIS, font=small)


def png_bytes(panels: Sequence[Panel], x_label: str, y_label: str,
              title: str) -> bytes:
  buffer = io.BytesIO()
  draw(panels, x_label, y_label, title).save(buffer, format='PNG')
  return buffer.getvalue()
