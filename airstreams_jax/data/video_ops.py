"""Pure TensorFlow clip ops: temporal sampling, crops and flips.

Every op takes the frames `[T, H, W, 3]` uint8 and the teacher masks
`[T, h, w]` uint8 together and applies the same geometry to both, so masks
stay aligned with the pixels they label. Randomness is stateless: each op takes
an explicit `[2]` seed, which makes a pipeline reproducible from its seed.

Crop boxes are normalised [y0, x0, y1, x1] as in `tf.image.crop_and_resize`:
a box maps the same region at any resolution, so masks or flow fields stored
smaller than the frames are cropped with the frames' box.
"""

from typing import Optional, Tuple

import tensorflow as tf


def clip_indices(num_stored: tf.Tensor, num_frames: int, stride: int,
                 seed: Optional[tf.Tensor]) -> tf.Tensor:
  """Frame indices of one clip; a random start with a seed, else the centre.

  Videos shorter than the clip repeat their last frame.
  """
  span = (num_frames - 1) * stride + 1
  max_start = tf.maximum(num_stored - span, 0)
  if seed is None:
    start = max_start // 2
  else:
    start = tf.random.stateless_uniform((), seed, 0, max_start + 1, tf.int32)
  idx = start + tf.range(num_frames, dtype=tf.int32) * stride
  return tf.minimum(idx, num_stored - 1)


def view_clip_indices(num_stored: tf.Tensor, num_frames: int, stride: int,
                      num_clips: int) -> tf.Tensor:
  """Frame indices [num_clips, T] of clips evenly spaced over the video.

  The first clip starts at frame 0 and the last ends at the last frame (one
  clip: the centre clip). Videos shorter than a clip repeat their last frame.
  """
  if num_clips == 1:
    return clip_indices(num_stored, num_frames, stride, None)[None]
  span = (num_frames - 1) * stride + 1
  max_start = tf.cast(tf.maximum(num_stored - span, 0), tf.float32)
  starts = tf.cast(tf.round(tf.linspace(0.0, max_start, num_clips)),
                   tf.int32)
  idx = starts[:, None] + tf.range(num_frames, dtype=tf.int32)[None] * stride
  return tf.minimum(idx, num_stored - 1)


def view_crop_boxes(image_shape: tf.Tensor, num_crops: int) -> tf.Tensor:
  """Normalised boxes [num_crops, 4]: squares of the short side, evenly
  spaced along the long side (1: the centre; 3: both ends and the centre,
  as in SlowFast's 3-crop testing)."""
  if num_crops == 1:
    return center_crop_box(image_shape)[None]
  hw = tf.cast(image_shape[:2], tf.float32)
  side = tf.reduce_min(hw)
  offsets = tf.linspace(0.0, 1.0, num_crops)
  y0 = offsets * (hw[0] - side)
  x0 = offsets * (hw[1] - side)
  return tf.stack([y0 / (hw[0] - 1), x0 / (hw[1] - 1),
                   (y0 + side - 1) / (hw[0] - 1),
                   (x0 + side - 1) / (hw[1] - 1)], axis=1)


def resize_video(video: tf.Tensor, box: tf.Tensor, size: int) -> tf.Tensor:
  """Crops the normalised box from the frames and resizes it to size²."""
  video = tf.image.crop_and_resize(
      tf.cast(video, tf.float32), tf.repeat(box[None], tf.shape(video)[0], 0),
      tf.range(tf.shape(video)[0]), (size, size), method='bilinear')
  return tf.cast(tf.clip_by_value(tf.round(video), 0, 255), tf.uint8)


def _nearest(fields: tf.Tensor, box: tf.Tensor, size: int) -> tf.Tensor:
  """Crops the box from float32 fields [T, h, w, C]; nearest-neighbour
  resizes to size² (values are ids or vectors, which must not blend)."""
  count = tf.shape(fields)[0]
  return tf.image.crop_and_resize(fields, tf.repeat(box[None], count, 0),
                                  tf.range(count), (size, size),
                                  method='nearest')


def resize_masks(masks: tf.Tensor, box: tf.Tensor, size: int) -> tf.Tensor:
  """Crops the box from class ids uint8 [T, h, w]; nearest-neighbour
  resizes to uint8 [T, size, size]."""
  masks = _nearest(tf.cast(masks[..., None], tf.float32), box, size)
  return tf.cast(masks[..., 0], tf.uint8)


def resize_flow(flow: tf.Tensor, box: tf.Tensor, size: int) -> tf.Tensor:
  """Crops the box from a flow field and resizes it, vectors included.

  The field is resampled with nearest neighbours, and its displacements,
  counted in pixels of its own grid, are rescaled to pixels of the output:
  `tf.image.crop_and_resize` maps output row j to input row
  y0 (h - 1) + j (y1 - y0) (h - 1) / (size - 1), so a displacement of d
  input rows is d (size - 1) / ((y1 - y0) (h - 1)) output rows (likewise for
  columns with x and w). Frames and flow thus stay consistent however the
  view is cropped and scaled.

  Args:
    flow: [T, h, w, 2] displacements (u1, u2) = (dx, dy), any real or
      integer dtype.
    box: Normalised [y0, x0, y1, x1].
    size: Output height and width (> 1).

  Returns:
    float32 [T, size, size, 2] in pixels of the output.
  """
  hw = tf.cast(tf.shape(flow)[1:3], tf.float32)
  extent = tf.stack([box[3] - box[1], box[2] - box[0]]) * (hw[::-1] - 1)
  scale = (size - 1) / extent  # (x, y) order, as the channels.
  return _nearest(tf.cast(flow, tf.float32), box, size) * scale


def consecutive_frames(idx: tf.Tensor) -> tf.Tensor:
  """bool [T]: True where clip frame t + 1 is the stored frame after t's.

  A stored flow field is the displacement to the next stored frame, so it
  is the clip's motion from t to t + 1 only there: not with a frame stride
  above 1, not between repeats of a short video's last frame, and never at
  the clip's last frame.
  """
  idx = tf.convert_to_tensor(idx)
  return tf.concat([idx[1:] == idx[:-1] + 1, [False]], axis=0)


def crop_and_resize(video: tf.Tensor, masks: tf.Tensor, box: tf.Tensor,
                    size: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """Crops the normalised box [y0, x0, y1, x1] from both; resizes to size².

  Frames are resized bilinearly; masks, which may be stored at a lower
  resolution than the frames, with nearest neighbours (class ids must not
  blend).
  """
  return resize_video(video, box, size), resize_masks(masks, box, size)


def random_crop_box(image_shape: tf.Tensor, seed: tf.Tensor,
                    min_area: float,
                    aspect_range: Tuple[float, float] = (3 / 4, 4 / 3)
                    ) -> tf.Tensor:
  """A random normalised box covering [min_area, 1] of the frame."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_shape, tf.zeros((1, 0, 4)), seed=seed,
      min_object_covered=0.0, aspect_ratio_range=aspect_range,
      area_range=(min_area, 1.0), max_attempts=20,
      use_image_if_no_bounding_boxes=True)
  hw = tf.cast(image_shape[:2], tf.float32)
  y0, x0 = tf.cast(begin[0], tf.float32), tf.cast(begin[1], tf.float32)
  h, w = tf.cast(size[0], tf.float32), tf.cast(size[1], tf.float32)
  # crop_and_resize maps a normalised y to y * (height - 1).
  return tf.stack([y0 / (hw[0] - 1), x0 / (hw[1] - 1),
                   (y0 + h - 1) / (hw[0] - 1), (x0 + w - 1) / (hw[1] - 1)])


def center_crop_box(image_shape: tf.Tensor) -> tf.Tensor:
  """The central square of the frame as a normalised box."""
  hw = tf.cast(image_shape[:2], tf.float32)
  side = tf.reduce_min(hw)
  y0, x0 = (hw[0] - side) / 2, (hw[1] - side) / 2
  return tf.stack([y0 / (hw[0] - 1), x0 / (hw[1] - 1),
                   (y0 + side - 1) / (hw[0] - 1),
                   (x0 + side - 1) / (hw[1] - 1)])


def random_flip(video: tf.Tensor, masks: tf.Tensor,
                seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Flips frames and masks left-right together with probability 1/2."""
  flip = tf.random.stateless_uniform((), seed) < 0.5
  return (tf.where(flip, tf.reverse(video, [2]), video),
          tf.where(flip, tf.reverse(masks, [2]), masks))
