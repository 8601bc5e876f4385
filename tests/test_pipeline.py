"""Input pipeline: aligned augmentation, padded eval, per-process shares."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from airstreams_jax.data import builders
from airstreams_jax.data import pipeline
from configs import synthetic

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


@pytest.fixture(scope='module')
def smoke_builder(data_dir):
  config = _dataset_config(data_dir=data_dir)
  builder = builders.make_builder(config)
  builders.prepare(builder)
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
      assert not batch['video'][~batch['mask']].any()  # Padding is zeros.
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
