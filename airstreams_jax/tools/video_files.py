"""Writing clips as video files (for the generated folder-of-videos data)."""

import av
import numpy as np


def write_mp4(path: str, video: np.ndarray, fps: int) -> None:
  """Writes uint8 [T, H, W, 3] frames as an H.264 mp4 (even sides)."""
  with av.open(path, 'w') as container:
    stream = container.add_stream('libx264', rate=fps)
    stream.width, stream.height = video.shape[2], video.shape[1]
    stream.pix_fmt = 'yuv420p'
    stream.options = {'crf': '18'}
    for frame in video:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, 'rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
