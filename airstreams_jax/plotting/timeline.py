"""A video's labels over time: predict's per-window answers as a picture.

One band per class; each window is a bar on its class's band where that
class is the window's top label, as dark as its score is high. Overlapping
or side-by-side windows read as a timeline of the top label.
"""

from typing import Sequence, Tuple

import numpy as np
from PIL import Image
from PIL import ImageDraw

from airstreams_jax.plotting import figures
from airstreams_jax.plotting import images

_LEFT = 150  # Class names.
_TOP = 36  # Title.
_BAND = 22
_BOTTOM = 28  # Time axis.


def timeline_figure(windows: Sequence[Tuple[float, float, np.ndarray]],
                    class_names: Sequence[str], title: str,
                    width: int = 900) -> Image.Image:
  """windows: (start seconds, end seconds, scores [C]) of each window."""
  if not windows:
    raise ValueError('A timeline needs at least one window.')
  end = max(w[1] for w in windows)
  start = min(w[0] for w in windows)
  span = max(end - start, 1e-6)
  plot = width - _LEFT - 10
  height = _TOP + _BAND * len(class_names) + _BOTTOM
  image = Image.new('RGB', (width, height), 'white')
  draw = ImageDraw.Draw(image)
  draw.text((6, 6), title, fill=(20, 20, 20), font=figures.font(14))
  small = figures.font(11)
  colours = images.segmentation_to_rgb(np.arange(1, len(class_names) + 1))
  for c, name in enumerate(class_names):
    top = _TOP + c * _BAND
    draw.text((6, top + 4), name[:22], fill=(20, 20, 20), font=small)
    draw.rectangle([_LEFT, top, _LEFT + plot, top + _BAND - 2],
                   fill=(245, 245, 245))
  for w_start, w_end, scores in windows:
    c = int(np.argmax(scores))
    # Paler for a lower score: white at 0, the class colour at 1.
    s = float(scores[c])
    colour = tuple(int(255 - s * (255 - v)) for v in colours[c])
    x0 = _LEFT + plot * (w_start - start) / span
    x1 = _LEFT + plot * (w_end - start) / span
    top = _TOP + c * _BAND
    draw.rectangle([x0, top, max(x1 - 1, x0), top + _BAND - 2], fill=colour)
  axis = _TOP + _BAND * len(class_names) + 4
  for k in range(6):
    t = start + span * k / 5
    x = _LEFT + plot * k / 5
    draw.line([x, axis, x, axis + 4], fill=(90, 90, 90))
    label = f'{t:.0f} s' if span >= 10 else f'{t:.1f} s'
    # The last label ends at the axis' end rather than past the image.
    draw.text((min(x - 10, width - 8 - 7 * len(label)), axis + 6), label,
              fill=(90, 90, 90), font=small)
  return image
