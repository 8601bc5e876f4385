"""The `pose` teacher: whole people from MediaPipe's pose landmarker.

Two models of the `mediapipe==0.10.14` wheel (fetched as the selfie model
is, mediapipe_wheel.py), run with ai-edge-litert's Interpreter:
  - the BlazePose detector (pose_detection.tflite) finds people in the
    letterboxed 224x224 frame, from the face box and 4 body keypoints;
  - for each of the best `max_people` detections, the full landmark model
    (pose_landmark_full.tflite) looks at a 256x256 crop of the rotated
    region around the body and returns, besides 33 landmarks, a person
    segmentation of that crop.
Each crop's segmentation is warped back onto the frame; the frame's mask is
their union, thresholded. The processing is MediaPipe's, step by step
(blazepose.py and roi_geometry.py name the calculators), with the options
of its Tasks API PoseLandmarker, which finds several people (the legacy
solution finds one). By default the frames of a call are taken as one video
and people are tracked from frame to frame, as its VIDEO mode does (the
region for the next frame comes from the landmarks; the detector runs while
fewer than `max_people` are tracked); `tracking=False` is its IMAGE mode.
Neither smooths landmarks or masks over time.

Unlike the selfie model (trained on people close to the camera, upright,
whose masks of small or distant people are loose blobs), BlazePose segments
a whole body tightly, in any pose, once its region is found. The detector
finds people by their face, though: a hidden or small face (a lifter under
the bar, a distant diver in 320x240 footage) is often missed.
"""

import os
from typing import List, Optional, Tuple

import numpy as np

from airstreams_jax import user_paths
from airstreams_jax.teachers import base
from airstreams_jax.teachers import blazepose
from airstreams_jax.teachers import litert_model
from airstreams_jax.teachers import mediapipe_wheel
from airstreams_jax.teachers import roi_geometry

CLASS_NAMES = ('background', 'person')
DETECTOR_MEMBER = mediapipe_wheel.Member(
    'mediapipe/modules/pose_detection/pose_detection.tflite', 2959046,
    '9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c',
    option='detector_path')
LANDMARK_MEMBER = mediapipe_wheel.Member(
    'mediapipe/modules/pose_landmark/pose_landmark_full.tflite', 6440512,
    'e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f',
    option='landmark_path')
# The Tasks API's defaults (pose_detector_graph_options.proto,
# pose_landmarks_detector_graph_options.proto, pose_landmarker.py):
# min_pose_detection_confidence, min_suppression_threshold (IoU of the face
# boxes), min_pose_presence_confidence.
DEFAULT_MIN_DETECTION_SCORE = 0.5
NMS_IOU_THRESHOLD = 0.5
DEFAULT_MIN_PRESENCE_SCORE = 0.5
# min_tracking_confidence: the IoU above which a detected ROI replaces a
# tracked one (AssociationNormRectCalculator).
MIN_TRACKING_SIMILARITY = 0.5
DEFAULT_MAX_PEOPLE = 3
# The landmark model's input size and value range: ImageToTensorCalculator
# of pose_landmark_by_roi_cpu.pbtxt ([0, 1], BORDER_REPLICATE).
_LANDMARK_HW = (256, 256)
# The masks' size limit: the frame's aspect ratio, scaled down to fit in
# 256x256 as the selfie teacher's (the segmentation is 256x256 per person).
_MASK_LIMIT_HW = (256, 256)


def fetch_models(cache_dir: Optional[str] = None,
                 wheel_path: Optional[str] = None) -> Tuple[str, str]:
  """The verified (detector, landmark model) paths, fetched if needed.

  Args:
    cache_dir: Where to keep them (see `mediapipe_wheel.fetch`).
    wheel_path: A mediapipe 0.10.14 wheel already on disk.

  Raises:
    base.TeacherSetupError: As `mediapipe_wheel.fetch`.
  """
  detector, landmark = mediapipe_wheel.fetch(
      [DETECTOR_MEMBER, LANDMARK_MEMBER], 'the pose models', cache_dir,
      wheel_path)
  return detector, landmark


class _Model:
  """A fixed-shape [1, H, W, 3] float32 model with several outputs."""

  def __init__(self, path: str, num_threads: int, what: str):
    # Imported here, as in litert_model, so that importing the teacher
    # does not load the interpreter.
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
    if not user_paths.is_file(path):
      raise base.TeacherSetupError(f'Model file {path} does not exist.')
    try:
      self._interpreter = litert.Interpreter(
          model_path=user_paths.local_file(path),
                                             num_threads=num_threads)
    except (ValueError, RuntimeError) as e:
      first = (str(e).strip().splitlines() or [type(e).__name__])[0]
      raise base.TeacherSetupError(
          f'{path} is not a TFLite model LiteRT can load: {first}') from e
    self._interpreter.allocate_tensors()
    inputs = self._interpreter.get_input_details()
    self._outputs = self._interpreter.get_output_details()
    shape = tuple(int(d) for d in inputs[0]['shape']) if inputs else ()
    if (len(inputs) != 1 or len(shape) != 4 or shape[0] != 1 or
        shape[3] != 3 or inputs[0]['dtype'] != np.float32):
      raise base.TeacherSetupError(
          f'{path} is not {what}: it takes {len(inputs)} inputs of shape '
          f'{list(shape)}, expected one float32 [1, H, W, 3] image.')
    self.path = path
    self.input_hw = shape[1:3]
    self._input_index = inputs[0]['index']
    # Output shapes without the batch axis.
    self.output_shapes = [tuple(int(d) for d in o['shape'])[1:]
                          for o in self._outputs]

  def run(self, image: np.ndarray) -> List[np.ndarray]:
    """Outputs (without the batch axis) for one float32 [H, W, 3] image."""
    self._interpreter.set_tensor(self._input_index, image[None])
    self._interpreter.invoke()
    return [self._interpreter.get_tensor(o['index'])[0]
            for o in self._outputs]


class PoseTeacher(base.Teacher):
  """Person masks from MediaPipe's pose detector and landmark model.

  Masks have the frame's aspect ratio: the frame's own size when it is at
  most 256x256, else scaled down to fit in 256x256.
  """

  def __init__(self, detector_path: Optional[str] = None,
               landmark_path: Optional[str] = None,
               cache_dir: Optional[str] = None,
               wheel_path: Optional[str] = None,
               num_threads: int = litert_model.DEFAULT_NUM_THREADS,
               threshold: float = 0.5,
               max_people: int = DEFAULT_MAX_PEOPLE,
               min_detection_score: float = DEFAULT_MIN_DETECTION_SCORE,
               min_presence_score: float = DEFAULT_MIN_PRESENCE_SCORE,
               tracking: bool = True):
    """Loads the models, fetching those whose path is not given.

    Args:
      detector_path: pose_detection.tflite to use as is (not checksummed).
      landmark_path: A BlazePose landmark model to use as is (not
        checksummed): pose_landmark_full.tflite, or the lite or heavy
        variant, which have the same inputs and outputs.
      cache_dir: Cache for the fetched models.
      wheel_path: A mediapipe 0.10.14 wheel already on disk.
      num_threads: Interpreter threads.
      threshold: Person probability above which a pixel is 'person'.
      max_people: Segment at most this many people per frame (the best
        detections).
      min_detection_score: Detector score a person needs.
      min_presence_score: The landmark model's pose-presence score a
        person's crop needs for its mask to count.
      tracking: Follow the people found from one frame to the next, as
        MediaPipe's VIDEO mode does (the frames of a call are taken as
        consecutive frames of one video); False detects every frame afresh
        (IMAGE mode).

    Raises:
      base.TeacherSetupError: For an option out of range, or models that
        cannot be fetched or are not BlazePose's.
    """
    for name, value in (('threshold', threshold),
                        ('min_detection_score', min_detection_score),
                        ('min_presence_score', min_presence_score)):
      if not 0.0 < value < 1.0:
        raise base.TeacherSetupError(
            f'{name} must be in (0, 1), got {value}.')
    if isinstance(max_people, bool) or not isinstance(
        max_people, (int, np.integer)) or max_people < 1:
      raise base.TeacherSetupError(
          f'max_people must be an integer >= 1, got {max_people!r}.')
    self._threshold = threshold
    self._max_people = int(max_people)
    self._min_detection_score = min_detection_score
    self._min_presence_score = min_presence_score
    if not isinstance(tracking, (bool, np.bool_)):
      raise base.TeacherSetupError(
          f'tracking must be true or false, got {tracking!r}.')
    self._tracking = bool(tracking)
    if not (detector_path and landmark_path):
      fetched = fetch_models(cache_dir, wheel_path)
      detector_path = detector_path or fetched[0]
      landmark_path = landmark_path or fetched[1]
    self._detector = _Model(os.path.expanduser(detector_path), num_threads,
                            'a BlazePose detector')
    self._landmarks = _Model(os.path.expanduser(landmark_path), num_threads,
                             'a BlazePose landmark model')
    self._check_models()
    self._anchors = blazepose.ssd_anchors(
        **blazepose.DETECTOR_ANCHOR_OPTIONS)

  def _check_models(self):
    """Finds the outputs used; one-line errors for other models."""
    d = self._detector
    num_anchors = len(blazepose.ssd_anchors(
        **blazepose.DETECTOR_ANCHOR_OPTIONS))
    if (d.input_hw != blazepose.DETECTOR_INPUT_HW or
        sorted(d.output_shapes) != [(num_anchors, 1), (num_anchors, 12)]):
      raise base.TeacherSetupError(
          f'{d.path} is not the BlazePose detector: it maps '
          f'{list(d.input_hw)} to {d.output_shapes}, expected [224, 224] to '
          f'[({num_anchors}, 12), ({num_anchors}, 1)].')
    self._box_output = d.output_shapes.index((num_anchors, 12))
    self._score_output = d.output_shapes.index((num_anchors, 1))
    m = self._landmarks
    segmentation = (*_LANDMARK_HW, 1)
    landmarks = (blazepose.NUM_LANDMARKS * blazepose.LANDMARK_VALUES,)
    heatmaps = [i for i, shape in enumerate(m.output_shapes)
                if len(shape) == 3 and shape[2] == blazepose.NUM_LANDMARKS]
    if (m.input_hw != _LANDMARK_HW or segmentation not in m.output_shapes or
        (1,) not in m.output_shapes or landmarks not in m.output_shapes or
        len(heatmaps) != 1):
      raise base.TeacherSetupError(
          f'{m.path} is not a BlazePose landmark model: it maps '
          f'{list(m.input_hw)} to {m.output_shapes}, expected [256, 256] to '
          'outputs including (195,) landmarks, a (1,) pose flag, a (256, '
          '256, 1) segmentation and an (h, w, 39) heatmap.')
    self._flag_output = m.output_shapes.index((1,))
    self._segmentation_output = m.output_shapes.index(segmentation)
    self._landmark_output = m.output_shapes.index(landmarks)
    self._heatmap_output = heatmaps[0]

  @property
  def class_names(self) -> Tuple[str, ...]:
    return CLASS_NAMES

  @property
  def model_paths(self) -> Tuple[str, str]:
    """(detector, landmark model)."""
    return self._detector.path, self._landmarks.path

  def detect(self, frame: np.ndarray) -> List[blazepose.Detection]:
    """People in one uint8 [H, W, 3] frame, best first, in the frame's
    normalised coordinates (at most `max_people`)."""
    roi, padding = blazepose.letterbox_roi(frame.shape[:2],
                                           blazepose.DETECTOR_INPUT_HW)
    # ImageToTensorCalculator of pose_detection_cpu.pbtxt: [-1, 1],
    # BORDER_ZERO (black bars, -1 after the range conversion).
    pixels = roi_geometry.crop_roi(frame, roi, blazepose.DETECTOR_INPUT_HW,
                                   replicate=False)
    outputs = self._detector.run(pixels * np.float32(2 / 255) - 1)
    scores, boxes, keypoints = blazepose.decode_detections(
        outputs[self._box_output], outputs[self._score_output],
        self._anchors, self._min_detection_score)
    # ClipDetectionVectorSizeCalculator keeps the first num_poses.
    found = blazepose.weighted_nms(scores, boxes, keypoints,
                                   NMS_IOU_THRESHOLD, self._max_people)
    return [blazepose.remove_letterbox(d, padding) for d in found]

  def _person(self, frame: np.ndarray, roi: blazepose.RotatedRect,
              out_hw: Tuple[int, int]
              ) -> Optional[Tuple[np.ndarray, blazepose.RotatedRect]]:
    """The landmark model on one region: (the person's probability on an
    `out_hw` grid over the frame, the region to track it by in the next
    frame), or None when the model sees no pose there."""
    image_hw = frame.shape[:2]
    crop = roi_geometry.crop_roi(frame, roi, _LANDMARK_HW, replicate=True)
    outputs = self._landmarks.run(crop * np.float32(1 / 255))
    # ThresholdingCalculator and GateCalculator of
    # tensors_to_pose_landmarks_and_segmentation.pbtxt: no pose, no mask.
    if float(outputs[self._flag_output][0]) < self._min_presence_score:
      return None
    # TensorsToSegmentationCalculator: SIGMOID of the logits; then warped
    # back onto the frame (zero outside the region).
    person = blazepose.sigmoid(outputs[self._segmentation_output][..., 0])
    prob = roi_geometry.mask_to_image(person, roi, image_hw, out_hw)
    aux = blazepose.decode_landmarks(outputs[self._landmark_output],
                                     outputs[self._heatmap_output],
                                     _LANDMARK_HW)
    keypoints = blazepose.landmarks_to_image(aux, roi, _LANDMARK_HW,
                                             image_hw)
    next_roi = blazepose.detection_to_roi(
        blazepose.Detection(0.0, (0.0, 0.0, 0.0, 0.0), keypoints), image_hw)
    return prob, next_roi

  def run(self, frames: np.ndarray, out_hw: Tuple[int, int]):
    """Yields, per frame in order, (person probability [*out_hw] float32
    (the maximum over the people found), the regions whose masks count).

    With tracking, a person found in one frame is looked for in the next
    within the region its landmarks give (MediaPipe's VIDEO mode); the
    detector runs on every frame where fewer than `max_people` are tracked,
    and its regions replace the tracked ones they overlap.
    """
    tracked = []
    for frame in frames:
      if len(tracked) < self._max_people:
        detected = [blazepose.detection_to_roi(d, frame.shape[:2])
                    for d in self.detect(frame)]
        rois = blazepose.associate(tracked, detected,
                                   MIN_TRACKING_SIMILARITY)
      else:
        rois = tracked
      prob = np.zeros(out_hw, np.float32)
      kept, tracked = [], []
      for roi in rois[:self._max_people]:
        if not roi.width > 0:  # Keypoints 0 and 1 coincide: no region.
          continue
        found = self._person(frame, roi, out_hw)
        if found is None:
          continue
        np.maximum(prob, found[0], out=prob)
        kept.append(roi)
        if self._tracking:
          tracked.append(found[1])
      yield prob, kept

  def probabilities(self, frames: np.ndarray) -> np.ndarray:
    """Person probabilities [T, h, w] float32 at the masks' size."""
    hw = litert_model.output_hw(frames.shape[1:3], _MASK_LIMIT_HW)
    return np.stack([prob for prob, _ in self.run(frames, hw)])

  def segment(self, frames: np.ndarray,
              source: Optional[base.FrameSource] = None) -> np.ndarray:
    del source  # An image segmenter needs only the pixels.
    hw = litert_model.output_hw(frames.shape[1:3], _MASK_LIMIT_HW)
    masks = np.empty((len(frames), *hw), np.uint8)
    for i, (prob, _) in enumerate(self.run(frames, hw)):
      masks[i] = prob > self._threshold
    return masks
