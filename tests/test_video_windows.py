"""data/video_windows.py: windows over a whole video, against a brute-force
enumeration and the dataset pipeline's own clip sampling."""

import numpy as np
import pytest
import tensorflow as tf

from airstreams_jax.data import video_ops
from airstreams_jax.data import video_windows


def _brute_force(num_stored, num_frames, frame_stride, stride):
  """Every window start that fits, every `stride` frames, plus one ending on
  the last frame; a short video's single window clamps to the last frame."""
  span = (num_frames - 1) * frame_stride + 1
  starts = list(range(0, max(num_stored - span, 0) + 1, stride))
  if starts[-1] + span < num_stored:
    starts.append(num_stored - span)
  return [[min(s + i * frame_stride, num_stored - 1) for i in range(num_frames)]
          for s in starts]


@pytest.mark.parametrize('num_stored', [1, 2, 5, 14, 15, 16, 31, 100, 4170])
@pytest.mark.parametrize('num_frames,frame_stride', [(8, 2), (4, 1), (10, 1)])
@pytest.mark.parametrize('stride', [1, 4, 15, 40])
def test_windows_cover_the_video_as_enumerated(num_stored, num_frames,
                                               frame_stride, stride):
  windows = video_windows.sliding_windows(num_stored, num_frames,
                                          frame_stride, stride)
  expected = _brute_force(num_stored, num_frames, frame_stride, stride)
  np.testing.assert_array_equal(windows.indices, expected)
  # Every stored frame up to the last lies within some window's span.
  assert windows.starts[0] == 0 and windows.ends[-1] == min(
      num_stored - 1, windows.starts[-1] + (num_frames - 1) * frame_stride)
  assert windows.ends.max() == num_stored - 1 or (
      windows.indices.max() == num_stored - 1)


@pytest.mark.parametrize('num_stored,num_frames,frame_stride,expected', [
    (5, 8, 2, 5),  # The 5-frame clip: [0, 2, 4, 4, 4, 4, 4, 4].
    (15, 8, 2, 0),
    (14, 8, 2, 0),  # [0, 2, ..., 12, 13]: the last step shorter, no copy.
    (13, 8, 2, 1),
    (1, 8, 2, 7),
    (3, 4, 1, 1),
    (100, 8, 2, 0),
])
def test_repeated_frames_counts_the_copies_of_the_last_frame(
    num_stored, num_frames, frame_stride, expected):
  assert video_windows.repeated_frames(num_stored, num_frames,
                                       frame_stride) == expected
  idx = np.minimum(np.arange(num_frames) * frame_stride, num_stored - 1)
  # A copy is a frame equal to the one before it (a flow pair with no motion).
  assert int(np.sum(idx[1:] == idx[:-1])) == expected


def test_a_short_video_has_the_pipelines_centre_clip():
  for num_stored in (1, 5, 9):
    windows = video_windows.sliding_windows(num_stored, 8, 2, stride=8)
    assert len(windows.indices) == 1
    centre = video_ops.clip_indices(tf.constant(num_stored), 8, 2, None)
    np.testing.assert_array_equal(windows.indices[0], centre.numpy())


@pytest.mark.parametrize('num_stored,stride,error', [
    (0, 1, 'no frames'), (10, 0, '>= 1 frame')])
def test_bad_windows_are_one_line_errors(num_stored, stride, error):
  with pytest.raises(ValueError, match=error):
    video_windows.sliding_windows(num_stored, 8, 2, stride)


def test_stride_in_seconds():
  assert video_windows.stride_in_frames(0.5, 30.0) == 15
  assert video_windows.stride_in_frames(0.01, 10.0) == 1
  with pytest.raises(ValueError, match='> 0 seconds'):
    video_windows.stride_in_frames(0.0, 30.0)
