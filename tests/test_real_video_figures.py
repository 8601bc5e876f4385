"""python -m airstreams_jax.tools.real_video_figures: its drawings (the
timeline, the teacher montage) on known inputs, its one-line refusals, and
the flow comparison on real frame pairs where ../shared/realdata exists.
Nothing drawn is kept (tmp_path)."""

import os

import numpy as np
from PIL import Image
import pytest

from airstreams_jax import errors
from airstreams_jax.plotting import images
from airstreams_jax.plotting import montage
from airstreams_jax.plotting import timeline
from airstreams_jax.tools import real_video_figures

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REALDATA = os.path.normpath(os.path.join(_ROOT, '..', 'shared', 'realdata'))


def test_the_timeline_puts_each_window_on_its_top_label():
  names = ['a', 'b', 'c']
  windows = [(0.0, 2.0, np.array([1.0, 0.0, 0.0])),
             (2.0, 4.0, np.array([0.0, 0.0, 1.0]))]
  image = np.asarray(timeline.timeline_figure(windows, names, 'title'))
  colours = images.segmentation_to_rgb(np.arange(1, 4))
  band = lambda c: timeline._TOP + c * timeline._BAND + timeline._BAND // 2
  quarter = timeline._LEFT + (image.shape[1] - timeline._LEFT - 10) // 4
  three_quarters = quarter + (image.shape[1] - timeline._LEFT - 10) // 2
  # Certain answers: the full class colour; nothing on the other bands.
  np.testing.assert_array_equal(image[band(0), quarter], colours[0])
  np.testing.assert_array_equal(image[band(2), three_quarters], colours[2])
  assert (image[band(1), quarter] == 245).all()
  assert (image[band(0), three_quarters] == 245).all()


def test_the_teacher_montage_shows_every_teacher_on_the_same_frames():
  frames = np.zeros((10, 24, 32, 3), np.uint8)
  masks = {'selfie': np.zeros((10, 12, 16), np.uint8),
           'pose': np.ones((10, 12, 16), np.uint8)}
  image = real_video_figures.teacher_montage(
      frames, np.arange(10), masks, {}, shown=[0, 3, 6, 9, 2], columns=4)
  panel = montage.panel(frames[0], '')
  # Two rows of frames (4 + 1), each drawn once per teacher.
  assert image.size == (4 * panel.width, 4 * panel.height)
  pixels = np.asarray(image)
  inside = montage._CAPTION + panel.height // 2  # Below the caption.
  # Row 1 (pose) is tinted everywhere, row 0 (selfie) nowhere.
  assert tuple(pixels[panel.height + inside, 10]) == tuple(
      int(0.55 * c) for c in real_video_figures.TEACHER_COLOURS['pose'])
  assert tuple(pixels[inside, 10]) == (0, 0, 0)


def test_no_clips_or_an_out_inside_the_repository_is_one_line(tmp_path):
  with pytest.raises(errors.ConfigError, match='no actions/ folder'):
    real_video_figures.check_paths(str(tmp_path), str(tmp_path / 'out'))
  (tmp_path / 'actions').mkdir()
  with pytest.raises(errors.ConfigError, match='inside the repository'):
    real_video_figures.check_paths(str(tmp_path),
                                   os.path.join(_ROOT, 'figures'))
  real_video_figures.check_paths(str(tmp_path), str(tmp_path / 'out'))


def test_the_flow_comparison_of_real_pairs(tmp_path):
  """One held-out clip per class: the picture is drawn, and on its pairs
  the pyramid is nearer OpenCV's defaults than the single scale (the
  figures docs/real_video.md reports over 21 clips)."""
  if not os.path.isdir(REALDATA):
    pytest.skip(f'{REALDATA} is absent (the real clips live beside the '
                'repository, not in it)')
  pytest.importorskip('airstreams_jax.tools.opencv_flow')
  path, agreement = real_video_figures.draw_flow_comparison(REALDATA,
                                                           str(tmp_path))
  assert Image.open(path).size[0] > 4 * 160  # Frame, 3 flows, legend.
  single, pyramid = (agreement[name]
                     for name, _ in real_video_figures.FLOW_SETTINGS)
  assert pyramid['moving'] > 0.05  # Real motion to compare on.
  assert pyramid['epe'] < single['epe']
  assert pyramid['direction_45'] > single['direction_45']
