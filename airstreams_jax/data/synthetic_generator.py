"""Pure-NumPy generator of synthetic action clips.

Each clip shows one object of every category (person, ball, box) over a
textured, slowly panning background. Exactly one of them, the actor, moves
steadily in one of `MOTION_NAMES`; the other two (distractors) stay still or
jitter by at most one pixel. The label encodes (actor category, motion), so a
model must use both object identity and motion: appearance alone is ambiguous
because every category is present in every clip, and motion alone is ambiguous
because every category can be the actor.

`num_distractors` (2 by default) makes the task easier for appearance: with 1,
one of the two other categories stands still beside the actor (appearance
rules out one category); with 0, the actor is alone, so its shape alone tells
its category and only the direction needs motion.

Per-pixel teacher masks with category ids (`CATEGORY_NAMES`) are returned
alongside the video; they are produced by the same paste operations that draw
the pixels, so they agree exactly with what is visible (occlusion included).
So is the true optical flow: every object and the background texture move by
whole pixels, so the displacement of the content at each pixel is known
exactly, which lets learned masks and flow be scored against the truth.

Clips are deterministic functions of (seed, split_index, example index), so a
split can be regenerated bit-for-bit in any order.
"""

from collections.abc import Iterator
from typing import Any

import numpy as np

CATEGORY_NAMES = ("background", "person", "ball", "box")
MOTION_NAMES = ("right", "left", "down", "up")

# (dy, dx) unit steps in image coordinates (y grows downwards), aligned with
# `MOTION_NAMES`.
_MOTION_STEPS = ((0, 1), (0, -1), (1, 0), (-1, 0))

# Foreground categories in class order: class k has category
# _ACTOR_CATEGORIES[k % 3] and motion MOTION_NAMES[k // 3].
_ACTOR_CATEGORIES = (1, 2, 3)
_NUM_ACTOR_CATEGORIES = len(_ACTOR_CATEGORIES)

MIN_NUM_CLASSES = 2
MAX_NUM_CLASSES = _NUM_ACTOR_CATEGORIES * len(MOTION_NAMES)
MIN_IMAGE_SIZE = 16
MAX_NUM_DISTRACTORS = _NUM_ACTOR_CATEGORIES - 1

# Sprite sizes as fractions of the image size, so clips look alike at every
# resolution.
_PERSON_HEIGHT_FRAC = 0.4
_PERSON_ASPECT = 0.6  # width / height
_BALL_DIAMETER_FRAC = 0.24
_BOX_SIDE_FRAC = 0.2
_SCALE_RANGE = (0.85, 1.15)

# Largest possible sprite extent as a fraction of the image size. The actor
# speed is derived from it so that every actor fits its whole trajectory.
_MAX_EXTENT_FRAC = _PERSON_HEIGHT_FRAC * _SCALE_RANGE[1]

# Uniform per-pixel noise amplitude (values are perturbed by -A..A).
PIXEL_NOISE = 3

# Low-contrast background: per-clip base colour range and texture amplitude.
_BG_BASE_RANGE = (70, 186)
_BG_AMPLITUDE_RANGE = (8.0, 20.0)
# Objects must differ from the background base colour by at least this L2
# distance so they never vanish into the texture.
_MIN_OBJECT_CONTRAST = 100.0

# Distractors are placed by rejection sampling among this many candidates.
_NUM_PLACEMENT_CANDIDATES = 64


def _check_num_classes(num_classes: int) -> None:
  if not MIN_NUM_CLASSES <= num_classes <= MAX_NUM_CLASSES:
    raise ValueError(
        f"num_classes must be in [{MIN_NUM_CLASSES}, {MAX_NUM_CLASSES}], "
        f"got {num_classes}."
    )


def check_num_distractors(num_distractors: int) -> None:
  """Raises ValueError unless `num_distractors` is an int in [0, 2]."""
  if (not isinstance(num_distractors, (int, np.integer))
      or isinstance(num_distractors, bool)
      or not 0 <= num_distractors <= MAX_NUM_DISTRACTORS):
    raise ValueError(
        f"num_distractors must be in [0, {MAX_NUM_DISTRACTORS}], "
        f"got {num_distractors}."
    )


def _check_clip_shape(num_frames: int, image_size: int) -> None:
  if num_frames < 2:
    raise ValueError(f"num_frames must be >= 2, got {num_frames}.")
  if image_size < MIN_IMAGE_SIZE:
    raise ValueError(
        f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}."
    )


def class_names(num_classes: int) -> list[str]:
  """Returns the action class names, e.g. "person_right".

  Args:
    num_classes: Number of action classes, in [2, 3 * len(MOTION_NAMES)].

  Returns:
    A list of `num_classes` names "<category>_<motion>", where class k has
    category CATEGORY_NAMES[1 + k % 3] and motion MOTION_NAMES[k // 3].

  Raises:
    ValueError: If `num_classes` is out of range.
  """
  _check_num_classes(num_classes)
  return [
      f"{CATEGORY_NAMES[label_category(k)]}_{MOTION_NAMES[label_motion(k)]}"
      for k in range(num_classes)
  ]


def label_category(label: int) -> int:
  """Returns the category id (index into CATEGORY_NAMES) of the actor."""
  return _ACTOR_CATEGORIES[label % _NUM_ACTOR_CATEGORIES]


def label_motion(label: int) -> int:
  """Returns the motion index (into MOTION_NAMES) of the actor."""
  return label // _NUM_ACTOR_CATEGORIES


def motion_step(motion: int) -> tuple[int, int]:
  """Returns the (dy, dx) unit step of a motion index."""
  return _MOTION_STEPS[motion]


def actor_speed(num_frames: int, image_size: int) -> int:
  """Returns the actor speed in pixels per frame.

  The speed grows with the resolution (a few pixels per frame) but is capped
  so that even the largest sprite stays fully in frame for the whole clip.

  Args:
    num_frames: Frames per clip.
    image_size: Height and width of the frames.

  Returns:
    A positive integer speed.
  """
  base = max(2, round(image_size / 20))
  max_extent = int(np.ceil(_MAX_EXTENT_FRAC * image_size))
  fit = (image_size - max_extent) // (num_frames - 1)
  return max(1, min(base, fit))


def background_speed(num_frames: int, image_size: int) -> int:
  """Returns the background pan speed in pixels per frame.

  Camera motion is kept strictly slower than the actor's so that the actor is
  still the dominant motion once the pan is factored in.

  Args:
    num_frames: Frames per clip.
    image_size: Height and width of the frames.

  Returns:
    0 or 1.
  """
  return 1 if actor_speed(num_frames, image_size) >= 2 else 0


def _person_sprite(height: int, thickness: float) -> np.ndarray:
  """Stick figure: filled head, body, two arms and two legs."""
  width = max(3, round(height * _PERSON_ASPECT))
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  cx = (width - 1) / 2
  half = thickness / 2
  head_r = max(1.5, 0.13 * height)
  head_cy = head_r
  neck_y = 2 * head_r
  shoulder_y = neck_y + 0.08 * height
  hip_y = 0.62 * height
  bottom = height - 1 - half * 0.5
  left, right = half * 0.5, width - 1 - half * 0.5
  # Segments as (y0, x0, y1, x1).
  segments = np.array(
      [
          (neck_y, cx, hip_y, cx),  # body
          (shoulder_y, cx, hip_y - 0.05 * height, left),  # arms
          (shoulder_y, cx, hip_y - 0.05 * height, right),
          (hip_y, cx, bottom, left),  # legs
          (hip_y, cx, bottom, right),
      ],
      dtype=np.float32,
  )
  a = segments[:, None, None, :2]
  d = segments[:, None, None, 2:] - a
  p = np.stack([yy, xx], axis=-1)[None]
  # Distance from every pixel to every segment (clamped projection).
  t = np.clip(
      np.sum((p - a) * d, axis=-1) / np.sum(d * d, axis=-1), 0.0, 1.0
  )
  dist2 = np.sum((p - a - t[..., None] * d) ** 2, axis=-1)
  sprite = np.any(dist2 <= half * half, axis=0)
  sprite |= (yy - head_cy) ** 2 + (xx - cx) ** 2 <= head_r * head_r
  return sprite


def _ball_sprite(diameter: int) -> np.ndarray:
  yy, xx = np.mgrid[0:diameter, 0:diameter].astype(np.float32)
  c = (diameter - 1) / 2
  r = diameter / 2
  return (yy - c) ** 2 + (xx - c) ** 2 <= r * r


def _box_sprite(side: int) -> np.ndarray:
  return np.ones((side, side), dtype=bool)


def _make_sprite(
    rng: np.random.Generator, category: int, image_size: int
) -> np.ndarray:
  """Returns a boolean sprite of `category` with a random size jitter."""
  scale = rng.uniform(*_SCALE_RANGE)
  if category == 1:
    height = max(5, round(_PERSON_HEIGHT_FRAC * image_size * scale))
    # Thick enough to survive 32 px frames and resizing.
    thickness = max(2.0, image_size / 20)
    return _person_sprite(height, thickness)
  if category == 2:
    return _ball_sprite(max(3, round(_BALL_DIAMETER_FRAC * image_size * scale)))
  return _box_sprite(max(3, round(_BOX_SIDE_FRAC * image_size * scale)))


def _random_colour(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
  """Random colour that contrasts with the background base colour."""
  candidates = rng.integers(0, 256, size=(16, 3))
  dist = np.linalg.norm(candidates - base, axis=-1)
  ok = np.flatnonzero(dist >= _MIN_OBJECT_CONTRAST)
  idx = ok[0] if ok.size else int(np.argmax(dist))
  return candidates[idx].astype(np.uint8)


def _background(
    rng: np.random.Generator, num_frames: int, image_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Returns a panning low-contrast texture and how it pans.

  Args:
    rng: Source of randomness.
    num_frames: Frames T.
    image_size: Frame height and width S.

  Returns:
    (frames, base, offsets): the frames uint8 [T, S, S, 3], the texture's
    base colour float32 [3] and the (y, x) offsets int [T, 2] of each frame's
    window in the larger texture. Frame t shows texture[offsets[t] + p] at
    pixel p, so the content moves by offsets[t] - offsets[t + 1].
  """
  pan = background_speed(num_frames, image_size)
  travel = pan * (num_frames - 1)
  size = image_size + travel
  # Smooth noise: a coarse random grid, bilinearly upsampled. Done with
  # gathers and element-wise arithmetic rather than BLAS matmuls, whose
  # summation order may vary across machines and flip rounded pixel values.
  grid = max(3, size // max(2, image_size // 8) + 2)
  pos = np.linspace(0.0, grid - 1.0, size)
  lo = np.minimum(pos.astype(np.int64), grid - 2)
  frac = (pos - lo).astype(np.float32)
  coarse = rng.standard_normal((grid, grid, 3), dtype=np.float32)
  # Mostly shared across channels so the texture reads as luminance blobs.
  coarse = 0.8 * coarse[..., :1] + 0.6 * coarse
  fy = frac[:, None, None]
  fx = frac[None, :, None]
  top = coarse[lo][:, lo] * (1 - fx) + coarse[lo][:, lo + 1] * fx
  bottom = coarse[lo + 1][:, lo] * (1 - fx) + coarse[lo + 1][:, lo + 1] * fx
  texture = top * (1 - fy) + bottom * fy
  base = rng.integers(*_BG_BASE_RANGE, size=3).astype(np.float32)
  amplitude = rng.uniform(*_BG_AMPLITUDE_RANGE)
  texture = np.clip(base + amplitude * texture, 0, 255).astype(np.uint8)

  # Window offsets: the crop slides by `pan` px per frame along a random
  # direction (possibly zero on either axis), starting where it stays inside.
  direction = rng.integers(-1, 2, size=2)
  start = np.where(direction >= 0, 0, travel)
  t = np.arange(num_frames)[:, None]
  offsets = start + t * pan * direction
  frames = np.empty((num_frames, image_size, image_size, 3), dtype=np.uint8)
  for i, (oy, ox) in enumerate(offsets):
    frames[i] = texture[oy : oy + image_size, ox : ox + image_size]
  return frames, base, offsets


def _overlap_areas(
    boxes: np.ndarray, placed: list[tuple[int, int, int, int]]
) -> np.ndarray:
  """Total intersection area of each candidate box [N, 4] with `placed`."""
  total = np.zeros(len(boxes), dtype=np.int64)
  for y0, x0, y1, x1 in placed:
    h = np.minimum(boxes[:, 2], y1) - np.maximum(boxes[:, 0], y0)
    w = np.minimum(boxes[:, 3], x1) - np.maximum(boxes[:, 1], x0)
    total += np.maximum(h, 0) * np.maximum(w, 0)
  return total


def _paste(
    video: np.ndarray,
    masks: np.ndarray,
    sprite: np.ndarray,
    y: int,
    x: int,
    colour: np.ndarray,
    category: int,
) -> None:
  """Draws `sprite` with top-left (y, x) into one frame, clipping at borders."""
  size = video.shape[0]
  h, w = sprite.shape
  y0, x0 = max(y, 0), max(x, 0)
  y1, x1 = min(y + h, size), min(x + w, size)
  if y0 >= y1 or x0 >= x1:
    return
  sub = sprite[y0 - y : y1 - y, x0 - x : x1 - x]
  # Video and mask are written through the same boolean index so that they
  # always agree, including where a later object occludes an earlier one.
  video[y0:y1, x0:x1][sub] = colour
  masks[y0:y1, x0:x1][sub] = category


def _true_flow(
    masks: np.ndarray,
    objects: list[tuple[int, np.ndarray, np.ndarray]],
    bg_offsets: np.ndarray,
) -> np.ndarray:
  """Displacement of the content at each pixel to the next frame.

  Each category is drawn by exactly one object, so the visible category
  (`masks`) says which motion a pixel follows: its object's position change,
  or the background's, which moves against its sliding window.

  Args:
    masks: Visible category ids uint8 [T, S, S].
    objects: (category, sprite, positions int [T, 2] as (y, x)) per object.
    bg_offsets: The background window's (y, x) offsets int [T, 2].

  Returns:
    int8 [T, S, S, 2] as (u1, u2) = (dx, dy) in pixels, x to the right and y
    downwards; the last frame, which has no successor, is zeros.
  """
  # [T - 1, categories, 2] (dy, dx) per frame and category id.
  steps = np.zeros((len(masks) - 1, len(CATEGORY_NAMES), 2), dtype=np.int64)
  steps[:, 0] = bg_offsets[:-1] - bg_offsets[1:]
  for category, _, pos in objects:
    steps[:, category] = pos[1:] - pos[:-1]
  # Speeds are about S / 20 px per frame; only absurd sizes could wrap.
  if np.abs(steps).max() > np.iinfo(np.int8).max:
    raise ValueError(f"Motion of {np.abs(steps).max()} px overflows int8.")
  flow = np.zeros(masks.shape + (2,), dtype=np.int8)
  frame = np.arange(len(masks) - 1)[:, None, None]
  flow[:-1] = steps[frame, masks[:-1]][..., ::-1]
  return flow


def generate_clip(
    rng: np.random.Generator,
    label: int,
    num_frames: int,
    image_size: int,
    num_distractors: int = MAX_NUM_DISTRACTORS,
) -> dict[str, Any]:
  """Generates one clip.

  Args:
    rng: Source of randomness; the clip is a deterministic function of its
      state.
    label: Action class in [0, 3 * len(MOTION_NAMES)); see `class_names`.
    num_frames: Number of frames T (>= 2).
    image_size: Frame height and width S (>= 16).
    num_distractors: Still objects of the other categories, in [0, 2]; which
      ones (when fewer than 2) is random.

  Returns:
    A dict with `video` (uint8 [T, S, S, 3]), `masks` (uint8 [T, S, S] with
    the CATEGORY_NAMES id of the visible object at each pixel), `flow` (int8
    [T, S, S, 2], the true displacement in pixels of the content at each
    pixel of frame t to frame t + 1, as (u1, u2) = (dx right, dy down); zeros
    at the last frame) and `label` (int).

  Raises:
    ValueError: If an argument is out of range.
  """
  _check_clip_shape(num_frames, image_size)
  check_num_distractors(num_distractors)
  if not 0 <= label < MAX_NUM_CLASSES:
    raise ValueError(f"label must be in [0, {MAX_NUM_CLASSES}), got {label}.")
  size = image_size
  actor_category = label_category(label)
  dy, dx = motion_step(label_motion(label))

  video, bg_base, bg_offsets = _background(rng, num_frames, size)
  masks = np.zeros((num_frames, size, size), dtype=np.uint8)

  # Actor: pick the start so that the whole trajectory stays in frame.
  speed = actor_speed(num_frames, size)
  travel = speed * (num_frames - 1)
  sprite = _make_sprite(rng, actor_category, size)
  h, w = sprite.shape
  starts = []
  for step, extent in ((dy, h), (dx, w)):
    room = size - extent - abs(step) * travel
    if room < 0:
      # Cannot fit: centre the trajectory so it is mostly in frame.
      lo = room // 2
    else:
      lo = int(rng.integers(0, room + 1))
    # For a negative step the sampled value is where the actor ends.
    starts.append(lo + (travel if step < 0 else 0))
  t = np.arange(num_frames)
  actor_pos = np.stack(
      [starts[0] + dy * speed * t, starts[1] + dx * speed * t], axis=-1
  )
  objects = [(actor_category, sprite, actor_pos)]
  # Keep distractors off the actor's swept box so the actor, and each
  # distractor, stay visible (and their masks are clean) in every frame.
  placed = [(
      int(actor_pos[:, 0].min()),
      int(actor_pos[:, 1].min()),
      int(actor_pos[:, 0].max()) + h,
      int(actor_pos[:, 1].max()) + w,
  )]

  others = [c for c in _ACTOR_CATEGORIES if c != actor_category]
  if num_distractors < len(others):
    # Drawn only then, so that clips with every distractor stay the same
    # random stream (and the same bytes) as before the option existed.
    keep = rng.choice(len(others), size=num_distractors, replace=False)
    others = [others[i] for i in sorted(keep)]
  for category in others:
    sprite = _make_sprite(rng, category, size)
    h, w = sprite.shape
    # Leave a 1 px border for the jitter and a 1 px gap between objects.
    cand = np.stack(
        [
            rng.integers(1, max(2, size - h), size=_NUM_PLACEMENT_CANDIDATES),
            rng.integers(1, max(2, size - w), size=_NUM_PLACEMENT_CANDIDATES),
        ],
        axis=-1,
    )
    boxes = np.concatenate([cand - 2, cand + [h + 2, w + 2]], axis=-1)
    best = int(np.argmin(_overlap_areas(boxes, placed)))  # first zero if any
    base = cand[best]
    placed.append((base[0] - 1, base[1] - 1, base[0] + h + 1, base[1] + w + 1))
    if rng.random() < 0.5:
      jitter = np.zeros((num_frames, 2), dtype=np.int64)
    else:
      jitter = rng.integers(-1, 2, size=(num_frames, 2))
    objects.append((category, sprite, base + jitter))

  colours = [_random_colour(rng, bg_base) for _ in objects]
  # Random depth order so that "drawn on top" is not a cue for the actor.
  order = rng.permutation(len(objects))
  for frame in range(num_frames):
    for i in order:
      category, sprite, pos = objects[i]
      _paste(
          video[frame],
          masks[frame],
          sprite,
          int(pos[frame, 0]),
          int(pos[frame, 1]),
          colours[i],
          category,
      )

  # Sensor noise in int16 to avoid uint8 wrap-around.
  noisy = video.astype(np.int16)
  noisy += rng.integers(
      0, 2 * PIXEL_NOISE + 1, size=video.shape, dtype=np.uint8
  )
  noisy -= PIXEL_NOISE
  np.clip(noisy, 0, 255, out=noisy)
  return {
      "video": noisy.astype(np.uint8),
      "masks": masks,
      "flow": _true_flow(masks, objects, bg_offsets),
      "label": int(label),
  }


def generate_split(
    seed: int,
    num_examples: int,
    num_classes: int,
    num_frames: int,
    image_size: int,
    *,
    split_index: int = 0,
    num_distractors: int = MAX_NUM_DISTRACTORS,
) -> Iterator[tuple[str, dict[str, Any]]]:
  """Yields the examples of one split.

  Labels are balanced (label = i % num_classes) and shuffled. Example i uses
  its own generator seeded from (seed, split_index, i), so examples do not
  depend on generation order and splits with different `split_index` differ.

  Args:
    seed: Non-negative base seed.
    num_examples: Number of clips.
    num_classes: Number of action classes, in [2, 3 * len(MOTION_NAMES)].
    num_frames: Frames per clip (>= 2).
    image_size: Frame height and width (>= 16).
    split_index: Distinguishes splits generated from the same seed.
    num_distractors: Still objects beside the actor, in [0, 2].

  Yields:
    (key, example) pairs; see `generate_clip` for the example layout.

  Raises:
    ValueError: If an argument is out of range.
  """
  _check_num_classes(num_classes)
  _check_clip_shape(num_frames, image_size)
  check_num_distractors(num_distractors)
  if seed < 0 or split_index < 0:
    raise ValueError(
        f"seed and split_index must be >= 0, got {seed} and {split_index}."
    )
  # The third entropy word separates the label stream (0) from the
  # per-example streams (1); SeedSequence would otherwise treat [a, b] and
  # [a, b, 0] alike.
  label_rng = np.random.default_rng(
      np.random.SeedSequence([seed, split_index, 0])
  )
  labels = label_rng.permutation(np.arange(num_examples) % num_classes)
  for index, label in enumerate(labels):
    rng = np.random.default_rng(
        np.random.SeedSequence([seed, split_index, 1, index])
    )
    yield f"{index:07d}", generate_clip(
        rng, int(label), num_frames, image_size, num_distractors
    )
