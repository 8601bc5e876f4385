"""The figure files: layout sizes, flow colours on a clip with known motion,
Figure 5 from an evolution's history, one-line errors.

The figures of a trained run (the CLI's path) are drawn at the end of
tests/test_train.py's end-to-end test, on its smoke run.
"""

import colorsys
import json

import jax
import numpy as np
import pytest

from airstreams_jax import errors
from airstreams_jax.evolution import figure as evolution_figure
from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.models import rep_flow
from airstreams_jax.plotting import figures
from airstreams_jax.visualize import run_figures

SIZE = 32
PANEL = 64


def _moving_blob(dx: int, dy: int, num_frames: int = 4) -> np.ndarray:
  """A bright Gaussian blob moving (dx, dy) pixels per frame on a dark
  background: uint8 [T, S, S, 3]."""
  rows, cols = np.mgrid[0:SIZE, 0:SIZE]
  frames = [30 + 200 * np.exp(-((rows - 15.5 - t * dy)**2 +
                                (cols - 15.5 - t * dx)**2) / (2 * 4.0**2))
            for t in range(num_frames)]
  frames = np.round(np.stack(frames)).astype(np.uint8)
  return np.repeat(frames[..., None], 3, axis=-1)


def _hues(panel: np.ndarray) -> np.ndarray:
  """Hue of the clearly coloured pixels of an RGB panel."""
  rgb = panel.reshape(-1, 3) / 255.0
  hsv = np.array([colorsys.rgb_to_hsv(*p) for p in rgb])
  return hsv[hsv[:, 1] > 0.4, 0]


def _circular_mean(hues):
  angle = 2 * np.pi * hues
  return (np.arctan2(np.sin(angle).mean(), np.cos(angle).mean()) /
          (2 * np.pi)) % 1.0


def _circular_distance(a, b):
  d = np.abs(a - b) % 1.0
  return np.minimum(d, 1.0 - d)


@pytest.mark.parametrize('dx,dy,hue', [(1, 0, 0.0), (0, 1, 0.25),
                                       (-1, 0, 0.5)])
def test_flow_figure_colours_follow_the_known_motion(dx, dy, hue):
  """The TV-L1 flow layer (its initial, classical constants) on a blob
  moving right / down / left; in the figure's 'learned flow' panel the
  coloured pixels have the colour wheel's hue of that direction (right red
  0, down 1/4, left 1/2)."""
  clip = _moving_blob(dx, dy)
  layer = rep_flow.RepresentationFlow(num_iter=20)
  variables = layer.init(jax.random.PRNGKey(0), clip[None].astype(np.float32))
  flow = np.asarray(rep_flow.mean_flow(
      layer.apply(variables, clip[None].astype(np.float32))))[0]
  t = 1
  image = figures.flow_figure([{'frames': clip[t:t + 2], 'flow': flow[t]}],
                              ['clip 0'], panel_size=PANEL)
  panel_left = figures.LABEL_WIDTH + 2 * (PANEL + figures.GAP)
  panel = np.asarray(image)[figures.TITLE_HEIGHT:figures.TITLE_HEIGHT + PANEL,
                            panel_left:panel_left + PANEL]
  hues = _hues(panel)
  assert hues.size > 500  # The moving blob is coloured ...
  # ... in the direction's hue (hue is an angle: its circular mean).
  mean = _circular_mean(hues)
  assert _circular_distance(mean, hue) < 0.03, mean
  # The far corner barely moves: pale (TV-L1 spreads some flow outwards).
  corner = panel[:4, :4].reshape(-1, 3) / 255.0
  assert max(colorsys.rgb_to_hsv(*p)[1] for p in corner) < 0.3


def test_figure_sizes_follow_the_layout():
  rng = np.random.default_rng(1)
  frames = rng.integers(0, 255, (2, SIZE, SIZE, 3), dtype=np.uint8)
  flow = rng.normal(size=(SIZE, SIZE, 2))
  clips = [{'frames': frames, 'flow': flow, 'true_flow': flow}] * 3
  image = figures.flow_figure(clips, ['a', 'b', 'c'], panel_size=PANEL)
  assert image.size == (
      figures.LABEL_WIDTH + 4 * (PANEL + figures.GAP) + figures.LEGEND_WIDTH,
      figures.TITLE_HEIGHT + 3 * (PANEL + figures.GAP))

  ids = rng.integers(0, 4, (SIZE, SIZE))
  seg = [{'frame': frames[0], 'segmentation': ids, 'teacher': ids}]
  image = figures.segmentation_figure(seg, ['a'], ['bg', 'x', 'y', 'z'],
                                      panel_size=PANEL)
  legend = figures.class_legend(['bg', 'x', 'y', 'z'])
  assert image.size == (
      figures.LABEL_WIDTH + 3 * (PANEL + figures.GAP) + figures.LEGEND_WIDTH,
      max(figures.TITLE_HEIGHT + PANEL + figures.GAP,
          figures.TITLE_HEIGHT + legend.height))
  # The legend shows each class in the colour the panels use.
  pixels = np.asarray(image)
  swatch = pixels[figures.TITLE_HEIGHT + 2 + 20 * 2 + 7,
                  image.width - figures.LEGEND_WIDTH + 8 + 7]
  panel_colours = np.asarray(image)[
      figures.TITLE_HEIGHT:figures.TITLE_HEIGHT + PANEL,
      figures.LABEL_WIDTH + PANEL + figures.GAP:][:, :PANEL].reshape(-1, 3)
  assert (panel_colours == swatch).all(-1).any()


def test_confusion_figure_writes_counts_and_rejects_a_mismatch():
  matrix = np.array([[5, 1], [0, 4]])
  image = figures.confusion_figure(matrix, ['walk', 'run'], cell=40)
  pixels = np.asarray(image)
  assert pixels.std() > 10
  # The diagonal cells are dark (recall 5/6 and 1), the empty one white.
  with pytest.raises(ValueError, match='a \\(2, 2\\) matrix for 3 class'):
    figures.confusion_figure(matrix, ['a', 'b', 'c'])


def test_evolution_figure_from_a_history(tmp_path):
  names = ('rgb', 'flow', 'semantic', 'merged', 'interm')
  with open(tmp_path / candidates_lib.HISTORY_FILE, 'w') as f:
    for i, fitness in enumerate([0.2, 0.5, None, 0.4]):
      weights = dict(zip(names, np.linspace(0.1, 0.9, 5) * (i + 1) / 4))
      f.write(json.dumps({'id': i, 'fitness': fitness,
                          'weights': weights}) + '\n')
  written = run_figures.write_figures(str(tmp_path), str(tmp_path / 'out'))
  image = np.asarray(__import__('PIL.Image').Image.open(
      written['evolution']))
  assert image.shape == (evolution_figure.HEIGHT, evolution_figure.WIDTH, 3)
  # The fittest weighting (id 1: its 'interm' bar is 0.9 * 2/4 = 0.45 high)
  # is drawn first.
  left = evolution_figure.bar_left(0, 4, 5) + 2
  column = image[:, left]
  bar = (column == evolution_figure.TERM_COLOURS[4]).all(-1)
  assert abs(bar.sum() - 0.45 * evolution_figure.PLOT_HEIGHT) <= 1


def test_errors_name_the_workdir(tmp_path):
  with pytest.raises(errors.ConfigError, match='does not exist'):
    run_figures.write_figures(str(tmp_path / 'nowhere'), str(tmp_path))
  (tmp_path / candidates_lib.HISTORY_FILE).write_text('')
  with pytest.raises(errors.ConfigError, match='not evaluated any'):
    run_figures.write_figures(str(tmp_path), str(tmp_path / 'out'))
  (tmp_path / 'run').mkdir()
  with pytest.raises(errors.ConfigError, match='config.json is missing'):
    run_figures.write_figures(str(tmp_path / 'run'), str(tmp_path / 'o2'))
