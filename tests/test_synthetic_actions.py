"""Tests for the synthetic action generator and its TFDS builder."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from airstreams_jax.data import synthetic_actions
from airstreams_jax.data import synthetic_generator as gen

# Tiny sizes keep the whole module to a few seconds.
_NUM_FRAMES = 4
_IMAGE_SIZE = 32
_FOREGROUND = (1, 2, 3)
# (dy, dx) per motion name, written out independently of the generator's own
# table so that a mix-up there is caught; y grows downwards.
_STEPS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}


def _split(seed=0, num_examples=24, num_classes=6, num_frames=_NUM_FRAMES,
           image_size=_IMAGE_SIZE, split_index=0):
  return list(gen.generate_split(
      seed, num_examples, num_classes, num_frames, image_size,
      split_index=split_index))


def _centroids(masks, category):
  """[T, 2] (y, x) centroid of `category` in each frame."""
  out = []
  for frame in masks:
    ys, xs = np.nonzero(frame == category)
    assert ys.size, f"category {category} invisible in a frame"
    out.append((ys.mean(), xs.mean()))
  return np.array(out)


# ---------------------------------------------------------------- generator


def test_class_names():
  assert gen.CATEGORY_NAMES == ("background", "person", "ball", "box")
  assert gen.class_names(6) == [
      "person_right", "ball_right", "box_right",
      "person_left", "ball_left", "box_left",
  ]
  names = gen.class_names(gen.MAX_NUM_CLASSES)
  assert len(names) == 3 * len(gen.MOTION_NAMES) == len(set(names))
  for k, name in enumerate(names):
    category, motion = name.split("_")
    assert category == gen.CATEGORY_NAMES[1 + k % 3]
    assert motion == gen.MOTION_NAMES[k // 3]


@pytest.mark.parametrize("num_classes", [-1, 0, 1, 13, 100])
def test_num_classes_validation(num_classes):
  pattern = rf"^num_classes must be in \[2, 12\], got {num_classes}\.$"
  with pytest.raises(ValueError, match=pattern):
    gen.class_names(num_classes)
  with pytest.raises(ValueError, match=pattern):
    next(gen.generate_split(0, 4, num_classes, _NUM_FRAMES, _IMAGE_SIZE))
  with pytest.raises(ValueError, match=pattern):
    synthetic_actions.make_config(num_classes=num_classes)


def test_other_validation():
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="label"):
    gen.generate_clip(rng, 12, _NUM_FRAMES, _IMAGE_SIZE)
  with pytest.raises(ValueError, match="num_frames"):
    gen.generate_clip(rng, 0, 1, _IMAGE_SIZE)
  with pytest.raises(ValueError, match="image_size"):
    gen.generate_clip(rng, 0, _NUM_FRAMES, 8)
  with pytest.raises(ValueError, match="seed"):
    _split(seed=-1)


def test_shapes_dtypes_and_balanced_labels():
  examples = _split(num_examples=30, num_classes=6)
  keys = [key for key, _ in examples]
  assert len(set(keys)) == len(keys)
  for _, ex in examples:
    assert set(ex) == {"video", "masks", "label"}
    assert ex["video"].shape == (_NUM_FRAMES, _IMAGE_SIZE, _IMAGE_SIZE, 3)
    assert ex["video"].dtype == np.uint8
    assert ex["masks"].shape == (_NUM_FRAMES, _IMAGE_SIZE, _IMAGE_SIZE)
    assert ex["masks"].dtype == np.uint8
    assert isinstance(ex["label"], int)
  labels = [ex["label"] for _, ex in examples]
  assert collections.Counter(labels) == {k: 5 for k in range(6)}
  # Shuffled, not in i % num_classes order.
  assert labels != [i % 6 for i in range(30)]


def test_generator_is_deterministic():
  a, b = _split(seed=3), _split(seed=3)
  for (ka, ea), (kb, eb) in zip(a, b, strict=True):
    assert ka == kb and ea["label"] == eb["label"]
    np.testing.assert_array_equal(ea["video"], eb["video"])
    np.testing.assert_array_equal(ea["masks"], eb["masks"])
  for other in (_split(seed=4), _split(seed=3, split_index=1)):
    assert not any(
        np.array_equal(ea["video"], eo["video"])
        for (_, ea), (_, eo) in zip(a, other))


def test_clip_depends_only_on_its_rng():
  rng_a = np.random.default_rng(7)
  rng_b = np.random.default_rng(7)
  clip_a = gen.generate_clip(rng_a, 5, _NUM_FRAMES, _IMAGE_SIZE)
  clip_b = gen.generate_clip(rng_b, 5, _NUM_FRAMES, _IMAGE_SIZE)
  np.testing.assert_array_equal(clip_a["video"], clip_b["video"])
  np.testing.assert_array_equal(clip_a["masks"], clip_b["masks"])


@pytest.mark.parametrize("num_frames,image_size", [(4, 32), (8, 64)])
def test_every_category_visible_in_every_frame(num_frames, image_size):
  for _, ex in _split(num_examples=24, num_classes=12, num_frames=num_frames,
                      image_size=image_size):
    for frame in ex["masks"]:
      assert set(np.unique(frame)) == {0, 1, 2, 3}


@pytest.mark.parametrize("num_frames,image_size", [(4, 32), (8, 64)])
def test_masks_agree_with_video(num_frames, image_size):
  for _, ex in _split(num_examples=24, num_classes=12, num_frames=num_frames,
                      image_size=image_size):
    video = ex["video"].astype(np.int32)
    for frame, masks in zip(video, ex["masks"]):
      background = frame[masks == 0].mean(axis=0)
      for category in _FOREGROUND:
        pixels = frame[masks == category]
        # Each object is one flat colour plus +-PIXEL_NOISE, so a mask pixel
        # painted by another object or the texture would break this bound.
        spread = pixels.max(axis=0) - pixels.min(axis=0)
        assert spread.max() <= 2 * gen.PIXEL_NOISE
        # And it stands out from the background.
        assert np.linalg.norm(pixels.mean(axis=0) - background) > 40


@pytest.mark.parametrize("num_frames,image_size", [(4, 32), (8, 64)])
def test_actor_moves_as_labelled_and_distractors_stay(num_frames,
                                                      image_size):
  speed = gen.actor_speed(num_frames, image_size)
  assert speed >= 2
  assert gen.background_speed(num_frames, image_size) < speed
  examples = _split(num_examples=60, num_classes=12, num_frames=num_frames,
                    image_size=image_size)
  motions_seen = set()
  exact = 0
  for _, ex in examples:
    label = ex["label"]
    actor = gen.label_category(label)
    motion = gen.label_motion(label)
    motions_seen.add(motion)
    step = _STEPS[gen.MOTION_NAMES[motion]]
    expected = np.arange(num_frames)[:, None] * speed * np.array(step)
    track = _centroids(ex["masks"], actor)
    error = np.abs(track - track[0] - expected)
    # Occasional partial occlusion by a distractor (the layout cannot always
    # avoid it) shifts a centroid a little, never by a whole step.
    assert error.max() <= 1.5, (gen.class_names(12)[label], track)
    moving = True
    for category in set(_FOREGROUND) - {actor}:
      track = _centroids(ex["masks"], category)
      spread = track.max(axis=0) - track.min(axis=0)  # Jitter is +-1 px.
      assert spread.max() <= 2.5
      moving &= spread.max() <= 2.0
    exact += moving and error.max() < 1e-6
  assert {gen.MOTION_NAMES[m] for m in motions_seen} == set(_STEPS)
  assert exact >= 0.9 * len(examples)


# ------------------------------------------------------------------ builder


def _build(data_dir, **kwargs):
  options = dict(num_classes=6, num_frames=_NUM_FRAMES,
                 image_size=_IMAGE_SIZE, num_train=12, num_test=6, seed=0)
  options.update(kwargs)
  builder = synthetic_actions.SyntheticActions(
      config=synthetic_actions.make_config(**options), data_dir=data_dir)
  builder.download_and_prepare()
  return builder


def _split_files(builder):
  files = sorted(
      p for p in builder.data_path.iterdir() if ".tfrecord" in p.name)
  assert {p.name.split(".")[0] for p in files} == {
      "synthetic_actions-train", "synthetic_actions-test"}
  return {p.name: p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  return _build(tmp_path_factory.mktemp("tfds"))


def test_config_names():
  cfg = synthetic_actions.make_config(6, 8, 64, 1024, 256, 0)
  assert cfg.name == "c6_t8_s64_n1024x256_seed0"
  names = [c.name for c in synthetic_actions.SyntheticActions.BUILDER_CONFIGS]
  assert names == ["c6_t8_s64_n1024x256_seed0", "c6_t8_s32_n256x64_seed0"]
  # Predefined options give back the registered instance (TFDS requires it).
  assert cfg is synthetic_actions.SyntheticActions.BUILDER_CONFIGS[0]
  options = dict(num_classes=6, num_frames=8, image_size=64, num_train=1024,
                 num_test=256, seed=0)
  seen = {cfg.name}
  for key, value in [("num_classes", 7), ("num_frames", 9),
                     ("image_size", 32), ("num_train", 1000),
                     ("num_test", 200), ("seed", 1)]:
    other = synthetic_actions.make_config(**{**options, key: value})
    assert getattr(other, key) == value
    seen.add(other.name)
  assert len(seen) == 7


def test_features_and_shapes(built):
  info = built.info
  assert info.features["label"].names == gen.class_names(6)
  assert info.metadata["mask_class_names"] == list(gen.CATEGORY_NAMES)
  assert synthetic_actions.NUM_SEG_CLASSES == 4
  assert info.splits["train"].num_examples == 12
  assert info.splits["test"].num_examples == 6
  ds = built.as_dataset(split="train")
  spec = ds.element_spec
  assert spec["video"].shape == (_NUM_FRAMES, _IMAGE_SIZE, _IMAGE_SIZE, 3)
  assert spec["video"].dtype == tf.uint8
  assert spec["masks"].shape == (_NUM_FRAMES, _IMAGE_SIZE, _IMAGE_SIZE)
  assert spec["masks"].dtype == tf.uint8
  assert spec["label"].dtype == tf.int64
  labels = [int(ex["label"]) for ex in ds.as_numpy_iterator()]
  assert collections.Counter(labels) == {k: 2 for k in range(6)}
  # The metadata survives a round trip through the data directory.
  reloaded = tfds.builder_from_directory(built.data_dir)
  assert reloaded.info.metadata["mask_class_names"] == list(
      gen.CATEGORY_NAMES)


@pytest.mark.parametrize("split,split_index,num_examples",
                         [("train", 0, 12), ("test", 1, 6)])
def test_dataset_matches_generator(built, split, split_index, num_examples):
  def digest(ex):
    return ex["label"], ex["video"].tobytes(), ex["masks"].tobytes()

  stored = sorted(
      digest(ex) for ex in built.as_dataset(split=split).as_numpy_iterator())
  expected = sorted(digest(ex) for _, ex in _split(
      num_examples=num_examples, split_index=split_index))
  assert stored == expected


def test_build_is_byte_deterministic(tmp_path, built):
  again = _split_files(_build(tmp_path / "again"))
  assert again == _split_files(built)
  other = _split_files(_build(tmp_path / "other", seed=1))
  assert other.keys() == again.keys()
  for name in again:
    assert other[name] != again[name]


def test_encode_png_frames_round_trip():
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, size=(3, 5, 7, 3), dtype=np.uint8)
  encoded = synthetic_actions.encode_png_frames(video)
  assert len(encoded) == 3
  for frame, png in zip(video, encoded):
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), frame)
  with pytest.raises(ValueError):
    synthetic_actions.encode_png_frames(video.astype(np.int32))
