"""Video decoding with PyAV: only the frames a dataset keeps.

  video = decode('clip.mp4', fps=8, max_frames=64, short_side=128)
  video.frames        # uint8 [T, H, W, 3], short side 128, aspect kept
  video.indices       # index of each kept frame in the source video
  video.num_video_frames

Which frames are kept is decided from the container's frame count and frame
rate before any decoding (`sample_indices`); frames in between are decoded
(inter-frame codecs need them) but never converted to RGB or resized, and long
gaps between kept frames are skipped by seeking to the keyframe before the next
kept frame. Every way a file can fail to give frames (missing, empty, not a
video, corrupt, truncated) raises `VideoDecodeError` with a one-line reason.
"""

import dataclasses
import math
import os
from typing import Iterator, Optional, Tuple

import av
import numpy as np

# Seek only across gaps of at least this many seconds: shorter gaps are
# cheaper to decode through than to jump over (a seek lands on the keyframe
# before the target and decodes from there).
_SEEK_MIN_GAP_SECONDS = 2.0
# A container may announce a few more frames than it decodes (edit lists,
# a dropped last frame); more missing than this is a truncated file.
_MAX_MISSING_FRAMES = 2
_MAX_MISSING_FRACTION = 0.02


class VideoDecodeError(ValueError):
  """A file that gives no usable frames; the message is a one-line reason."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What the container says about a video's first video stream.

  Attributes:
    num_frames: The number of frames (counted from the packets when the
      container does not store it).
    fps: Average frame rate.
    duration: Seconds.
    height: Frame height in pixels.
    width: Frame width in pixels.
  """
  num_frames: int
  fps: float
  duration: float
  height: int
  width: int


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
  """Frames kept from one video.

  Attributes:
    frames: uint8 [T, H, W, 3] RGB.
    indices: int64 [T] index of each frame in the source video, ascending.
    timestamps: float64 [T] seconds from the start of the video.
    num_video_frames: Frames in the whole source video.
    fps: The source's average frame rate.
  """
  frames: np.ndarray
  indices: np.ndarray
  timestamps: np.ndarray
  num_video_frames: int
  fps: float


def sample_indices(num_frames: int, source_fps: float, fps: float = 0.,
                   max_frames: int = 0) -> np.ndarray:
  """The frames to keep of a video.

  Args:
    num_frames: Frames in the video.
    source_fps: The video's frame rate.
    fps: Keep frames at this rate (0, or a rate at or above the source's:
      every frame). Frame k kept is the one shown at time k / fps.
    max_frames: Then keep at most this many, evenly spread over the video
      from its first to its last kept frame (0: no limit). This lowers the
      effective rate of long videos.

  Returns:
    int64 ascending unique frame indices.
  """
  if num_frames <= 0:
    return np.zeros((0,), np.int64)
  if fps > 0 and source_fps > fps:
    step = source_fps / fps
    # The epsilon keeps exact multiples (e.g. 30 -> 10 fps) on their frame.
    indices = np.floor(np.arange(math.ceil(num_frames / step)) * step + 1e-6)
    indices = np.unique(np.minimum(indices.astype(np.int64), num_frames - 1))
  else:
    indices = np.arange(num_frames, dtype=np.int64)
  if 0 < max_frames < len(indices):
    # Spacing >= 1 between the positions, so rounding keeps them unique.
    positions = np.round(np.linspace(0, len(indices) - 1, max_frames))
    indices = indices[positions.astype(np.int64)]
  return indices


def resized_shape(height: int, width: int,
                  short_side: int) -> Tuple[int, int]:
  """(height, width) scaled to the short side `short_side` (0: unchanged)."""
  if short_side <= 0:
    return height, width
  scale = short_side / min(height, width)
  return (max(1, int(round(height * scale))),
          max(1, int(round(width * scale))))


def _error_reason(e: BaseException) -> str:
  """A one-line reason from an exception."""
  if isinstance(e, av.error.FFmpegError) and e.strerror:
    return e.strerror  # Without the errno and the file name.
  return ' '.join(str(e).split()) or type(e).__name__


def _open_remote(path: str):
  """A seekable gfile of a remote video, checked as a local one is.

  TensorFlow is imported here, not at the top: the decoding workers
  (video_processing) import this module, and a local build never needs it.
  """
  from tensorflow.io import gfile  # pylint: disable=g-import-not-at-top
  if not gfile.exists(path):
    raise VideoDecodeError('file not found')
  if gfile.isdir(path):
    raise VideoDecodeError('not a file')
  if gfile.stat(path).length == 0:
    raise VideoDecodeError('empty file (0 bytes)')
  return gfile.GFile(path, 'rb')


def _open(path: str) -> av.container.InputContainer:
  if '://' in path:  # gs:// and the like: FFmpeg reads it through gfile.
    source = _open_remote(path)
  else:
    if not os.path.isfile(path):
      raise VideoDecodeError('not a file' if os.path.exists(path)
                             else 'file not found')
    if os.path.getsize(path) == 0:
      raise VideoDecodeError('empty file (0 bytes)')
    source = path
  try:
    container = av.open(source, mode='r')
  except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
    raise VideoDecodeError(f'not a readable video ({_error_reason(e)})'
                           ) from None
  if not container.streams.video:
    container.close()
    raise VideoDecodeError('the file holds no video stream')
  return container


def _stream_info(path: str, container, stream) -> VideoInfo:
  """Frame count, rate and duration from the headers (counts packets if the
  frame count is not stored)."""
  rate = stream.average_rate or stream.guessed_rate or stream.base_rate
  fps = float(rate) if rate else 0.
  duration = 0.
  if stream.duration and stream.time_base:
    duration = float(stream.duration * stream.time_base)
  elif container.duration:
    duration = container.duration / av.time_base
  num_frames = stream.frames
  if num_frames <= 0:
    # mkv/webm do not store a count: count the packets (demuxing only, no
    # decoding; one packet per frame) in a second reader.
    num_frames = _count_packets(path)
  if not fps and duration and num_frames:
    fps = num_frames / duration
  if not duration and fps:
    duration = num_frames / fps
  height = stream.codec_context.height
  width = stream.codec_context.width
  if num_frames <= 0:
    raise VideoDecodeError('the video stream has no frames (empty or '
                           'truncated)')
  if not fps:
    raise VideoDecodeError('the video stream has no frame rate')
  if height <= 0 or width <= 0:
    raise VideoDecodeError(f'invalid frame size {width}x{height}')
  return VideoInfo(num_frames=num_frames, fps=fps, duration=duration,
                   height=height, width=width)


def probe(path: str) -> VideoInfo:
  """Reads a video's frame count, rate, duration and size from its headers.

  Args:
    path: The video file.

  Returns:
    Its `VideoInfo`.

  Raises:
    VideoDecodeError: If the file is missing, empty or not a video.
  """
  container = _open(path)
  with container:
    return _stream_info(path, container, container.streams.video[0])


def _count_packets(path: str) -> int:
  container = _open(path)
  with container:
    stream = container.streams.video[0]
    try:
      return sum(1 for p in container.demux(stream) if p.size)
    except av.error.FFmpegError as e:
      raise VideoDecodeError(f'corrupt container ({_error_reason(e)})'
                             ) from None


class _SeekFailed(Exception):
  """Seeking gave frames without timestamps: decode sequentially instead."""


def _decoded_frames(container, stream, fps: float, wanted: np.ndarray,
                    allow_seek: bool) -> Iterator[Tuple[int, av.VideoFrame]]:
  """Yields (index, frame) up to the last wanted index, seeking over gaps.

  Indices count decoded frames from the start; after a seek they come from
  the presentation timestamp of the first frame decoded.
  """
  start_pts = stream.start_time or 0
  min_gap = max(int(_SEEK_MIN_GAP_SECONDS * fps), 2)
  last = int(wanted[-1])
  next_pos = 0  # Position in `wanted` of the next frame to keep.
  index = -1  # Index of the frame just decoded.
  seek_to = None
  while True:
    if seek_to is not None:
      target_pts = start_pts + int(seek_to / fps / stream.time_base)
      container.seek(target_pts, stream=stream, backward=True,
                     any_frame=False)
    after_seek = seek_to is not None
    seek_to = None
    for packet in container.demux(stream):
      for frame in packet.decode():
        if after_seek:
          if frame.pts is None:
            raise _SeekFailed()
          new_index = int(round(float((frame.pts - start_pts)
                                      * stream.time_base) * fps))
          if new_index <= index:
            # The keyframe lies before where we were: the group of pictures
            # is long, so seeking does not pay off for this video.
            allow_seek = False
          index = new_index - 1
          after_seek = False
        index += 1
        while next_pos < len(wanted) and wanted[next_pos] < index:
          next_pos += 1  # Only after an imprecise seek; the frame is gone.
        if next_pos < len(wanted) and wanted[next_pos] == index:
          yield index, frame
          next_pos += 1
        if index >= last or next_pos >= len(wanted):
          return
        if allow_seek and wanted[next_pos] - index > min_gap:
          seek_to = int(wanted[next_pos])
          break
      if seek_to is not None:
        break
    if seek_to is None:
      return  # End of the stream.


def _to_rgb(frame: av.VideoFrame, height: int, width: int) -> np.ndarray:
  if frame.height == height and frame.width == width:
    return frame.to_ndarray(format='rgb24')
  return frame.to_ndarray(format='rgb24', width=width, height=height,
                          interpolation='AREA')


def _decode_once(path: str, fps: float, max_frames: int, short_side: int,
                 num_frames: Optional[int], allow_seek: bool):
  """One decoding pass over the frames that `sample_indices` wants.

  Returns:
    (kept (index, seconds or None, RGB frame) triples, the stream's info
    with `num_frames` replaced when given, the wanted indices). Fewer kept
    than wanted means the stream ended early.
  """
  container = _open(path)
  with container:
    stream = container.streams.video[0]
    stream.thread_type = 'AUTO'
    info = _stream_info(path, container, stream)
    if num_frames is not None:
      info = dataclasses.replace(info, num_frames=num_frames)
    wanted = sample_indices(info.num_frames, info.fps, fps, max_frames)
    height, width = resized_shape(info.height, info.width, short_side)
    start_time = float((stream.start_time or 0) * stream.time_base)
    kept = []
    try:
      for index, frame in _decoded_frames(container, stream, info.fps, wanted,
                                          allow_seek):
        time = frame.time - start_time if frame.time is not None else None
        kept.append((index, time, _to_rgb(frame, height, width)))
    except av.error.FFmpegError as e:
      raise VideoDecodeError(f'corrupt video data after {len(kept)} kept '
                             f'frames ({_error_reason(e)})') from None
    return kept, info, wanted


def decode(path: str, *, fps: float = 0., max_frames: int = 0,
           short_side: int = 0) -> DecodedVideo:
  """Decodes the frames of a video that `sample_indices` keeps.

  Args:
    path: The video file (any container and codec FFmpeg reads).
    fps: Keep frames at this rate (0: every frame).
    max_frames: Keep at most this many, evenly spread (0: no limit).
    short_side: Resize so that the short side has this many pixels, keeping
      the aspect ratio (0: original size).

  Returns:
    The kept frames with their source indices and timestamps.

  Raises:
    VideoDecodeError: If the file is missing, empty, not a video, corrupt or
      truncated (far fewer frames decode than its header announces).
  """
  try:
    kept, info, wanted = _decode_once(path, fps, max_frames, short_side,
                                      num_frames=None, allow_seek=True)
  except _SeekFailed:
    kept, info, wanted = _decode_once(path, fps, max_frames, short_side,
                                      num_frames=None, allow_seek=False)
  if len(kept) < len(wanted):
    # The stream ended before the last wanted frame (or a seek missed):
    # count the frames that really decode, then sample from that count.
    decoded = _count_frames(path)
    if decoded == 0:
      raise VideoDecodeError('no frame decodes (corrupt or truncated file)')
    if info.num_frames - decoded > max(
        _MAX_MISSING_FRAMES, _MAX_MISSING_FRACTION * info.num_frames):
      raise VideoDecodeError(
          f'truncated: the header announces {info.num_frames} frames, only '
          f'{decoded} decode')
    kept, info, wanted = _decode_once(path, fps, max_frames, short_side,
                                      num_frames=decoded, allow_seek=False)
    if len(kept) < len(wanted):
      raise VideoDecodeError(f'{decoded} frames decode when counted, '
                             f'{len(kept)} of {len(wanted)} when kept')
  indices = np.array([k[0] for k in kept], np.int64)
  timestamps = np.array([k[1] if k[1] is not None else k[0] / info.fps
                         for k in kept], np.float64)
  return DecodedVideo(frames=np.stack([k[2] for k in kept]), indices=indices,
                      timestamps=timestamps,
                      num_video_frames=info.num_frames, fps=info.fps)


def _count_frames(path: str) -> int:
  """Decodes every frame (without converting it) and counts them."""
  container = _open(path)
  with container:
    stream = container.streams.video[0]
    stream.thread_type = 'AUTO'
    count = 0
    try:
      for packet in container.demux(stream):
        count += len(packet.decode())
    except av.error.FFmpegError:
      pass  # Count what decodes before the damage.
    return count
