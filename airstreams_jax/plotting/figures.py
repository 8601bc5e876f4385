"""The paper's figures as images: learned flow (Figure 3), learned
segmentation (Figure 4) and the confusion matrix with class names.

Drawn with Pillow (already a dependency, so CI and a bare install draw them
too) from uint8 panels of `images`. Every figure is a grid of equal panels
(one row per clip) under a title band, with a legend column on the right;
the layout constants below give the exact size, which tests check.
"""

from typing import Mapping, Optional, Sequence

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from airstreams_jax.plotting import images

TITLE_HEIGHT = 56  # Title line and the column headings (two lines).
LABEL_WIDTH = 70  # 'clip N: class' text left of each row.
GAP = 4  # Between panels.
LEGEND_WIDTH = 150
WHEEL_SIZE = 96
_TEXT = (0, 0, 0)
_MUTED = (90, 90, 90)


def font(size: int):
  try:
    return ImageFont.load_default(size=size)
  except (TypeError, OSError):  # Pillow without FreeType: the bitmap font.
    return ImageFont.load_default()


def flow_wheel(size: int = WHEEL_SIZE) -> np.ndarray:
  """The colour key of `images.flow_to_rgb`: the colour of a flow vector
  pointing from the centre to each pixel, speed 1 at the rim; white outside.
  """
  centre = (size - 1) / 2
  rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
  flow = np.stack([cols - centre, rows - centre], -1) / centre
  wheel = images.flow_to_rgb(flow, max_magnitude=1.0)
  outside = np.hypot(flow[..., 0], flow[..., 1]) > 1.0
  wheel[outside] = 255
  return wheel


def _upscale(panel: np.ndarray, size: int) -> np.ndarray:
  """Nearest-neighbour resize of [h, w, 3] to [size, size*w/h, 3] (pixels
  stay visible as blocks: these clips are small)."""
  image = Image.fromarray(np.ascontiguousarray(panel, np.uint8))
  width = int(round(size * panel.shape[1] / panel.shape[0]))
  return np.asarray(image.resize((width, size), Image.NEAREST))


def panel_grid(rows: Sequence[Sequence[np.ndarray]],
               row_labels: Sequence[str], column_labels: Sequence[str],
               title: str, panel_size: int,
               legend: Optional[Image.Image] = None) -> Image.Image:
  """Panels [h, w, 3] in rows (each resized to `panel_size` high) with
  labels, a title and an optional legend image on the right."""
  strips = [[_upscale(p, panel_size) for p in row] for row in rows]
  panel_width = max(p.shape[1] for row in strips for p in row)
  num_columns = max(len(row) for row in strips)
  width = (LABEL_WIDTH + num_columns * (panel_width + GAP) +
           (LEGEND_WIDTH if legend is not None else 0))
  height = TITLE_HEIGHT + len(strips) * (panel_size + GAP)
  if legend is not None:
    height = max(height, TITLE_HEIGHT + legend.height)
  image = Image.new('RGB', (width, height), 'white')
  draw = ImageDraw.Draw(image)
  draw.text((6, 6), title, fill=_TEXT, font=font(14))
  small = font(11)
  for c, label in enumerate(column_labels):
    draw.multiline_text((LABEL_WIDTH + c * (panel_width + GAP),
                         TITLE_HEIGHT - 30), label, fill=_MUTED, font=small,
                        spacing=2)
  for r, (row, label) in enumerate(zip(strips, row_labels)):
    top = TITLE_HEIGHT + r * (panel_size + GAP)
    for line, text in enumerate(label.split('\n')):
      draw.text((6, top + panel_size // 2 - 8 + 13 * line), text, fill=_TEXT,
                font=small)
    for c, panel in enumerate(row):
      image.paste(Image.fromarray(panel),
                  (LABEL_WIDTH + c * (panel_width + GAP), top))
  if legend is not None:
    image.paste(legend, (width - LEGEND_WIDTH + 8, TITLE_HEIGHT))
  return image


def wheel_legend() -> Image.Image:
  """The flow colour wheel with its reading."""
  image = Image.new('RGB', (LEGEND_WIDTH - 8, WHEEL_SIZE + 60), 'white')
  image.paste(Image.fromarray(flow_wheel()), (0, 0))
  draw = ImageDraw.Draw(image)
  small = font(11)
  for i, line in enumerate(('hue: direction', 'saturation: speed',
                            'white: still')):
    draw.text((0, WHEEL_SIZE + 6 + 14 * i), line, fill=_MUTED, font=small)
  return image


def class_legend(class_names: Sequence[str]) -> Image.Image:
  """A colour swatch and the name of each mask class, in id order."""
  swatch = 14
  image = Image.new('RGB', (LEGEND_WIDTH - 8, 6 + len(class_names) * 20),
                    'white')
  draw = ImageDraw.Draw(image)
  colours = images.segmentation_to_rgb(np.arange(len(class_names)))
  for i, name in enumerate(class_names):
    y = 2 + 20 * i
    draw.rectangle([0, y, swatch - 1, y + swatch - 1],
                   fill=tuple(int(v) for v in colours[i]), outline=_MUTED)
    draw.text((swatch + 6, y), name, fill=_TEXT, font=font(11))
  return image


def flow_figure(clips: Sequence[Mapping[str, np.ndarray]],
                row_labels: Sequence[str], panel_size: int = 96
                ) -> Image.Image:
  """Figure 3: per clip, two frames, the learned flow between them and the
  true flow where the data knows it.

  Args:
    clips: dicts with 'frames' uint8 [2, H, W, 3] (the pair the flow is
      between), 'flow' [h, w, 2] (u along the width, v down the rows) and
      optionally 'true_flow' [H, W, 2].
    row_labels: one per clip.
    panel_size: pixel height of each panel.
  """
  rows = []
  has_truth = all('true_flow' in c for c in clips)
  for clip in clips:
    row = [clip['frames'][0], clip['frames'][1],
           images.flow_to_rgb(clip['flow'])]
    if has_truth:
      truth = clip['true_flow']
      row.append(images.flow_to_rgb(truth, np.abs(truth).max() or 1.0))
    rows.append(row)
  columns = ['frame t', 'frame t+1', 'learned flow'] + (
      ['true flow'] if has_truth else [])
  return panel_grid(rows, row_labels, columns,
                    'Learned representation flow (colour wheel)',
                    panel_size, wheel_legend())


def segmentation_figure(clips: Sequence[Mapping[str, np.ndarray]],
                        row_labels: Sequence[str],
                        class_names: Sequence[str], panel_size: int = 96
                        ) -> Image.Image:
  """Figure 4: per clip, a frame, the learned segmentation (argmax of the
  logits), the teacher's mask and the true mask where known.

  Args:
    clips: dicts with 'frame' uint8 [H, W, 3], 'segmentation' and 'teacher'
      int [h, w] class ids, optionally 'truth' [h, w].
    row_labels: one per clip.
    class_names: mask class names, id order (background first).
    panel_size: pixel height of each panel.
  """
  has_truth = all('truth' in c for c in clips)
  rows = []
  for clip in clips:
    row = [clip['frame'], images.segmentation_to_rgb(clip['segmentation']),
           images.segmentation_to_rgb(clip['teacher'])]
    if has_truth:
      row.append(images.segmentation_to_rgb(clip['truth']))
    rows.append(row)
  columns = ['frame', 'learned\nsegmentation', 'teacher'] + (
      ['true masks'] if has_truth else [])
  return panel_grid(rows, row_labels, columns,
                    'Learned segmentation against the teacher', panel_size,
                    class_legend(class_names))


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str],
                     cell: int = 0) -> Image.Image:
  """The confusion matrix with class names: rows true, columns predicted,
  shaded by recall, each cell's count written in it."""
  matrix = np.asarray(matrix, np.int64)
  n = len(class_names)
  if matrix.shape != (n, n):
    raise ValueError(f'a {matrix.shape} matrix for {n} class names.')
  cell = cell or int(np.clip(560 // max(n, 1), 12, 48))
  grid = images.confusion_matrix_image(matrix, cell)
  small = font(max(8, min(11, cell // 2)))
  probe = ImageDraw.Draw(Image.new('RGB', (1, 1)))
  name_width = int(max(probe.textlength(c, font=small) for c in class_names))
  left, top = name_width + 30, name_width + 50
  title = ('Confusion matrix (rows: true class, columns: predicted; shade: '
           'recall)')
  width = max(left + n * cell + 20,
              12 + int(probe.textlength(title, font=font(13))))
  image = Image.new('RGB', (width, top + n * cell + 20), 'white')
  image.paste(Image.fromarray(grid), (left, top))
  draw = ImageDraw.Draw(image)
  draw.text((6, 6), title, fill=_TEXT, font=font(13))
  recall = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
  for i, name in enumerate(class_names):
    y = top + i * cell + cell // 2 - 6
    draw.text((left - 6 - probe.textlength(name, font=small), y), name,
              fill=_TEXT, font=small)
    # Column names, written upwards.
    label = Image.new('RGB', (name_width + 4, 14), 'white')
    ImageDraw.Draw(label).text((0, 0), name, fill=_TEXT, font=small)
    label = label.rotate(90, expand=True)
    image.paste(label, (left + i * cell + cell // 2 - 7,
                        top - 6 - label.height))
    if cell >= 20:
      for j in range(n):
        if matrix[i, j]:
          colour = 'white' if recall[i, j] > 0.5 else _TEXT
          text = str(matrix[i, j])
          draw.text((left + j * cell + (cell - probe.textlength(
              text, font=small)) / 2, top + i * cell + cell // 2 - 6), text,
                    fill=colour, font=small)
  return image
