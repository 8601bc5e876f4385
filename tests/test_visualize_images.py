"""TensorBoard images: colours checked against colorsys and known answers."""

import colorsys

import numpy as np

from airstreams_jax.plotting import images


def test_hsv_to_rgb_matches_colorsys():
  rng = np.random.default_rng(0)
  hsv = rng.random((200, 3))
  ours = images.hsv_to_rgb(hsv[:, 0], hsv[:, 1], hsv[:, 2])
  reference = np.round(np.array([colorsys.hsv_to_rgb(*x) for x in hsv]) * 255)
  np.testing.assert_array_equal(ours, reference.astype(np.uint8))


def test_flow_colours_follow_direction_and_magnitude():
  # Right, down, left, up at full magnitude, and no motion.
  flow = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0],
                   [0.0, 0.0]])
  rgb = images.flow_to_rgb(flow)
  np.testing.assert_array_equal(rgb[0], [255, 0, 0])  # Hue 0: red.
  np.testing.assert_array_equal(rgb[2], [0, 255, 255])  # Hue 1/2: cyan.
  # Down (hue 1/4): yellow-green; up (hue 3/4): violet.
  np.testing.assert_array_equal(rgb[1], [128, 255, 0])
  np.testing.assert_array_equal(rgb[3], [128, 0, 255])
  np.testing.assert_array_equal(rgb[4], [255, 255, 255])  # Still: white.
  half = images.flow_to_rgb(np.array([[0.5, 0.0]]), max_magnitude=1.0)
  np.testing.assert_array_equal(half[0], [255, 128, 128])  # Half saturated.


def test_confusion_matrix_image_shows_recall_per_row():
  matrix = np.array([[8, 2], [0, 1]])  # Class 1 has one example, all right.
  image = images.confusion_matrix_image(matrix, cell=3)
  assert image.shape == (6, 6, 3) and image.dtype == np.uint8
  np.testing.assert_array_equal(image[4, 4], [8, 48, 107])  # Recall 1.
  np.testing.assert_array_equal(image[4, 0], [255, 255, 255])  # Recall 0.
  # Recall 0.8 is darker than 0.2 in the same row.
  assert image[0, 0].sum() < image[0, 4].sum()


def test_segmentation_colours_and_grid():
  ids = np.array([[0, 1], [2, 1]])
  rgb = images.segmentation_to_rgb(ids)
  np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])
  np.testing.assert_array_equal(rgb[0, 1], rgb[1, 1])
  assert not np.array_equal(rgb[0, 1], rgb[1, 0])
  video = np.zeros((3, 4, 5, 3), np.uint8)
  grid = images.sample_grid(video, {'a': video + 1, 'b': video + 2})
  assert grid.shape == (12, 15, 3)
  assert grid[5, 14, 0] == 1 and grid[11, 0, 0] == 2
