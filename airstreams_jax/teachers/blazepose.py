"""BlazePose's pre- and post-processing in numpy, as MediaPipe does it.

The `pose` teacher runs two models of MediaPipe's pose landmarker (see
pose.py); this module holds the geometry between them, each step written
after the MediaPipe calculator named in its docstring:

  frame --letterbox--> 224x224 detector input  (ImageToTensorCalculator)
  detector output --anchors, decoding-->  scored boxes + 4 keypoints
        (SsdAnchorsCalculator, TensorsToDetectionsCalculator)
  --weighted NMS--> people  (NonMaxSuppressionCalculator)
  --letterbox removal--> frame coordinates  (DetectionLetterboxRemoval...)
  keypoints 0 (mid-hip) and 1 --> rotated square ROI, x1.25
        (AlignmentPointsRectsCalculator, RectTransformationCalculator)
  ROI --warp--> 256x256 landmark input; its 256x256 segmentation
        --inverse warp--> frame  (ImageToTensor..., WarpAffineCalculator)

Coordinates follow OpenCV's, as MediaPipe's CPU path uses OpenCV: pixel
(i, j) of an image is the point x = j, y = i; a rotated rect's corners map
to the tensor's corners (0, 0) and (width, height) (cv::boxPoints and
cv::getPerspectiveTransform), and warps sample bilinearly.
"""

import dataclasses
import math
from typing import List, Sequence, Tuple

import numpy as np

# SsdAnchorsCalculatorOptions of pose_detection_cpu.pbtxt (and of the
# Tasks API's pose_detector_graph.cc), other fields at their proto defaults.
DETECTOR_ANCHOR_OPTIONS = dict(
    num_layers=5, min_scale=0.1484375, max_scale=0.75, input_size=(224, 224),
    anchor_offset=(0.5, 0.5), strides=(8, 16, 32, 32, 32),
    aspect_ratios=(1.0,), interpolated_scale_aspect_ratio=1.0,
    reduce_boxes_in_lowest_layer=False, fixed_anchor_size=True)
DETECTOR_INPUT_HW = (224, 224)
# TensorsToDetectionsCalculatorOptions: x/y/w/h_scale, score clipping.
DETECTOR_SCALE = 224.0
SCORE_CLIPPING = 100.0
NUM_KEYPOINTS = 4
# RectTransformationCalculatorOptions of pose_detection_to_roi.pbtxt.
ROI_SCALE = 1.25
# AlignmentPointsRectsCalculator: rotation_vector_target_angle_degrees.
TARGET_ANGLE = math.pi / 2


@dataclasses.dataclass(frozen=True)
class Detection:
  """One person found by the detector, in normalised [0, 1] coordinates.

  Attributes:
    score: The detector's score (a probability).
    box: (xmin, ymin, xmax, ymax) of the face box.
    keypoints: [4, 2] (x, y): mid-hip, full-body size/rotation point,
      mid-shoulder, upper-body size/rotation point.
  """
  score: float
  box: Tuple[float, float, float, float]
  keypoints: np.ndarray


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


def sigmoid(x: np.ndarray) -> np.ndarray:
  """The logistic function, without overflow warnings for large |x|."""
  x = np.asarray(x, np.float32)
  return np.float32(0.5) * (np.tanh(x * np.float32(0.5)) + np.float32(1))


def _scale(min_scale, max_scale, index, count):
  """CalculateScale of ssd_anchors_calculator.cc."""
  if count == 1:
    return (min_scale + max_scale) * 0.5
  return min_scale + (max_scale - min_scale) * index / (count - 1.0)


def ssd_anchors(num_layers: int, min_scale: float, max_scale: float,
                input_size: Tuple[int, int], anchor_offset: Tuple[float, float],
                strides: Sequence[int], aspect_ratios: Sequence[float],
                interpolated_scale_aspect_ratio: float = 1.0,
                reduce_boxes_in_lowest_layer: bool = False,
                fixed_anchor_size: bool = False) -> np.ndarray:
  """SsdAnchorsCalculator::GenerateAnchors (not the multiscale variant).

  Layers of equal stride share one grid, their anchors interleaved per cell.

  Args:
    num_layers, min_scale, max_scale, strides, aspect_ratios,
    interpolated_scale_aspect_ratio, reduce_boxes_in_lowest_layer,
    fixed_anchor_size: The calculator's options of the same names.
    input_size: (input_size_height, input_size_width).
    anchor_offset: (anchor_offset_y, anchor_offset_x).

  Returns:
    float32 [N, 4] anchors (x_center, y_center, w, h), normalised.
  """
  anchors = []
  layer = 0
  while layer < num_layers:
    heights, widths = [], []
    last = layer
    while last < len(strides) and strides[last] == strides[layer]:
      scale = _scale(min_scale, max_scale, last, len(strides))
      if last == 0 and reduce_boxes_in_lowest_layer:
        pairs = [(1.0, 0.1), (2.0, scale), (0.5, scale)]
      else:
        pairs = [(ratio, scale) for ratio in aspect_ratios]
        if interpolated_scale_aspect_ratio > 0.0:
          scale_next = (1.0 if last == len(strides) - 1 else
                        _scale(min_scale, max_scale, last + 1, len(strides)))
          pairs.append((interpolated_scale_aspect_ratio,
                        math.sqrt(scale * scale_next)))
      for ratio, s in pairs:
        heights.append(s / math.sqrt(ratio))
        widths.append(s * math.sqrt(ratio))
      last += 1
    rows = math.ceil(input_size[0] / strides[layer])
    cols = math.ceil(input_size[1] / strides[layer])
    for y in range(rows):
      for x in range(cols):
        for h, w in zip(heights, widths):
          anchors.append(((x + anchor_offset[1]) / cols,
                          (y + anchor_offset[0]) / rows,
                          1.0 if fixed_anchor_size else w,
                          1.0 if fixed_anchor_size else h))
    layer = last
  return np.asarray(anchors, np.float32)


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray,
                      anchors: np.ndarray, min_score: float
                      ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """TensorsToDetectionsCalculator for the pose detector's options.

  The detector writes, per anchor, 12 values in XYWH order
  (`reverse_output_order: true`): box centre offset x, y, size w, h, then 4
  keypoints (x, y), all in 224ths of the anchor's size.

  Args:
    raw_boxes: [N, 12] the detector's first output.
    raw_scores: [N] or [N, 1] logits.
    anchors: [N, 4] from `ssd_anchors`.
    min_score: Drop detections scoring below this probability.

  Returns:
    (scores [K], boxes [K, 4] (xmin, ymin, xmax, ymax), keypoints
    [K, 4, 2] (x, y)) of the kept anchors, in anchor order, normalised to
    the (letterboxed) detector input.
  """
  raw_boxes = np.asarray(raw_boxes, np.float32)
  logits = np.clip(np.asarray(raw_scores, np.float32).reshape(-1),
                   -SCORE_CLIPPING, SCORE_CLIPPING)
  scores = sigmoid(logits)
  ax, ay, aw, ah = (anchors[:, i] for i in range(4))
  cx = raw_boxes[:, 0] / DETECTOR_SCALE * aw + ax
  cy = raw_boxes[:, 1] / DETECTOR_SCALE * ah + ay
  w = raw_boxes[:, 2] / DETECTOR_SCALE * aw
  h = raw_boxes[:, 3] / DETECTOR_SCALE * ah
  boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
  kp = raw_boxes[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2)
  keypoints = kp / DETECTOR_SCALE * np.stack([aw, ah], -1)[:, None, :]
  keypoints = keypoints + np.stack([ax, ay], -1)[:, None, :]
  # Below the score threshold, or a box of negative or NaN size: dropped
  # (ConvertToDetections).
  keep = (scores >= min_score) & (w >= 0) & (h >= 0)
  return scores[keep], boxes[keep], keypoints[keep]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """OverlapSimilarity with INTERSECTION_OVER_UNION, one box against many."""
  ix = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
  iy = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
  inter = np.where((ix > 0) & (iy > 0), ix * iy, 0.0)
  area = (box[2] - box[0]) * (box[3] - box[1])
  areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  union = area + areas - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(scores: np.ndarray, boxes: np.ndarray,
                 keypoints: np.ndarray, iou_threshold: float,
                 max_detections: int = 0) -> List[Detection]:
  """NonMaxSuppressionCalculator with algorithm WEIGHTED.

  Repeatedly takes the best remaining detection and every remaining one
  overlapping it by more than `iou_threshold` (itself included); outputs
  the best's score with the score-weighted mean of their boxes and
  keypoints.

  Args:
    scores, boxes, keypoints: From `decode_detections`.
    iou_threshold: min_suppression_threshold.
    max_detections: Stop after this many (0: no limit).

  Returns:
    The detections, best first.
  """
  # std::sort on the scores, descending (a stable sort here).
  order = np.argsort(-scores, kind='stable')
  out = []
  while order.size and (not max_detections or len(out) < max_detections):
    best = order[0]
    similar = _iou(boxes[best], boxes[order]) > iou_threshold
    members = order[similar]
    if not members.size:  # A box of no area overlaps nothing, not itself.
      members = order[:1]
      similar = np.arange(order.size) == 0
    weights = scores[members]
    total = weights.sum()
    box = (boxes[members] * weights[:, None]).sum(0) / total
    kps = (keypoints[members] * weights[:, None, None]).sum(0) / total
    out.append(Detection(float(scores[best]), tuple(float(v) for v in box),
                         kps))
    order = order[~similar]
  return out


def letterbox_roi(image_hw: Tuple[int, int],
                  tensor_hw: Tuple[int, int]
                  ) -> Tuple[RotatedRect, Tuple[float, float]]:
  """The whole image padded to the tensor's aspect ratio (PadRoi).

  Args:
    image_hw: (H, W) of the image.
    tensor_hw: (height, width) of the model input.

  Returns:
    (the padded ROI, (horizontal, vertical) padding on each side as a
    fraction of the padded ROI's width and height).
  """
  h, w = image_hw
  tensor_aspect = tensor_hw[0] / tensor_hw[1]
  roi_aspect = h / w
  if tensor_aspect > roi_aspect:
    roi = RotatedRect(w / 2, h / 2, w, w * tensor_aspect, 0.0)
    return roi, (0.0, (1 - roi_aspect / tensor_aspect) / 2)
  roi = RotatedRect(w / 2, h / 2, h / tensor_aspect, h, 0.0)
  return roi, ((1 - tensor_aspect / roi_aspect) / 2, 0.0)


def remove_letterbox(detection: Detection,
                     padding: Tuple[float, float]) -> Detection:
  """DetectionLetterboxRemovalCalculator: to the unpadded image's [0, 1]."""
  px, py = padding
  sx, sy = 1 - 2 * px, 1 - 2 * py
  xmin, ymin, xmax, ymax = detection.box
  box = ((xmin - px) / sx, (ymin - py) / sy, (xmax - px) / sx,
         (ymax - py) / sy)
  keypoints = (detection.keypoints - np.array([px, py])) / np.array([sx, sy])
  return Detection(detection.score, box, keypoints)


def normalize_radians(angle: float) -> float:
  """Into [-pi, pi), as MediaPipe's NormalizeRadians."""
  return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def detection_to_roi(detection: Detection,
                     image_hw: Tuple[int, int]) -> RotatedRect:
  """The ROI of pose_detection_to_roi.pbtxt, in pixels.

  AlignmentPointsRectsCalculator: a square centred on keypoint 0 (mid-hip),
  its side twice the distance to keypoint 1, rotated so that the hip-to-1
  vector points up; then RectTransformationCalculator: square_long and
  scaled by 1.25.

  Args:
    detection: In the image's normalised coordinates (letterbox removed).
    image_hw: (H, W) of the image.

  Returns:
    The landmark model's region of interest.
  """
  h, w = image_hw
  x0, y0 = detection.keypoints[0] * (w, h)
  x1, y1 = detection.keypoints[1] * (w, h)
  size = 2.0 * math.hypot(x1 - x0, y1 - y0)
  rotation = normalize_radians(TARGET_ANGLE - math.atan2(-(y1 - y0), x1 - x0))
  # square_long on a square in pixels leaves it square.
  return RotatedRect(float(x0), float(y0), size * ROI_SCALE, size * ROI_SCALE,
                     rotation)


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
