"""Input pipeline: aligned augmentation, padded eval, per-process shares."""

import threading

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from airstreams_jax.data import dataset_from_config
from airstreams_jax.data import pipeline
from configs import synthetic
from configs import video_folder as video_folder_config

import fake_datasets

LEVEL = 60  # Frame value per class id, far apart so bilinear blur can't mix.


def _blocky_example(mask_scale=1):
  """Frames whose red channel is LEVEL * class id, in 8x8 blocks."""
  rng = np.random.default_rng(0)
  classes = rng.integers(0, 4, (6, 5, 6))  # T=6, a 40x48 frame in 8px blocks.
  masks = np.kron(classes, np.ones((1, 8, 8), np.int64)).astype(np.uint8)
  video = np.zeros(masks.shape + (3,), np.uint8)
  video[..., 0] = masks * LEVEL
  video[..., 1] = rng.integers(0, 256, masks.shape)  # Unrelated content.
  masks = masks[:, ::mask_scale, ::mask_scale]  # Teacher at lower resolution.
  return {'video': tf.constant(video), 'masks': tf.constant(masks),
          'label': tf.constant(3, tf.int64)}


def _dataset_config(**overrides):
  config = synthetic.get_config('smoke').dataset
  with config.unlocked():
    config.update(overrides)
  return config


@pytest.mark.parametrize('mask_scale', [1, 2])
def test_masks_follow_frames_under_crop_and_flip(mask_scale):
  config = _dataset_config(random_flip=True, min_crop_area=0.3,
                           image_size=32, num_frames=4)
  example = _blocky_example(mask_scale)
  flipped = 0
  for seed in range(12):
    out = pipeline.preprocess_train(example, tf.constant([seed, 7], tf.int64),
                                    dataset_config=config)
    video, masks = out['video'].numpy(), out['masks'].numpy()
    assert video.shape == (4, 32, 32, 3) and masks.shape == (4, 32, 32)
    from_frames = np.rint(video[..., 0] / LEVEL)
    agreement = np.mean(from_frames == masks)
    # Only block boundaries may disagree (bilinear vs nearest resampling).
    assert agreement > 0.9, (seed, agreement)
    # The same check against the mask mirrored must fail: it can catch a
    # flip applied to one of the two only.
    assert np.mean(from_frames == masks[:, :, ::-1]) < 0.7
    reference = pipeline.preprocess_train(
        example, tf.constant([seed, 7], tf.int64),
        dataset_config=_dataset_config(random_flip=False, min_crop_area=0.3,
                                       image_size=32, num_frames=4))
    flipped += not np.array_equal(reference['video'].numpy(), video)
  assert 0 < flipped < 12  # Some clips flip, some do not.


def test_eval_clip_is_centred_and_deterministic():
  config = _dataset_config(image_size=24, num_frames=4)
  example = _blocky_example()
  a = pipeline.preprocess_eval(example, dataset_config=config)
  b = pipeline.preprocess_eval(example, dataset_config=config)
  np.testing.assert_array_equal(a['video'].numpy(), b['video'].numpy())
  assert a['video'].shape == (1, 4, 24, 24, 3)  # One view.
  # Six stored frames, four taken from the middle: frames 1..4.
  expected = tf.image.resize(example['video'][1:5, :, 4:44], (24, 24),
                             antialias=False)
  from_frames = np.rint(a['video'].numpy()[0, ..., 0] / LEVEL)
  assert np.mean(from_frames == np.rint(expected.numpy()[..., 0] / LEVEL)) > .9


def test_separate_runs_take_turns_to_build_a_dataset(tmp_path):
  """A run that needs a dataset another run is building waits for it (the
  parallel units of a sweep), then reads the dataset the other one built."""
  config = _dataset_config(data_dir=str(tmp_path))
  waiting = dataset_from_config.make_builder(config)  # Made before the data exists.
  done = threading.Event()
  def prepare():
    dataset_from_config.prepare(waiting)
    done.set()
  with dataset_from_config.build_lock(waiting.data_dir):  # The other run builds.
    thread = threading.Thread(target=prepare, daemon=True)
    thread.start()
    dataset_from_config.make_builder(config).download_and_prepare()
    assert not done.is_set()
  assert done.wait(timeout=300)
  assert waiting.info.splits['train'].num_examples == 32
  assert dataset_from_config.dataset_meta(waiting).num_classes == 6
  assert len(list(waiting.as_dataset(split='test'))) == 16


@pytest.fixture(scope='module')
def smoke_builder(data_dir):
  config = _dataset_config(data_dir=data_dir)
  builder = dataset_from_config.make_builder(config)
  dataset_from_config.prepare(builder)
  return builder, config


@pytest.mark.parametrize('batch_size,process_count', [(6, 1), (4, 2), (5, 3)])
def test_eval_padding_counts_every_example_once(smoke_builder, batch_size,
                                                process_count):
  builder, config = smoke_builder
  total = builder.info.splits['test'].num_examples
  seen, batches_per_process = [], set()
  for index in range(process_count):
    ds, num_batches = pipeline.make_eval_dataset(
        builder, config, local_batch_size=batch_size, process_index=index,
        process_count=process_count)
    batches = list(tfds.as_numpy(ds))
    assert len(batches) == num_batches
    batches_per_process.add(num_batches)
    for batch in batches:
      assert batch['video'].shape[0] == batch_size
      seen.extend(batch['label'][batch['mask']].tolist())
      for key, value in batch.items():  # Padding is zeros (False).
        assert not value[~batch['mask']].any(), key
  assert len(batches_per_process) == 1  # Every host runs as many batches.
  labels = [ex['label'] for ex in tfds.as_numpy(
      builder.as_dataset(split='test'))]
  assert len(seen) == total
  assert sorted(seen) == sorted(labels)


def test_train_batches_reproducible_from_seed(smoke_builder):
  builder, config = smoke_builder

  def first_batches(seed, process_index=0):
    ds = pipeline.make_train_dataset(
        builder, config, local_batch_size=4, seed=seed,
        process_index=process_index, process_count=2)
    return [b['video'] for b in tfds.as_numpy(ds.take(3))]

  a, b, c = first_batches(1), first_batches(1), first_batches(2)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, z) for x, z in zip(a, c))
  other_process = first_batches(1, process_index=1)
  assert not np.array_equal(a[0], other_process[0])
  # Together, two processes make the global batches that one process makes,
  # row for row (process 0's rows first, as in a global array).
  one_process = [b['video'] for b in tfds.as_numpy(pipeline.make_train_dataset(
      builder, config, local_batch_size=8, seed=1).take(3))]
  for single, p0, p1 in zip(one_process, a, other_process):
    np.testing.assert_array_equal(np.concatenate([p0, p1]), single)


def test_multi_view_clips_span_the_video_and_crops_span_the_long_side():
  num_stored, num_frames, stride = 20, 4, 2
  idx = pipeline.video_ops.view_clip_indices(
      tf.constant(num_stored), num_frames, stride, 3).numpy()
  # First clip at the start, last one ending on the last frame, one between.
  np.testing.assert_array_equal(idx[0], [0, 2, 4, 6])
  np.testing.assert_array_equal(idx[2], [13, 15, 17, 19])
  # The middle start 6.5 rounds half to even.
  np.testing.assert_array_equal(idx[1], [6, 8, 10, 12])
  # Landscape 40x100: three 40x40 squares at x = 0, 30, 60.
  boxes = pipeline.video_ops.view_crop_boxes(tf.constant([40, 100, 3]),
                                             3).numpy()
  to_pixels = boxes * np.array([39, 99, 39, 99])
  np.testing.assert_allclose(to_pixels, [[0, 0, 39, 39], [0, 30, 39, 69],
                                         [0, 60, 39, 99]], atol=1e-4)


def test_eval_views_are_clips_times_crops():
  config = _dataset_config(image_size=16, num_frames=2, eval_clips=3,
                           eval_crops=2, frame_stride=1)
  # Frame t has value 10 * t; a 16x24 frame whose columns count up.
  t, h, w = 9, 16, 24
  video = np.zeros((t, h, w, 3), np.uint8)
  video[..., 0] = 10 * np.arange(t)[:, None, None]
  video[..., 1] = np.arange(w)[None, None, :] * 10
  example = {'video': tf.constant(video), 'label': tf.constant(2, tf.int64),
             'masks': tf.zeros((t, h, w), tf.uint8)}
  out = pipeline.preprocess_eval(example, dataset_config=config)
  views = out['video'].numpy()
  assert views.shape == (6, 2, 16, 16, 3) and int(out['label']) == 2
  # Clips (first frames 0, 4, 7) x crops (left, right), clip-major.
  np.testing.assert_array_equal(views[::2, 0, 0, 0, 0], [0, 40, 70])
  assert views[0, 0, 0, 0, 1] == 0 and views[1, 0, 0, 0, 1] == 80


def test_multi_label_clip_label_is_the_union_over_its_frames():
  config = _dataset_config(image_size=8, num_frames=2, frame_stride=1,
                           min_crop_area=1.0, eval_clips=1, eval_crops=1)
  frame_labels = np.zeros((4, 5), np.uint8)
  frame_labels[0, 1] = frame_labels[1, 3] = frame_labels[3, 4] = 1
  example = {'video': tf.zeros((4, 8, 8, 3), tf.uint8),
             'masks': tf.zeros((4, 8, 8), tf.uint8),
             'frame_labels': tf.constant(frame_labels)}
  seen = set()
  for seed in range(20):
    out = pipeline.preprocess_train(example, tf.constant([seed, 1], tf.int64),
                                    dataset_config=config)
    label = out['label'].numpy()
    assert label.dtype == np.float32 and label.shape == (5,)
    seen.add(tuple(label.astype(int)))
  # Two consecutive frames starting at 0, 1 or 2.
  assert seen == {(0, 1, 0, 1, 0), (0, 0, 0, 1, 0), (0, 0, 0, 0, 1)}
  # Evaluation labels the video with every action it holds.
  out = pipeline.preprocess_eval(example, dataset_config=config)
  np.testing.assert_array_equal(out['label'].numpy(), [0, 1, 0, 1, 1])


@pytest.mark.parametrize('process_count', [1, 2])
def test_resumed_stream_continues_exactly(smoke_builder, process_count):
  builder, config = smoke_builder
  # 32 training clips, global batches of 12: step 5 starts inside epoch 1.
  local = 12 // process_count

  def batches(start_step, count, process_index):
    ds = pipeline.make_train_dataset(
        builder, config, local_batch_size=local, seed=3,
        start_step=start_step, process_index=process_index,
        process_count=process_count)
    return list(tfds.as_numpy(ds.take(count)))

  for p in range(process_count):
    straight = batches(0, 7, p)
    resumed = batches(5, 2, p)
    for a, b in zip(straight[5:], resumed):
      for key in ('video', 'masks', 'label'):
        np.testing.assert_array_equal(a[key], b[key])
  # Every epoch holds every training example once.
  labels = np.concatenate([b['label'] for b in batches(0, 8, 0)])
  if process_count == 1:
    stored = sorted(ex['label'] for ex in tfds.as_numpy(
        builder.as_dataset(split='train')))
    assert sorted(labels[:32].tolist()) == stored
    assert sorted(labels[32:64].tolist()) == stored


# ------------------------------------------- masks and truth of eval views


def _view_scale(box, height, width, size):
  """(x, y) pixels of a size² view per pixel of an h x w field: the rule of
  `tf.image.crop_and_resize`, written out independently of video_ops."""
  y0, x0, y1, x1 = box
  return np.array([(size - 1) / ((x1 - x0) * (width - 1)),
                   (size - 1) / ((y1 - y0) * (height - 1))])


def test_resize_flow_scales_displacements_with_the_view():
  flow = tf.constant(np.broadcast_to(np.float32([2, -1]), (3, 32, 32, 2)))
  out = pipeline.video_ops.resize_flow(flow, tf.constant([0., 0., 1., 1.]),
                                       64).numpy()
  assert out.shape == (3, 64, 64, 2) and out.dtype == np.float32
  # 63 / 31 per pixel: (4.065, -2.032).
  np.testing.assert_allclose(out, np.broadcast_to(
      [2 * 63 / 31, -63 / 31], out.shape), rtol=1e-6)
  # A crop of half the height, and int8 input as stored.
  box = np.float32([0.25, 0.1, 0.75, 0.9])
  out = pipeline.video_ops.resize_flow(tf.cast(flow, tf.int8), box,
                                       16).numpy()
  expected = np.float32([2, -1]) * _view_scale(box, 32, 32, 16)
  np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape),
                             rtol=1e-5)


def test_resize_flow_matches_how_frames_are_resized():
  # Content that moves by (dx, dy) stored pixels must move by the resized
  # flow in the view: resize two frames of a linear ramp (which bilinear
  # interpolation keeps exact) and measure the shift.
  height, width, size, shift = 24, 40, 16, np.array([3.0, -2.0])
  y, x = np.mgrid[:height, :width].astype(np.float32)
  ramps = np.stack([x, y], axis=-1)  # Coordinates as content.
  frames = np.stack([ramps, ramps - shift])  # Frame 1: content moved.
  box = np.float32([0.2, 0.3, 0.9, 0.8])
  views = tf.image.crop_and_resize(frames, np.stack([box, box]), [0, 1],
                                   (size, size)).numpy()
  # Frame 1 at q equals frame 0 at q - d: the ramp values differ by d times
  # the ramp's slope per view pixel.
  slope = views[0, 1, 1] - views[0, 0, 0]
  measured = (views[0] - views[1])[0, 0] / slope
  flow = np.broadcast_to(shift.astype(np.float32), (1, height, width, 2))
  out = pipeline.video_ops.resize_flow(flow, box, size).numpy()
  np.testing.assert_allclose(out[0, 0, 0], measured, rtol=1e-4)


def test_consecutive_frames():
  def valid(idx):
    return pipeline.video_ops.consecutive_frames(tf.constant(idx)).numpy()
  np.testing.assert_array_equal(valid([3, 4, 5, 6]), [1, 1, 1, 0])
  # A short video repeats its last frame; a stride skips frames.
  np.testing.assert_array_equal(valid([3, 4, 5, 5]), [1, 1, 0, 0])
  np.testing.assert_array_equal(valid([0, 2, 4, 6]), [0, 0, 0, 0])


def _example_with_truth(num_stored=9, mask_scale=2):
  """A landscape video [num_stored, 48, 80] of 16 px blocks of class ids in
  frames, masks and a flow whose u1 is the class id and u2 minus it, so
  that resampling can be traced in every field."""
  rng = np.random.default_rng(1)
  blocks = rng.integers(0, 4, (num_stored, 3, 5))
  classes = np.kron(blocks, np.ones((1, 16, 16), np.int64)).astype(np.uint8)
  video = np.zeros(classes.shape + (3,), np.uint8)
  video[..., 0] = classes * LEVEL
  flow = np.stack([classes, -classes.astype(np.int8)], axis=-1)
  return {'video': tf.constant(video),
          'masks': tf.constant(classes[:, ::mask_scale, ::mask_scale]),
          'true_masks': tf.constant(classes),
          'true_flow': tf.constant(flow.astype(np.int8)),
          'label': tf.constant(1, tf.int64)}


@pytest.mark.parametrize('image_size', [16, 32])
@pytest.mark.parametrize('frame_stride', [1, 2])
def test_eval_truth_follows_every_view(image_size, frame_stride):
  config = _dataset_config(image_size=image_size, num_frames=4, eval_clips=2,
                           eval_crops=3, frame_stride=frame_stride)
  example = _example_with_truth()
  out = pipeline.preprocess_eval(example, dataset_config=config)
  num_views, shape = 6, (4, image_size, image_size)
  assert out['masks'].shape == out['true_masks'].shape == (num_views,) + shape
  assert out['masks'].dtype == out['true_masks'].dtype == tf.uint8
  assert out['true_flow'].shape == (num_views,) + shape + (2,)
  assert out['true_flow'].dtype == tf.float32
  assert out['true_flow_valid'].shape == (num_views, 4)
  assert out['true_flow_valid'].dtype == tf.bool
  from_frames = np.rint(out['video'].numpy()[..., 0] / LEVEL)
  true_masks = out['true_masks'].numpy()
  # Masks follow the frames (bilinear frames blend the block edges, more so
  # when shrunk 3x to 16 px), the teacher's stored at half resolution too.
  assert np.mean(true_masks == from_frames) > 0.85
  assert np.mean(out['masks'].numpy() == true_masks) > 0.95
  boxes = pipeline.video_ops.view_crop_boxes(tf.constant([48, 80, 3]),
                                             3).numpy()
  flow = out['true_flow'].numpy()
  for view in range(num_views):
    scale = _view_scale(boxes[view % 3], 48, 80, image_size)
    # Square crops of a landscape frame: x and y scale alike here.
    np.testing.assert_allclose(scale[0], scale[1], rtol=1e-5)
    # The field is resampled exactly like the true masks, then rescaled.
    np.testing.assert_allclose(flow[view, ..., 0] / scale[0],
                               true_masks[view], atol=1e-4)
    np.testing.assert_allclose(flow[view, ..., 1] / scale[1],
                               -true_masks[view].astype(np.float32),
                               atol=1e-4)
  # Clips 0..3 and 5..8 of the 9 stored frames (stride 1); stride 2 never
  # shows the displacement of one stored frame.
  valid = out['true_flow_valid'].numpy()
  expected = [frame_stride == 1] * 3 + [False]
  np.testing.assert_array_equal(valid, np.tile(expected, (num_views, 1)))


def test_eval_views_of_datasets_without_truth():
  config = _dataset_config(image_size=32, num_frames=4, eval_clips=1,
                           eval_crops=3)
  example = _example_with_truth(num_stored=2)  # Shorter than a clip.
  del example['true_masks'], example['true_flow']
  out = pipeline.preprocess_eval(example, dataset_config=config)
  assert set(out) == {'video', 'label', 'masks'}
  assert out['masks'].shape == (3, 4, 32, 32)
  from_frames = np.rint(out['video'].numpy()[..., 0] / LEVEL)
  assert np.mean(out['masks'].numpy() == from_frames) > 0.9
  # Without teacher masks either (predicting a video file): frames alone.
  del example['masks']
  out = pipeline.preprocess_eval(example, dataset_config=config)
  assert set(out) == {'video', 'label'}


def test_eval_batches_carry_masks_and_the_truth(smoke_builder):
  builder, config = smoke_builder
  num_frames, size = config.num_frames, config.image_size
  stored = {ex['video'].tobytes(): ex for ex in tfds.as_numpy(
      builder.as_dataset(split=config.eval_split))}
  # The smoke views are the whole stored clip at its stored size.
  assert builder.builder_config.num_frames == num_frames
  assert builder.builder_config.image_size == size
  ds, _ = pipeline.make_eval_dataset(builder, config, local_batch_size=6)
  spec = ds.element_spec
  expected_spec = {
      'masks': ((None, 1, num_frames, size, size), tf.uint8),
      'true_masks': ((None, 1, num_frames, size, size), tf.uint8),
      'true_flow': ((None, 1, num_frames, size, size, 2), tf.float32),
      'true_flow_valid': ((None, 1, num_frames), tf.bool),
  }
  assert set(spec) == {'video', 'label', 'mask'} | set(expected_spec)
  for key, (shape, dtype) in expected_spec.items():
    assert spec[key].shape.as_list() == list(shape), key
    assert spec[key].dtype == dtype, key
  seen = 0
  for batch in tfds.as_numpy(ds):
    for row in np.flatnonzero(batch['mask']):
      example = stored[batch['video'][row, 0].tobytes()]
      for key in ('masks', 'true_masks', 'true_flow'):
        np.testing.assert_array_equal(batch[key][row, 0], example[key])
      np.testing.assert_array_equal(batch['true_flow_valid'][row, 0],
                                    [True] * (num_frames - 1) + [False])
      seen += 1
  assert seen == len(stored)


def test_train_batches_ignore_the_truth(smoke_builder):
  builder, config = smoke_builder
  ds = pipeline.make_train_dataset(builder, config, local_batch_size=2,
                                   seed=0)
  assert set(ds.element_spec) == {'video', 'masks', 'label'}


def test_real_video_eval_batches_have_masks_but_no_truth(tmp_path):
  # A two-class folder of real videos with the `files` teacher's masks,
  # stored smaller than the frames and with unknown static shapes.
  root = tmp_path / 'videos'
  for seed, path in enumerate(['train/a/0.mp4', 'train/b/1.avi',
                               'test/a/2.avi', 'test/b/3.mp4']):
    fake_datasets.write_video(str(root / path), seed)
    fake_datasets.write_masks(str(root / path))
  (root / 'classes.txt').write_text(
      '\n'.join(fake_datasets.MASK_CLASSES) + '\n')
  config = video_folder_config.get_config('smoke').dataset
  with config.unlocked():
    config.update(dict(manual_dir=str(root), data_dir=str(tmp_path / 'tfds'),
                       teacher='files', build_workers=0, image_size=16,
                       num_frames=4, eval_clips=2, eval_crops=3))
  builder = dataset_from_config.make_builder(config)
  dataset_from_config.prepare(builder)
  ds, num_batches = pipeline.make_eval_dataset(builder, config,
                                               local_batch_size=3)
  batches = list(tfds.as_numpy(ds))
  assert len(batches) == num_batches == 1
  (batch,) = batches
  assert set(batch) == {'video', 'label', 'mask', 'masks'}
  assert batch['masks'].shape == (3, 6, 4, 16, 16)
  assert batch['masks'].dtype == np.uint8
  np.testing.assert_array_equal(batch['mask'], [True, True, False])
  # The teacher's moving 'person' bar shows in every view.
  assert (batch['masks'][:2] == 1).any(axis=(2, 3, 4)).all()
  assert not batch['masks'][2].any()
