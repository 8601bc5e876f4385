"""BlazePose's pre- and post-processing in numpy, as MediaPipe does it.

The `pose` teacher runs two models of MediaPipe's pose landmarker (see
pose.py); this module holds the steps between them, each written after the
MediaPipe calculator its docstring names (the image warps are in
roi_geometry.py):

  frame --letterbox--> 224x224 detector input  (ImageToTensorCalculator)
  detector output --anchors, decoding-->  scored boxes + 4 keypoints
        (SsdAnchorsCalculator, TensorsToDetectionsCalculator)
  --weighted NMS--> people  (NonMaxSuppressionCalculator)
  --letterbox removal--> frame coordinates  (DetectionLetterboxRemoval...)
  keypoints 0 (mid-hip) and 1 --> rotated square ROI, x1.25
        (AlignmentPointsRectsCalculator, RectTransformationCalculator)
  ROI --warp--> 256x256 landmark input; its outputs: the pose flag, the
        segmentation (warped back onto the frame), and the landmarks, whose
        auxiliary pair 33-34 gives the next frame's ROI when tracking
        (TensorsToLandmarks..., RefineLandmarksFromHeatmap...,
        LandmarkProjection..., pose_landmarks_to_roi.pbtxt,
        AssociationNormRectCalculator).
"""

import dataclasses
import math
from typing import List, Sequence, Tuple

import numpy as np

from airstreams_jax.teachers import roi_geometry

RotatedRect = roi_geometry.RotatedRect

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
  """The ROI of pose_detection_to_roi.pbtxt (and of
  pose_landmarks_to_roi.pbtxt, from the auxiliary landmarks), in pixels.

  AlignmentPointsRectsCalculator: a square centred on keypoint 0 (mid-hip),
  its side twice the distance to keypoint 1, rotated so that the hip-to-1
  vector points up; then RectTransformationCalculator: square_long and
  scaled by 1.25.

  Args:
    detection: In the image's normalised coordinates (letterbox removed);
      only its keypoints 0 and 1 are used.
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


# TensorsToLandmarksCalculatorOptions: 39 landmarks (33 + 6 auxiliary) of 5
# values (x, y, z, visibility, presence); x, y in pixels of the 256x256 input.
NUM_LANDMARKS = 39
LANDMARK_VALUES = 5
# The auxiliary landmarks that make the next frame's ROI
# (SplitNormalizedLandmarkListCalculator: ranges 0-33 and 33-35).
AUX_LANDMARKS = (33, 34)
# RefineLandmarksFromHeatmapCalculatorOptions: kernel_size 7,
# min_confidence_to_refine at its default.
HEATMAP_KERNEL = 7
MIN_CONFIDENCE_TO_REFINE = 0.5


def decode_landmarks(raw: np.ndarray, heatmap: np.ndarray,
                     input_hw: Tuple[int, int],
                     indices: Sequence[int] = AUX_LANDMARKS) -> np.ndarray:
  """Landmarks [len(indices), 2] (x, y), normalised to the landmark input.

  TensorsToLandmarksCalculator (x / width, y / height), then
  RefineLandmarksFromHeatmapCalculator: within a kernel around the point on
  the heatmap, the sigmoid-weighted mean of the heatmap cells' indices,
  where the largest weight reaches `MIN_CONFIDENCE_TO_REFINE`.

  Args:
    raw: [39 * 5] the landmark model's first output.
    heatmap: [h, w, 39] its heatmap logits.
    input_hw: (height, width) of the model's input.
    indices: The landmarks wanted.
  """
  values = np.asarray(raw, np.float32).reshape(NUM_LANDMARKS, LANDMARK_VALUES)
  hm_h, hm_w = heatmap.shape[:2]
  offset = (HEATMAP_KERNEL - 1) // 2
  out = []
  for k in indices:
    x = float(values[k, 0]) / input_hw[1]
    y = float(values[k, 1]) / input_hw[0]
    col, row = int(x * hm_w), int(y * hm_h)  # C++ truncation.
    if 0 <= col < hm_w and 0 <= row < hm_h:
      r0, r1 = max(0, row - offset), min(hm_h, row + offset + 1)
      c0, c1 = max(0, col - offset), min(hm_w, col + offset + 1)
      confidence = sigmoid(heatmap[r0:r1, c0:c1, k])
      total = float(confidence.sum())
      if confidence.max() >= MIN_CONFIDENCE_TO_REFINE and total > 0:
        rows, cols = np.mgrid[r0:r1, c0:c1]
        x = float((cols * confidence).sum()) / hm_w / total
        y = float((rows * confidence).sum()) / hm_h / total
    out.append((x, y))
  return np.asarray(out, np.float64)


def landmarks_to_image(points: np.ndarray, roi: RotatedRect,
                       input_hw: Tuple[int, int],
                       image_hw: Tuple[int, int]) -> np.ndarray:
  """LandmarkProjectionCalculator: ROI-normalised (x, y) to the image's
  normalised coordinates."""
  matrix = roi_geometry.roi_to_image_matrix(roi, input_hw)
  pixels = roi_geometry.apply_affine(
      matrix, points * (input_hw[1], input_hw[0]))
  return pixels / (image_hw[1], image_hw[0])


def associate(tracked: Sequence[RotatedRect], detected: Sequence[RotatedRect],
              min_similarity: float) -> List[RotatedRect]:
  """AssociationNormRectCalculator: the tracked ROIs, then each detected
  one, which replaces the ROIs its axis-aligned box overlaps by more than
  `min_similarity` (IoU, rotation ignored as MediaPipe does)."""
  result: List[RotatedRect] = []
  for roi in list(tracked) + list(detected):
    box = _rect_box(roi)
    result = [r for r in result
              if _iou(box, _rect_box(r)[None])[0] <= min_similarity]
    result.append(roi)
  return result


def _rect_box(roi: RotatedRect) -> np.ndarray:
  return np.array([roi.cx - roi.width / 2, roi.cy - roi.height / 2,
                   roi.cx + roi.width / 2, roi.cy + roi.height / 2])
