"""Images for TensorBoard: confusion matrices, flow fields, segmentations.

Plain NumPy, uint8 RGB out, so that any writer (clu, a notebook) shows them.
"""

import numpy as np


def confusion_matrix_image(matrix: np.ndarray, cell: int = 0) -> np.ndarray:
  """A heat map [H, W, 3] of a [true, predicted] count matrix.

  Rows are normalised to recall (a class's examples sum to 1), so rare and
  frequent classes read alike: white = 0, dark blue = 1.

  Args:
    matrix: [C, C] counts.
    cell: pixels per cell; 0 picks one that makes the image ~512 px wide.
  """
  matrix = np.asarray(matrix, np.float64)
  recall = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
  cell = cell or max(1, 512 // len(matrix))
  shade = np.kron(recall, np.ones((cell, cell)))[..., None]
  white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
  return np.round(white + (blue - white) * shade).astype(np.uint8)


def flow_to_rgb(flow: np.ndarray, max_magnitude: float = 0.0) -> np.ndarray:
  """Colours a flow field [..., 2] (u1 along the width, u2 down the rows).

  Hue is the direction (the usual colour wheel: right red, down
  yellow-green, left cyan, up blue-violet), saturation the magnitude
  relative to `max_magnitude` (0: the field's own maximum), value 1; no
  motion is white.
  """
  flow = np.asarray(flow, np.float64)
  u, v = flow[..., 0], flow[..., 1]
  magnitude = np.hypot(u, v)
  scale = max_magnitude or magnitude.max()
  saturation = np.clip(magnitude / scale, 0, 1) if scale > 0 else magnitude * 0
  hue = (np.arctan2(v, u) / (2 * np.pi)) % 1.0
  return hsv_to_rgb(hue, saturation, np.ones_like(hue))


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
  """uint8 RGB of HSV arrays with values in [0, 1] (the standard sextants)."""
  i = np.floor(h * 6).astype(np.int64) % 6
  f = h * 6 - np.floor(h * 6)
  p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
  choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v),
             (v, p, q)]
  rgb = np.stack([np.choose(i, [c[k] for c in choices]) for k in range(3)],
                 axis=-1)
  return np.round(rgb * 255).astype(np.uint8)


def segmentation_to_rgb(ids: np.ndarray) -> np.ndarray:
  """Colours class ids [...]: background (0) black, others distinct hues."""
  ids = np.asarray(ids, np.int64)
  # Golden-ratio hue steps keep neighbouring ids far apart in colour.
  hue = (ids * 0.618033988749895) % 1.0
  rgb = hsv_to_rgb(hue, np.full(hue.shape, 0.8), np.ones(hue.shape))
  return np.where((ids == 0)[..., None], 0, rgb).astype(np.uint8)


def sample_grid(video: np.ndarray, rows: dict) -> np.ndarray:
  """Tiles one clip's frames [T, H, W, 3] above other [T, H, W, 3] rows.

  Returns [(1 + len(rows)) * H, T * W, 3]: time runs left to right.
  """
  lines = [video] + list(rows.values())
  return np.concatenate([np.concatenate(list(line), axis=1)
                         for line in lines], axis=0)
