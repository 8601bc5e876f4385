"""The paper's Figure 5 as a PNG: the top-5 loss weightings and the search.

Left: one group of bars per weighting of the top 5 (fittest left), one bar
per loss term, as tall as its λ, coloured by term (legend above). Right: the
fitness of every evaluated weighting in evaluation order, and the best so
far. Drawn with Pillow (a dependency already), so an evolution writes it
beside `best_weights.json` with nothing extra installed.
"""

import io
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from PIL import ImageDraw

from airstreams_jax.plotting import figures

FIGURE_FILE = 'evolution_figure.png'
# One colour per loss term in `losses.LOSS_NAMES` order (rgb, flow, semantic,
# merged, interm).
TERM_COLOURS = ((214, 39, 40), (31, 119, 180), (44, 160, 44), (255, 127, 14),
                (148, 103, 189))
# Layout, in pixels (tests measure bars with these).
WIDTH, HEIGHT = 980, 380
PLOT_TOP, PLOT_HEIGHT = 70, 240  # The y range [0, 1] of the bar panel.
BAR_WIDTH, BAR_GAP, GROUP_GAP = 14, 3, 22
BARS_LEFT = 60
SWATCH = 12
FIT_LEFT, FIT_RIGHT = 650, 960
_AXIS = (60, 60, 60)
_GRID = (225, 225, 225)
_DOT = (150, 150, 150)
_BEST = (0, 0, 0)


def _y(value: float, low: float = 0.0, high: float = 1.0) -> int:
  """Pixel row of a value on the panels' shared vertical axis."""
  fraction = (value - low) / (high - low) if high > low else 0.5
  return PLOT_TOP + PLOT_HEIGHT - int(round(fraction * PLOT_HEIGHT))


def bar_left(rank: int, term: int, num_terms: int) -> int:
  """Left pixel column of a bar (rank and term from 0)."""
  group = num_terms * (BAR_WIDTH + BAR_GAP) - BAR_GAP + GROUP_GAP
  return BARS_LEFT + rank * group + term * (BAR_WIDTH + BAR_GAP)


def draw(top: Sequence[Tuple[int, float, Sequence[float]]],
         fitness: Sequence[Optional[float]], names: Sequence[str],
         metric: str = 'top1') -> Image.Image:
  """The figure.

  Args:
    top: (id, fitness, weights) of the fittest weightings, fittest first.
    fitness: every evaluated weighting's fitness in evaluation order (None or
      NaN for a failed proxy).
    names: the loss terms, in weights order.
    metric: what fitness is, for the axis label.
  """
  image = Image.new('RGB', (WIDTH, HEIGHT), 'white')
  d = ImageDraw.Draw(image)
  font, small = figures.font(13), figures.font(11)
  num_terms = len(names)
  right = bar_left(len(top) - 1, num_terms - 1, num_terms) + BAR_WIDTH + 8 if (
      top) else BARS_LEFT + 100

  d.text((BARS_LEFT, 8), f'Top {len(top)} loss weightings (fittest left): '
         'the weight of each loss term',
         fill=_BEST, font=font)
  x = BARS_LEFT
  for t, name in enumerate(names):  # Legend.
    d.rectangle([x, 32, x + SWATCH - 1, 32 + SWATCH - 1],
                fill=TERM_COLOURS[t % len(TERM_COLOURS)])
    # ASCII only: Pillow's built-in font has no Greek letters.
    d.text((x + SWATCH + 4, 31), name, fill=_BEST, font=small)
    x += SWATCH + 14 + int(d.textlength(name, font=small))
  for level in (0.0, 0.25, 0.5, 0.75, 1.0):
    y = _y(level)
    d.line([BARS_LEFT - 4, y, right, y], fill=_GRID if level else _AXIS)
    d.text((BARS_LEFT - 34, y - 7), f'{level:.2f}', fill=_AXIS, font=small)
  for rank, (candidate_id, value, weights) in enumerate(top):
    for t, weight in enumerate(weights):
      height = int(round(float(np.clip(weight, 0.0, 1.0)) * PLOT_HEIGHT))
      if height:
        left = bar_left(rank, t, num_terms)
        d.rectangle([left, _y(0.0) - height, left + BAR_WIDTH - 1,
                     _y(0.0) - 1], fill=TERM_COLOURS[t % len(TERM_COLOURS)])
    left = bar_left(rank, 0, num_terms)
    d.text((left, _y(0.0) + 6), f'#{rank + 1} (id {candidate_id})',
           fill=_BEST, font=small)
    d.text((left, _y(0.0) + 20), f'{metric} = {value:.3f}', fill=_AXIS,
           font=small)

  _draw_fitness(d, fitness, metric, font, small)
  return image


def _draw_fitness(d, fitness, metric, font, small) -> None:
  values = np.asarray([np.nan if f is None else f for f in fitness], float)
  d.text((FIT_LEFT, 8), f'{metric} of each evaluated weighting',
         fill=_BEST, font=font)
  d.text((FIT_LEFT, 31), 'dots: each evaluation; line: best so far',
         fill=_AXIS, font=small)
  finite = values[np.isfinite(values)]
  low, high = (float(finite.min()), float(finite.max())) if finite.size else (
      0.0, 1.0)
  pad = max(0.02, 0.1 * (high - low))
  low, high = low - pad, high + pad
  d.line([FIT_LEFT, _y(low, low, high), FIT_RIGHT, _y(low, low, high)],
         fill=_AXIS)
  d.line([FIT_LEFT, PLOT_TOP, FIT_LEFT, PLOT_TOP + PLOT_HEIGHT], fill=_AXIS)
  for level in np.linspace(low, high, 5):
    d.text((FIT_LEFT - 40, _y(level, low, high) - 7), f'{level:.3f}',
           fill=_AXIS, font=small)
  n = max(len(values), 1)
  def column(i):
    return FIT_LEFT + 6 + int(round(i * (FIT_RIGHT - FIT_LEFT - 12) /
                                    max(n - 1, 1)))
  best: List[Tuple[int, int]] = []
  best_value = -np.inf
  for i, value in enumerate(values):
    if np.isfinite(value):
      x, y = column(i), _y(value, low, high)
      d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=_DOT)
      best_value = max(best_value, value)
    if np.isfinite(best_value):
      best.append((column(i), _y(best_value, low, high)))
  if len(best) > 1:
    d.line(best, fill=_BEST, width=2)
  d.text((FIT_LEFT, PLOT_TOP + PLOT_HEIGHT + 6),
         f'evaluation (1 .. {len(values)})', fill=_AXIS, font=small)


def png_bytes(top, fitness, names, metric: str = 'top1') -> bytes:
  """The figure of `draw`, encoded as PNG."""
  buffer = io.BytesIO()
  draw(top, fitness, names, metric).save(buffer, format='PNG')
  return buffer.getvalue()
