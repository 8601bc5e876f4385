"""PyAV decoding: which frames come back, at what size, and bad files.

Every test video is written here with PyAV; frame i is a solid colour that
encodes i (`frame_colour`), so the frames decoded can be told apart.
"""

import os

import av
import numpy as np
import pytest

from airstreams_jax.data import video_io

# Steps of 25 between colour levels survive lossy coding (errors of a few
# levels) and give 10 levels per channel: frames 0-999 are distinct.
_LEVEL = 25
_CODECS = {'.mp4': 'libx264', '.avi': 'mpeg4', '.mkv': 'libx264',
           '.webm': 'libvpx', '.mov': 'libx264'}


def frame_colour(i: int) -> np.ndarray:
  """RGB of frame i: its decimal digits, units in red."""
  return np.array([i % 10, i // 10 % 10, i // 100 % 10]) * _LEVEL + 10


def frame_index(frame: np.ndarray) -> int:
  """Inverse of `frame_colour`, from the mean colour of a decoded frame."""
  digits = np.round((frame.reshape(-1, 3).mean(0) - 10) / _LEVEL).astype(int)
  return int(digits[0] + 10 * digits[1] + 100 * digits[2])


def write_video(path: str, num_frames: int, height: int = 36,
                width: int = 48, fps: int = 10, gop: int = 0,
                frames=None) -> None:
  """Writes a video whose frame i has `frame_colour(i)` (or `frames`).

  The codec follows the extension (mp4/mkv/mov: H.264, avi: MPEG-4 part 2,
  webm: VP8); gop > 0 puts a keyframe every gop frames.
  """
  codec = _CODECS[os.path.splitext(path)[1].lower()]
  with av.open(path, 'w') as container:
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
    if codec == 'libx264':
      stream.options = {'crf': '1'}
    if gop:
      stream.codec_context.gop_size = gop
      if codec == 'libx264':
        stream.options = {'crf': '1', 'keyint_min': str(gop),
                          'sc_threshold': '0'}
    for i in range(num_frames):
      if frames is None:
        image = np.broadcast_to(frame_colour(i).astype(np.uint8),
                                (height, width, 3)).copy()
      else:
        image = frames[i]
      for packet in stream.encode(av.VideoFrame.from_ndarray(image,
                                                             format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  root = tmp_path_factory.mktemp('videos')
  paths = {}
  for ext in _CODECS:
    paths[ext] = str(root / f'clip{ext}')
    write_video(paths[ext], 12)
  paths['portrait'] = str(root / 'portrait.mp4')
  write_video(paths['portrait'], 6, height=48, width=32)
  # 30 s at 10 fps, a keyframe every 10 frames: sparse frames are reached
  # by seeking.
  paths['long'] = str(root / 'long.mp4')
  write_video(paths['long'], 300, height=32, width=32, gop=10)
  return paths


@pytest.mark.parametrize('ext', list(_CODECS))
def test_decodes_every_frame_in_order(videos, ext):
  video = video_io.decode(videos[ext])
  assert video.frames.dtype == np.uint8
  assert video.frames.shape == (12, 36, 48, 3)
  np.testing.assert_array_equal(video.indices, np.arange(12))
  assert [frame_index(f) for f in video.frames] == list(range(12))
  assert video.num_video_frames == 12
  assert video.fps == pytest.approx(10)
  np.testing.assert_allclose(video.timestamps, np.arange(12) / 10,
                             atol=1e-6)


def test_probe(videos):
  info = video_io.probe(videos['.avi'])
  assert (info.num_frames, info.height, info.width) == (12, 36, 48)
  assert info.fps == pytest.approx(10)
  assert info.duration == pytest.approx(1.2)
  # mkv and webm store no frame count: it is counted from the packets.
  assert video_io.probe(videos['.webm']).num_frames == 12


@pytest.mark.parametrize('ext', ['.mp4', '.avi'])
def test_fps_sampling_keeps_the_frames_at_that_rate(videos, ext):
  video = video_io.decode(videos[ext], fps=5)
  np.testing.assert_array_equal(video.indices, [0, 2, 4, 6, 8, 10])
  assert [frame_index(f) for f in video.frames] == [0, 2, 4, 6, 8, 10]
  np.testing.assert_allclose(video.timestamps, np.arange(6) / 5, atol=1e-6)
  # A rate at or above the source's keeps every frame.
  assert len(video_io.decode(videos[ext], fps=25).indices) == 12


def test_max_frames_spreads_over_the_whole_video(videos):
  video = video_io.decode(videos['.mp4'], max_frames=4)
  np.testing.assert_array_equal(video.indices, [0, 4, 7, 11])
  assert [frame_index(f) for f in video.frames] == [0, 4, 7, 11]
  video = video_io.decode(videos['.mp4'], fps=5, max_frames=3)
  np.testing.assert_array_equal(video.indices, [0, 4, 10])


def test_sparse_frames_of_a_long_video_are_the_right_ones(videos):
  # Gaps of ~100 frames (10 s) are crossed by seeking to a keyframe; the
  # frames found must still be exactly the ones asked for.
  video = video_io.decode(videos['long'], max_frames=4)
  np.testing.assert_array_equal(video.indices, [0, 100, 199, 299])
  assert [frame_index(f) for f in video.frames] == [0, 100, 199, 299]
  assert video.num_video_frames == 300
  np.testing.assert_allclose(video.timestamps, [0, 10, 19.9, 29.9],
                             atol=1e-6)
  video = video_io.decode(videos['long'], fps=0.25)  # One frame per 4 s.
  np.testing.assert_array_equal(video.indices, np.arange(0, 300, 40))
  assert [frame_index(f) for f in video.frames] == list(range(0, 300, 40))


def test_sample_indices():
  np.testing.assert_array_equal(video_io.sample_indices(9, 30, 10), [0, 3, 6])
  np.testing.assert_array_equal(video_io.sample_indices(10, 25, 10),
                                [0, 2, 5, 7])
  np.testing.assert_array_equal(video_io.sample_indices(4, 30, 0), range(4))
  np.testing.assert_array_equal(video_io.sample_indices(4, 30, 60), range(4))
  np.testing.assert_array_equal(video_io.sample_indices(100, 30, 0, 5),
                                [0, 25, 50, 74, 99])
  np.testing.assert_array_equal(video_io.sample_indices(3, 30, 0, 5),
                                range(3))
  assert not video_io.sample_indices(0, 30).size


@pytest.mark.parametrize('key,short_side,shape', [
    ('.mp4', 24, (24, 32)),  # Landscape 36x48.
    ('.avi', 72, (72, 96)),  # Upscaled too: the short side is the size.
    ('portrait', 24, (36, 24)),  # Portrait 48x32.
    ('.mp4', 0, (36, 48)),  # 0: as is.
])
def test_short_side_resize_keeps_the_aspect(videos, key, short_side, shape):
  video = video_io.decode(videos[key], short_side=short_side)
  assert video.frames.shape[1:] == shape + (3,)
  # Solid frames stay solid (and keep their colour) when resized.
  assert [frame_index(f) for f in video.frames] == list(
      range(len(video.frames)))


def test_resized_shape():
  assert video_io.resized_shape(240, 320, 128) == (128, 171)
  assert video_io.resized_shape(320, 240, 128) == (171, 128)
  assert video_io.resized_shape(100, 100, 0) == (100, 100)


@pytest.fixture(scope='module')
def bad_files(videos, tmp_path_factory):
  root = tmp_path_factory.mktemp('bad')
  with open(videos['.mp4'], 'rb') as f:
    mp4 = f.read()
  avi_path = str(root / 'long.avi')
  write_video(avi_path, 120)
  with open(avi_path, 'rb') as f:
    avi = f.read()
  rng = np.random.default_rng(0)
  contents = {
      'empty.mp4': b'',
      'text.mp4': b'this is a text file, not a video\n' * 10,
      # The first box of a real mp4, then noise.
      'garbage.mp4': mp4[:64] + rng.bytes(4000),
      # mp4 keeps its index at the end: half a file does not open.
      'truncated.mp4': mp4[:len(mp4) // 2],
      # avi keeps its header at the start: half a file opens, then ends early.
      'truncated.avi': avi[:len(avi) // 2],
      'garbage.avi': avi[:2000] + rng.bytes(len(avi)),
  }
  paths = {}
  for name, data in contents.items():
    paths[name] = str(root / name)
    with open(paths[name], 'wb') as f:
      f.write(data)
  paths['missing.mp4'] = str(root / 'missing.mp4')
  paths['folder.mp4'] = str(root / 'folder.mp4')
  os.mkdir(paths['folder.mp4'])
  return paths


@pytest.mark.parametrize('name,reason', [
    ('empty.mp4', 'empty file'),
    ('text.mp4', 'not a readable video'),
    ('garbage.mp4', 'not a readable video'),
    ('truncated.mp4', 'not a readable video'),
    ('truncated.avi', 'truncated: the header announces 120 frames'),
    ('garbage.avi', 'no frame decodes'),
    ('missing.mp4', 'file not found'),
    ('folder.mp4', 'not a file'),
])
def test_bad_files_raise_one_error_type_with_a_one_line_reason(
    bad_files, name, reason):
  with pytest.raises(video_io.VideoDecodeError) as e:
    video_io.decode(bad_files[name], fps=5)
  assert reason in str(e.value)
  assert '\n' not in str(e.value)
  with pytest.raises(video_io.VideoDecodeError):
    video_io.decode(bad_files[name], max_frames=2)  # Seeking: fails too.


def _count_decodable(path):
  with av.open(path) as container:
    count = 0
    try:
      for frame in container.decode(video=0):
        del frame
        count += 1
    except av.error.FFmpegError:
      pass
    return count


def test_a_few_frames_short_of_the_header_is_not_truncated(tmp_path):
  # An avi announces its frame count up front; cut the end until one or two
  # frames are lost: the video still decodes, sampled from the frames that
  # really decode.
  path = str(tmp_path / 'full.avi')
  write_video(path, 120)
  with open(path, 'rb') as f:
    data = f.read()
  cut_path = str(tmp_path / 'cut.avi')
  for cut in range(100, len(data) // 2, 100):
    with open(cut_path, 'wb') as f:
      f.write(data[:-cut])
    decodable = _count_decodable(cut_path)
    if decodable < 120:
      break
  assert decodable in (118, 119)
  assert video_io.probe(cut_path).num_frames == 120
  video = video_io.decode(cut_path, max_frames=5)
  assert video.num_video_frames == decodable
  assert video.indices[-1] == decodable - 1
  assert [frame_index(f) for f in video.frames] == list(video.indices)


def test_one_config_means_one_clip_duration_across_source_rates(tmp_path):
  """configs/video_folder.py's clip (8 stored frames, one in 2, at its
  dataset.fps), decoded as the build and predict decode it: the same
  seconds of video from a 30-, 25- or 24-fps source (to within one source
  frame); a 5-fps source keeps its own frames, so its clip spans longer."""
  from airstreams_jax import video_predictor  # pylint: disable=g-import-not-at-top
  from configs import video_folder  # pylint: disable=g-import-not-at-top
  d = video_folder.get_config().dataset
  span = (d.num_frames - 1) * d.frame_stride  # Stored frames, first to last.
  for rate in (30, 25, 24, 5):
    path = str(tmp_path / f'{rate}fps.mp4')
    write_video(path, 3 * rate, height=16, width=16, fps=rate)
    video = video_predictor.decode_as_stored(path, d)
    seconds = video.timestamps[span] - video.timestamps[0]
    if rate >= d.fps:
      assert abs(seconds - span / d.fps) <= 1 / rate + 1e-6, rate
    else:
      np.testing.assert_array_equal(video.indices, np.arange(3 * rate))
      assert seconds == pytest.approx(span / rate)
