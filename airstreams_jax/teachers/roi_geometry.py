"""Rotated regions of interest: warping images into them and maps back.

MediaPipe crops a model's input out of a frame with a rotated rectangle
(ImageToTensorCalculator) and warps a model's output map back onto the frame
(WarpAffineCalculator). Its CPU path does both with OpenCV, whose
conventions are kept here: pixel (i, j) of an image is the point x = j,
y = i; a rect's corners map to the tensor's corners (0, 0) and (width,
height) (cv::boxPoints, cv::getPerspectiveTransform); warps sample
bilinearly.
"""

import dataclasses
import math
from typing import Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class RotatedRect:
  """A rotated rectangle in pixels (MediaPipe's RotatedRect).

  Attributes:
    cx, cy: Centre.
    width, height: Side lengths before rotation.
    rotation: Radians, clockwise on the image (y points down).
  """
  cx: float
  cy: float
  width: float
  height: float
  rotation: float


def roi_to_image_matrix(roi: RotatedRect,
                        tensor_hw: Tuple[int, int]) -> np.ndarray:
  """The 2x3 affine map from tensor pixels (u, v) to image pixels (x, y).

  The map of cv::getPerspectiveTransform from the tensor's corners to
  cv::boxPoints(roi): (u, v) = (0, height) is the ROI's bottom-left corner,
  (width, 0) its top-right.
  """
  th, tw = tensor_hw
  c, s = math.cos(roi.rotation), math.sin(roi.rotation)
  a, b = roi.width / tw, roi.height / th
  # image = centre + R @ ((u / tw - 0.5) * width, (v / th - 0.5) * height)
  return np.array([
      [c * a, -s * b, roi.cx - 0.5 * (c * roi.width - s * roi.height)],
      [s * a, c * b, roi.cy - 0.5 * (s * roi.width + c * roi.height)],
  ], np.float64)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
  """The inverse of a 2x3 affine map."""
  linear = np.linalg.inv(matrix[:, :2])
  return np.concatenate([linear, -linear @ matrix[:, 2:]], 1)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Maps [..., 2] (x, y) points."""
  return points @ matrix[:, :2].T + matrix[:, 2]


def sample_bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray,
                    replicate: bool) -> np.ndarray:
  """Bilinear samples of an [H, W] or [H, W, C] image at points (x, y).

  Args:
    image: The image (any real dtype).
    x, y: Sample positions (same shape), pixel (i, j) at x = j, y = i.
    replicate: Outside the image, take the nearest edge pixel
      (BORDER_REPLICATE); otherwise zeros (BORDER_CONSTANT 0).

  Returns:
    float32 samples of shape x.shape (+ [C]).
  """
  h, w = image.shape[:2]
  x0 = np.floor(x)
  y0 = np.floor(y)
  fx = (x - x0).astype(np.float32)
  fy = (y - y0).astype(np.float32)
  x0 = x0.astype(np.int64)
  y0 = y0.astype(np.int64)
  out = 0.0
  for dy, wy in ((0, 1 - fy), (1, fy)):
    for dx, wx in ((0, 1 - fx), (1, fx)):
      xi, yi = x0 + dx, y0 + dy
      weight = wx * wy
      if replicate:
        value = image[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
      else:
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        value = image[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
        weight = np.where(inside, weight, np.float32(0))
      if image.ndim == 3:
        weight = weight[..., None]
      out = out + weight * value.astype(np.float32)
  return np.asarray(out, np.float32)


def crop_roi(image: np.ndarray, roi: RotatedRect, tensor_hw: Tuple[int, int],
             replicate: bool) -> np.ndarray:
  """The ROI of an image warped to the tensor size (ImageToTensor's warp).

  Args:
    image: [H, W, C] image.
    roi: The region, in pixels.
    tensor_hw: (height, width) of the output.
    replicate: BORDER_REPLICATE (True) or BORDER_ZERO (False).

  Returns:
    float32 [height, width, C], in the image's value range.
  """
  th, tw = tensor_hw
  v, u = np.mgrid[0:th, 0:tw].astype(np.float64)
  m = roi_to_image_matrix(roi, tensor_hw)
  x = m[0, 0] * u + m[0, 1] * v + m[0, 2]
  y = m[1, 0] * u + m[1, 1] * v + m[1, 2]
  return sample_bilinear(image, x, y, replicate)


def mask_to_image(mask: np.ndarray, roi: RotatedRect,
                  image_hw: Tuple[int, int],
                  out_hw: Tuple[int, int]) -> np.ndarray:
  """A [height, width] map over the ROI, warped back onto the image.

  WarpAffineCalculator with the inverse of the ROI's matrix, BORDER_ZERO:
  outside the ROI the map is 0. The result is sampled on an `out_hw` grid
  over the image (the image's own size, or smaller for a smaller mask),
  whose pixel centres are mapped to the image's pixel coordinates.

  Args:
    mask: [height, width] float map at the tensor's resolution.
    roi: The region it covers, in image pixels.
    image_hw: (H, W) of the image.
    out_hw: (h, w) of the output.

  Returns:
    float32 [h, w].
  """
  (ih, iw), (oh, ow) = image_hw, out_hw
  inverse = invert_affine(roi_to_image_matrix(roi, mask.shape[:2]))
  # Output pixel centres in image pixels (the identity when out == image).
  ys = (np.arange(oh) + 0.5) * (ih / oh) - 0.5
  xs = (np.arange(ow) + 0.5) * (iw / ow) - 0.5
  y, x = np.meshgrid(ys, xs, indexing='ij')
  u = inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]
  v = inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]
  return sample_bilinear(mask, u, v, replicate=False)
