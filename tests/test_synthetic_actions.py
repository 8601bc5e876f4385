"""Tests for the synthetic action generator and its TFDS builder."""

import collections
import hashlib

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


def _warp(ex, t, flow=None):
  """Follows each pixel of frame t along the flow to frame t + 1.

  Returns:
    (lands, diff): lands [S, S] is True where the target pixel is in frame
    and shows the same category as the source in the masks; diff [S, S] is
    the largest per-channel |frame t+1 at target - frame t at source|.
  """
  flow = (ex["flow"] if flow is None else flow).astype(np.int64)
  video, masks = ex["video"].astype(np.int32), ex["masks"]
  size = masks.shape[1]
  y, x = np.mgrid[:size, :size]
  ty, tx = y + flow[t, ..., 1], x + flow[t, ..., 0]  # (u1, u2) = (dx, dy).
  inside = (ty >= 0) & (ty < size) & (tx >= 0) & (tx < size)
  ty, tx = np.clip(ty, 0, size - 1), np.clip(tx, 0, size - 1)
  lands = inside & (masks[t + 1][ty, tx] == masks[t])
  diff = np.abs(video[t + 1][ty, tx] - video[t]).max(axis=-1)
  return lands, diff


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
  for bad in (-1, 3, 1.0, True):
    with pytest.raises(ValueError, match="num_distractors"):
      gen.generate_clip(rng, 0, _NUM_FRAMES, _IMAGE_SIZE, bad)
    with pytest.raises(ValueError, match="num_distractors"):
      synthetic_actions.make_config(num_distractors=bad)


def test_shapes_dtypes_and_balanced_labels():
  examples = _split(num_examples=30, num_classes=6)
  keys = [key for key, _ in examples]
  assert len(set(keys)) == len(keys)
  for _, ex in examples:
    assert set(ex) == {"video", "masks", "flow", "label"}
    assert ex["video"].shape == (_NUM_FRAMES, _IMAGE_SIZE, _IMAGE_SIZE, 3)
    assert ex["video"].dtype == np.uint8
    assert ex["masks"].shape == (_NUM_FRAMES, _IMAGE_SIZE, _IMAGE_SIZE)
    assert ex["masks"].dtype == np.uint8
    assert ex["flow"].shape == (_NUM_FRAMES, _IMAGE_SIZE, _IMAGE_SIZE, 2)
    assert ex["flow"].dtype == np.int8
    assert not ex["flow"][-1].any()  # The last frame has no successor.
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
    np.testing.assert_array_equal(ea["flow"], eb["flow"])
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


@pytest.mark.parametrize("num_distractors", [0, 1])
def test_fewer_distractors(num_distractors):
  examples = list(gen.generate_split(
      0, 60, 6, _NUM_FRAMES, _IMAGE_SIZE, num_distractors=num_distractors))
  others_seen = collections.Counter()
  for _, ex in examples:
    actor = gen.label_category(ex["label"])
    present = set(np.unique(ex["masks"])) - {0}
    # The actor is always there, with exactly num_distractors others.
    assert actor in present
    others = present - {actor}
    assert len(others) == num_distractors, (ex["label"], present)
    others_seen.update(others)
    # The labelled motion is still the actor's.
    step = _STEPS[gen.MOTION_NAMES[gen.label_motion(ex["label"])]]
    track = _centroids(ex["masks"], actor)
    moved = np.sign(np.round(track[-1] - track[0]))
    assert tuple(moved) == step
    # And the true flow still carries each frame onto the next.
    for t in range(_NUM_FRAMES - 1):
      lands, diff = _warp(ex, t)
      assert lands.mean() > 0.8
      assert np.all(diff[lands] <= 2 * gen.PIXEL_NOISE + 1e-9)
  if num_distractors:
    # Which category stands beside the actor varies.
    assert len(others_seen) == 3


# sha256 of video and masks bytes of gen.generate_clip(default_rng(seed),
# label, T, S), and of a whole split, computed before the generator returned
# the true flow: storing the truth must not change a single pixel.
_PINNED_CLIPS = [
    (0, 0, 4, 32,
     "3e5eb6efe32718d72ec7f8e6b1ca6fa50f2421212c76aee1580407d87c80dc87"),
    (1, 5, 8, 64,
     "4662ced76282cc6a053234deb1378b110df209693ee3b4de8a44fe4dbc51a767"),
    (2, 10, 4, 32,
     "c418a6184b36eb3be51f7bd3109b792309dfe67620ab68c6bb8aa8a307542254"),
    (3, 7, 8, 48,
     "8f658b664a832bea6842515fb9fa77995c2c785f7ee5544fd4585a6948881b8f"),
]
_PINNED_SPLIT = (
    "d0a5e177750eade2f55253be465c857b4dd0695d46ca1d40990dcccdd14e1aa0")


@pytest.mark.parametrize(
    "seed,label,num_frames,image_size,expected", _PINNED_CLIPS,
    ids=[f"seed{c[0]}-label{c[1]}-t{c[2]}-s{c[3]}" for c in _PINNED_CLIPS])
def test_clips_are_unchanged(seed, label, num_frames, image_size, expected):
  clip = gen.generate_clip(np.random.default_rng(seed), label, num_frames,
                           image_size)
  digest = hashlib.sha256(clip["video"].tobytes() + clip["masks"].tobytes())
  assert digest.hexdigest() == expected


def test_split_is_unchanged():
  digest = hashlib.sha256()
  for key, ex in gen.generate_split(0, 12, 12, 4, 32, split_index=1):
    digest.update(key.encode())
    digest.update(bytes([ex["label"]]))
    digest.update(ex["video"].tobytes())
    digest.update(ex["masks"].tobytes())
  assert digest.hexdigest() == _PINNED_SPLIT


@pytest.mark.parametrize("num_frames,image_size", [(4, 32), (8, 64)])
def test_true_flow_carries_each_frame_onto_the_next(num_frames, image_size):
  examples = _split(num_examples=24, num_classes=12, num_frames=num_frames,
                    image_size=image_size)
  assert {ex["label"] for _, ex in examples} == set(range(12))
  panning = 0
  for _, ex in examples:
    actor = gen.label_category(ex["label"])
    for t in range(num_frames - 1):
      lands, diff = _warp(ex, t)
      masks = ex["masks"][t]
      # Objects are flat colours, the background a texture sliding by whole
      # pixels: the content matches up to the noise of the two frames.
      for pixels in (masks == actor, masks != 0, masks == 0):
        assert (lands & pixels).sum() > 0.5 * pixels.sum()
        assert diff[lands & pixels].max() <= 2 * gen.PIXEL_NOISE
    if ex["flow"][0][ex["masks"][0] == 0].any():
      # The texture test has teeth: ignoring the pan breaks it.
      lands, diff = _warp(ex, 0, np.zeros_like(ex["flow"]))
      background = lands & (ex["masks"][0] == 0)
      assert diff[background].max() > 2 * gen.PIXEL_NOISE
      panning += 1
  assert panning >= len(examples) // 2


@pytest.mark.parametrize("num_frames,image_size", [(4, 32), (8, 64)])
def test_true_flow_is_the_labelled_motion(num_frames, image_size):
  speed = gen.actor_speed(num_frames, image_size)
  pan = gen.background_speed(num_frames, image_size)
  for _, ex in _split(num_examples=24, num_classes=12, num_frames=num_frames,
                      image_size=image_size):
    label = ex["label"]
    dy, dx = _STEPS[gen.MOTION_NAMES[gen.label_motion(label)]]
    flow, masks = ex["flow"][:-1], ex["masks"][:-1]
    actor = flow[masks == gen.label_category(label)]
    np.testing.assert_array_equal(
        np.unique(actor, axis=0), [[dx * speed, dy * speed]])
    # Distractors jitter by at most one pixel per frame and axis.
    others = flow[(masks != 0) & (masks != gen.label_category(label))]
    assert np.abs(others).max() <= 2
    # One camera pan for the whole clip, slower than the actor.
    background = np.unique(flow[masks == 0], axis=0)
    assert len(background) == 1 and np.abs(background).max() <= pan


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
  # The default distractor count keeps the names (and data directories) of
  # datasets built before the option; another count gets its own.
  assert synthetic_actions.make_config(
      **options, num_distractors=2) is cfg
  fewer = synthetic_actions.make_config(**options, num_distractors=0)
  assert fewer.name == "c6_t8_s64_n1024x256_seed0_d0"
  assert fewer.num_distractors == 0


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
  assert spec["true_masks"].shape == (_NUM_FRAMES, _IMAGE_SIZE, _IMAGE_SIZE)
  assert spec["true_masks"].dtype == tf.uint8
  assert spec["true_flow"].shape == (
      _NUM_FRAMES, _IMAGE_SIZE, _IMAGE_SIZE, 2)
  assert spec["true_flow"].dtype == tf.int8
  assert spec["label"].dtype == tf.int64
  assert str(built.info.version) == "1.1.0"
  labels = [int(ex["label"]) for ex in ds.as_numpy_iterator()]
  assert collections.Counter(labels) == {k: 2 for k in range(6)}
  # The metadata survives a round trip through the data directory.
  reloaded = tfds.builder_from_directory(built.data_dir)
  assert reloaded.info.metadata["mask_class_names"] == list(
      gen.CATEGORY_NAMES)


@pytest.mark.parametrize("split,split_index,num_examples",
                         [("train", 0, 12), ("test", 1, 6)])
def test_dataset_matches_generator(built, split, split_index, num_examples):
  def digest(ex, masks="masks", flow="true_flow"):
    return (ex["label"], ex["video"].tobytes(), ex[masks].tobytes(),
            ex[flow].tobytes())

  examples = list(built.as_dataset(split=split).as_numpy_iterator())
  stored = [digest(ex) for ex in examples] + [
      digest(ex, masks="true_masks") for ex in examples]
  expected = [digest(ex, flow="flow") for _, ex in _split(
      num_examples=num_examples, split_index=split_index)]
  # Without corruption the teacher's masks are the true ones.
  assert sorted(stored) == sorted(expected * 2)


def test_true_masks_escape_the_teachers_corruption(tmp_path, built):
  dropped = _build(tmp_path, oracle_drop_prob=1.0)
  clean = {ex["video"].tobytes(): ex
           for ex in built.as_dataset(split="test").as_numpy_iterator()}
  for ex in dropped.as_dataset(split="test").as_numpy_iterator():
    assert not ex["masks"].any()  # Every object class dropped.
    assert set(np.unique(ex["true_masks"])) == {0, 1, 2, 3}
    same_clip = clean[ex["video"].tobytes()]
    np.testing.assert_array_equal(ex["true_masks"], same_clip["true_masks"])
    np.testing.assert_array_equal(ex["true_flow"], same_clip["true_flow"])


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
