"""Tests for the pose teacher: BlazePose's processing, the models, options."""

import math
import os
import time
import zipfile

import numpy as np
import pytest

from airstreams_jax.teachers import base
from airstreams_jax.teachers import blazepose
from airstreams_jax.teachers import factory
from airstreams_jax.teachers import mediapipe_wheel
from airstreams_jax.teachers import pose
from airstreams_jax.teachers import roi_geometry
from airstreams_jax.teachers import selfie

REALDATA = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), '..', 'shared', 'realdata')
DIVING = os.path.join(REALDATA, 'actions', 'Diving', 'v_Diving_g01_c01.avi')


# ------------------------------------------------------- anchors, decoding


def test_anchors_match_the_ssd_grid():
  anchors = blazepose.ssd_anchors(**blazepose.DETECTOR_ANCHOR_OPTIONS)
  # Computed independently: strides 8 and 16 have one grid each with 2
  # anchors per cell (aspect ratio 1 and the interpolated scale); the three
  # stride-32 layers share one 7x7 grid, 6 anchors per cell.
  expected = []
  for size, per_cell in ((28, 2), (14, 2), (7, 6)):
    for y in range(size):
      for x in range(size):
        expected += [((x + 0.5) / size, (y + 0.5) / size, 1.0, 1.0)] * per_cell
  assert len(anchors) == 2254 == 28 * 28 * 2 + 14 * 14 * 2 + 7 * 7 * 6
  np.testing.assert_allclose(anchors, np.array(expected, np.float32),
                             atol=1e-7)


def test_anchor_sizes_without_fixed_size():
  # Scales min + (max - min) * i / (n - 1), sqrt(s_i * s_{i+1}) for the
  # interpolated anchor; one layer: (0.2 + 0.6) / 2.
  anchors = blazepose.ssd_anchors(
      num_layers=2, min_scale=0.2, max_scale=0.6, input_size=(8, 8),
      anchor_offset=(0.5, 0.5), strides=(4, 8), aspect_ratios=(1.0, 4.0))
  assert len(anchors) == 2 * 2 * 3 + 1 * 1 * 3
  first = anchors[:3]
  np.testing.assert_allclose(first[:, 2], [0.2, 0.4, math.sqrt(0.2 * 0.6)],
                             rtol=1e-6)
  np.testing.assert_allclose(first[:, 3], [0.2, 0.1, math.sqrt(0.2 * 0.6)],
                             rtol=1e-6)
  # The last layer interpolates towards scale 1.
  np.testing.assert_allclose(anchors[-3:, 2], [0.6, 1.2, math.sqrt(0.6)],
                             rtol=1e-6)
  np.testing.assert_allclose(anchors[-1, :2], [0.5, 0.5])


def test_decode_a_hand_made_output():
  anchors = np.array([[0.25, 0.5, 1.0, 1.0], [0.75, 0.5, 1.0, 1.0],
                      [0.5, 0.5, 1.0, 1.0]], np.float32)
  raw = np.zeros((3, 12), np.float32)
  # Anchor 0: centre moved by (+0.1, -0.2), size 0.2 x 0.4 (XYWH order),
  # keypoint k at the anchor + (0.01 k, 0.02 k); all in 224ths.
  raw[0, :4] = np.array([0.1, -0.2, 0.2, 0.4]) * 224
  raw[0, 4:] = np.array([[0.01 * k, 0.02 * k] for k in range(4)]).ravel() * 224
  raw[1, :4] = np.array([0, 0, 0.1, 0.1]) * 224
  raw[2, :4] = np.array([0, 0, -0.1, 0.1]) * 224  # Negative width: dropped.
  logits = np.array([2.0, -3.0, 5.0])
  scores, boxes, keypoints = blazepose.decode_detections(raw, logits[:, None],
                                                         anchors, 0.04)
  np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits[:2])),
                             rtol=1e-6)
  np.testing.assert_allclose(boxes[0], [0.25, 0.1, 0.45, 0.5], atol=1e-6)
  np.testing.assert_allclose(boxes[1], [0.7, 0.45, 0.8, 0.55], atol=1e-6)
  np.testing.assert_allclose(
      keypoints[0], [[0.25 + 0.01 * k, 0.5 + 0.02 * k] for k in range(4)],
      atol=1e-6)
  # The score threshold: sigmoid(-3) = 0.047.
  assert len(blazepose.decode_detections(raw, logits, anchors, 0.05)[0]) == 1


def test_weighted_nms_averages_overlapping_boxes():
  boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0],
                    [5.0, 5.0, 6.0, 6.0], [5.05, 5.0, 6.05, 6.0]])
  scores = np.array([0.9, 0.3, 0.6, 0.5])
  keypoints = np.repeat(boxes[:, None, :2], 4, axis=1)
  found = blazepose.weighted_nms(scores, boxes, keypoints, 0.5)
  assert [d.score for d in found] == [0.9, 0.6]
  # Score-weighted means of the members' boxes and keypoints.
  np.testing.assert_allclose(found[0].box, [0.025, 0.0, 1.025, 1.0])
  np.testing.assert_allclose(found[1].keypoints[:, 0], 5 + 0.05 * 5 / 11)
  assert len(blazepose.weighted_nms(scores, boxes, keypoints, 0.5, 1)) == 1
  # Above the IoU threshold only: IoU(0, 1) = 0.82 < 0.9 keeps both.
  assert len(blazepose.weighted_nms(scores[:2], boxes[:2], keypoints[:2],
                                    0.9)) == 2


# --------------------------------------------------------------- geometry


@pytest.mark.parametrize('image_hw', [(240, 320), (320, 240), (100, 100)])
def test_letterbox_round_trip(image_hw):
  roi, padding = blazepose.letterbox_roi(image_hw, (224, 224))
  h, w = image_hw
  # A bright pixel lands where the tensor-to-image map puts it.
  image = np.zeros((h, w, 1), np.float32)
  y, x = int(h * 0.3), int(w * 0.7)
  image[y, x] = 1.0
  tensor = roi_geometry.crop_roi(image, roi, (224, 224), replicate=False)
  v, u = np.unravel_index(np.argmax(tensor[..., 0]), (224, 224))
  matrix = roi_geometry.roi_to_image_matrix(roi, (224, 224))
  np.testing.assert_allclose(roi_geometry.apply_affine(matrix, [u, v]),
                             [x, y], atol=1.0)
  # Removing the letterbox gives the point's normalised image position.
  detection = blazepose.Detection(
      1.0, (u / 224, v / 224, u / 224, v / 224),
      np.array([[u / 224, v / 224]] * 4))
  back = blazepose.remove_letterbox(detection, padding)
  np.testing.assert_allclose(back.keypoints[0], [x / w, y / h], atol=1.0 / 224
                             * max(h, w) / min(h, w))


def test_roi_affine_round_trip_and_corners():
  roi = roi_geometry.RotatedRect(120.0, 80.0, 90.0, 60.0, 0.7)
  matrix = roi_geometry.roi_to_image_matrix(roi, (256, 128))
  inverse = roi_geometry.invert_affine(matrix)
  points = np.random.default_rng(0).uniform(-50, 300, (20, 2))
  np.testing.assert_allclose(
      roi_geometry.apply_affine(matrix, roi_geometry.apply_affine(inverse,
                                                                  points)),
      points, atol=1e-9)
  # cv::boxPoints order: the tensor's (0, height) is the rect's bottom-left
  # corner, centre + R (-w/2, h/2), R rotating clockwise on the image.
  c, s = math.cos(0.7), math.sin(0.7)
  bottom_left = np.array([120 - c * 45 - s * 30, 80 - s * 45 + c * 30])
  np.testing.assert_allclose(roi_geometry.apply_affine(matrix, [0, 256]),
                             bottom_left, atol=1e-9)
  np.testing.assert_allclose(roi_geometry.apply_affine(matrix, [64, 128]),
                             [120, 80], atol=1e-9)


def test_detection_to_roi_is_upright_along_hip_to_head():
  # Hip at the centre, the size/rotation point straight to its right: the
  # body points right, so the region turns by +90 degrees and the tensor's
  # top looks to the right of the hip.
  image_hw = (200, 100)
  detection = blazepose.Detection(
      1.0, (0, 0, 0, 0), np.array([[0.5, 0.5], [0.7, 0.5], [0, 0], [0, 0]]))
  roi = blazepose.detection_to_roi(detection, image_hw)
  assert roi.rotation == pytest.approx(math.pi / 2)
  assert roi.width == roi.height == pytest.approx(2 * 20 * 1.25)
  assert (roi.cx, roi.cy) == pytest.approx((50, 100))
  matrix = roi_geometry.roi_to_image_matrix(roi, (256, 256))
  top_centre = roi_geometry.apply_affine(matrix, [128, 0])
  np.testing.assert_allclose(top_centre, [50 + 25, 100], atol=1e-9)
  # Upright: the point straight above the hip.
  detection = blazepose.Detection(
      1.0, (0, 0, 0, 0), np.array([[0.5, 0.5], [0.5, 0.4], [0, 0], [0, 0]]))
  assert blazepose.detection_to_roi(detection, image_hw).rotation == 0


def test_mask_to_image_undoes_crop_roi():
  # A smooth image, so that bilinear resampling twice changes it little.
  yy, xx = np.mgrid[0:120, 0:160]
  image = (np.sin(xx / 9.0) + np.cos(yy / 7.0))[..., None].astype(np.float32)
  roi = roi_geometry.RotatedRect(80.0, 60.0, 70.0, 70.0, 0.5)
  crop = roi_geometry.crop_roi(image, roi, (128, 128), replicate=True)
  back = roi_geometry.mask_to_image(crop[..., 0], roi, (120, 160), (120, 160))
  inside = np.abs(roi_geometry.apply_affine(
      roi_geometry.invert_affine(roi_geometry.roi_to_image_matrix(
          roi, (128, 128))), np.stack([xx, yy], -1)) - 64).max(-1)
  np.testing.assert_allclose(back[inside < 60], image[..., 0][inside < 60],
                             atol=0.05)
  assert np.all(back[inside > 66] == 0)  # BORDER_ZERO outside the region.
  # A smaller output grid samples the same map at its pixel centres.
  half = roi_geometry.mask_to_image(crop[..., 0], roi, (120, 160), (60, 80))
  assert half.shape == (60, 80)


def test_landmarks_decode_and_project():
  raw = np.zeros((39, 5), np.float32)
  raw[33, :2] = (128, 192)  # Pixels of the 256x256 input.
  raw[34, :2] = (128, 64)
  cold = np.full((64, 64, 39), -20.0, np.float32)  # Nothing to refine.
  points = blazepose.decode_landmarks(raw.ravel(), cold, (256, 256))
  np.testing.assert_allclose(points, [[0.5, 0.75], [0.5, 0.25]])
  # A confident heatmap cell moves the point to it (kernel 7 around it).
  hot = cold.copy()
  hot[50, 34, 33] = 20.0
  points = blazepose.decode_landmarks(raw.ravel(), hot, (256, 256))
  np.testing.assert_allclose(points[0], [34 / 64, 50 / 64], atol=1e-6)
  # Projection: the identity for a region covering the image upright.
  roi = roi_geometry.RotatedRect(50.0, 50.0, 100.0, 100.0, 0.0)
  np.testing.assert_allclose(
      blazepose.landmarks_to_image(np.array([[0.5, 0.75]]), roi, (256, 256),
                                   (100, 100)), [[0.5, 0.75]])


def test_associate_prefers_detections_that_overlap_tracks():
  track = roi_geometry.RotatedRect(50, 50, 40, 40, 0.0)
  other = roi_geometry.RotatedRect(150, 50, 40, 40, 0.0)
  near = roi_geometry.RotatedRect(52, 50, 40, 40, 0.1)
  result = blazepose.associate([track, other], [near], 0.5)
  assert result == [other, near]
  assert blazepose.associate([track], [], 0.5) == [track]


# ------------------------------------------------------------- the models


@pytest.fixture(scope='session')
def pose_model_paths():
  """The verified models: downloaded with pip once, then from the cache."""
  return pose.fetch_models()


@pytest.fixture(scope='module')
def pose_teacher(pose_model_paths):
  detector, landmark = pose_model_paths
  return pose.PoseTeacher(detector_path=detector, landmark_path=landmark)


def test_fetched_models_are_the_published_files(pose_model_paths):
  for path, member in zip(pose_model_paths,
                          (pose.DETECTOR_MEMBER, pose.LANDMARK_MEMBER)):
    assert os.path.getsize(path) == member.size
    assert mediapipe_wheel._sha256(path) == member.sha256  # pylint: disable=protected-access


def test_pose_finds_the_person_on_carphone(pose_teacher, carphone_frames):
  masks = pose_teacher(carphone_frames)
  assert masks.shape == carphone_frames.shape[:3] and masks.dtype == np.uint8
  assert pose_teacher.class_names == ('background', 'person')
  share = masks.mean(axis=(1, 2))
  assert np.all(share > 0.2), share  # The man fills a third of the frame.
  # The two MediaPipe teachers agree on him.
  selfie_masks = selfie.SelfieTeacher()(carphone_frames)
  inter = np.logical_and(masks, selfie_masks).sum()
  union = np.logical_or(masks, selfie_masks).sum()
  assert inter / union > 0.6
  detections = pose_teacher.detect(carphone_frames[0])
  assert len(detections) == 1 and detections[0].score > 0.8


def test_pose_finds_no_one_in_synthetic_images(pose_teacher):
  rng = np.random.default_rng(0)
  noise = rng.integers(0, 256, (2, 120, 160, 3), dtype=np.uint8)
  flat = np.full((1, 120, 160, 3), 128, np.uint8)
  yy, xx = np.mgrid[0:120, 0:160]
  blobs = np.stack([(xx * 1.5) % 256, (yy * 2) % 256, (xx + yy) % 256],
                   -1)[None].astype(np.uint8)
  for frames in (noise, flat, blobs):
    assert pose_teacher(frames).max() == 0


def test_pose_masks_keep_the_frame_aspect(pose_teacher, carphone_frames):
  big = np.repeat(np.repeat(carphone_frames[:2], 3, axis=1), 3, axis=2)
  masks = pose_teacher(big)  # 432x528: scaled to fit 256x256.
  assert masks.shape == (2, 209, 256)
  small = pose_teacher(carphone_frames[:2])
  assert masks.mean() == pytest.approx(small.mean(), abs=0.03)


@pytest.mark.skipif(not os.path.exists(DIVING),
                    reason=f'no real clips at {os.path.abspath(REALDATA)}')
def test_pose_finds_the_diver_on_a_real_clip(pose_teacher):
  from airstreams_jax.data import video_io  # pylint: disable=g-import-not-at-top
  video = video_io.decode(DIVING, max_frames=40)
  frames = video.frames[:4]  # The diver stands on the board.
  start = time.perf_counter()
  masks = pose_teacher(frames)
  seconds = time.perf_counter() - start
  print(f'pose teacher: {len(frames) / seconds:.1f} frames/s on '
        f'{frames.shape[2]}x{frames.shape[1]} frames')
  first = masks[0]
  assert 0.01 < first.mean() < 0.1  # A person ~1/3 of the frame tall.
  rows, cols = np.nonzero(first)
  # Tall and thin, in the middle of the frame, standing.
  assert rows.max() - rows.min() > 3 * (cols.max() - cols.min())
  assert 100 < cols.mean() < 220


def test_tracking_off_detects_every_frame(pose_model_paths, carphone_frames):
  detector, landmark = pose_model_paths
  untracked = pose.PoseTeacher(detector_path=detector, landmark_path=landmark,
                               tracking=False)
  tracked = pose.PoseTeacher(detector_path=detector, landmark_path=landmark,
                             max_people=1)
  a, b = untracked(carphone_frames), tracked(carphone_frames)
  # Frame 0 is detected by both; later frames differ only by the region.
  np.testing.assert_array_equal(a[0], b[0])
  assert np.logical_and(a, b).sum() / np.logical_or(a, b).sum() > 0.9


# ---------------------------------------------------------------- options


@pytest.mark.parametrize('options, match', [
    (dict(threshold=1.0), r'threshold must be in \(0, 1\)'),
    (dict(min_detection_score=0.0), 'min_detection_score'),
    (dict(min_presence_score=2), 'min_presence_score'),
    (dict(max_people=0), 'max_people must be an integer >= 1'),
    (dict(max_people=1.5), 'max_people'),
    (dict(tracking='yes'), 'tracking must be true or false'),
    (dict(max_poeple=2), r"Unknown teacher_options \['max_poeple'\].*"
     'max_people'),
])
def test_pose_options_are_checked(options, match, pose_model_paths):
  detector, landmark = pose_model_paths
  with pytest.raises(base.TeacherSetupError, match=match) as info:
    factory.make_teacher('pose', options=dict(
        detector_path=detector, landmark_path=landmark, **options))
  assert '\n' not in str(info.value)


def test_pose_rejects_other_models(pose_model_paths, tmp_path):
  detector, landmark = pose_model_paths
  with pytest.raises(base.TeacherSetupError,
                     match='is not the BlazePose detector'):
    pose.PoseTeacher(detector_path=landmark, landmark_path=landmark)
  with pytest.raises(base.TeacherSetupError,
                     match='is not a BlazePose landmark model'):
    pose.PoseTeacher(detector_path=detector,
                     landmark_path=selfie.fetch_model())
  with pytest.raises(base.TeacherSetupError, match='does not exist'):
    pose.PoseTeacher(detector_path=str(tmp_path / 'gone.tflite'),
                     landmark_path=landmark)


def test_factory_builds_the_pose_teacher(pose_model_paths):
  detector, landmark = pose_model_paths
  teacher = factory.make_teacher('pose', options=dict(
      detector_path=detector, landmark_path=landmark, max_people=2,
      num_threads=1, wheel_path=None))
  assert isinstance(teacher, pose.PoseTeacher)
  assert teacher.model_paths == (detector, landmark)
  assert 'pose' in factory.TEACHERS


def test_fetch_models_from_a_wheel(tmp_path, pose_model_paths):
  wheel = tmp_path / 'mediapipe.whl'
  with zipfile.ZipFile(wheel, 'w') as z:
    for path, member in zip(pose_model_paths,
                            (pose.DETECTOR_MEMBER, pose.LANDMARK_MEMBER)):
      with open(path, 'rb') as f:
        z.writestr(member.path, f.read())
  cache = str(tmp_path / 'cache')
  paths = pose.fetch_models(cache_dir=cache, wheel_path=str(wheel))
  assert paths == tuple(mediapipe_wheel.cached_path(m, cache) for m in
                        (pose.DETECTOR_MEMBER, pose.LANDMARK_MEMBER))
  assert all(os.path.getsize(p) == m.size for p, m in
             zip(paths, (pose.DETECTOR_MEMBER, pose.LANDMARK_MEMBER)))
  # A wheel without them: one line naming both ways to supply the files.
  empty = tmp_path / 'empty.whl'
  with zipfile.ZipFile(empty, 'w') as z:
    z.writestr('other.txt', 'x')
  with pytest.raises(base.TeacherSetupError,
                     match='Cannot read.*teacher_options.detector_path and '
                     'teacher_options.landmark_path') as info:
    pose.fetch_models(cache_dir=str(tmp_path / 'c2'), wheel_path=str(empty))
  assert '\n' not in str(info.value)
