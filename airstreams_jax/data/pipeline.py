"""tf.data input pipelines: this process's share of a tfds split -> clips ->
global `jax.Array` batches sharded on the mesh's data axis.

Train batches have a fixed shape (drop the remainder) so nothing recompiles.
Eval batches are padded with masked-out examples so that every example counts
exactly once whatever the batch size and process count.
"""

import errno
import math
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

import jax
import tensorflow as tf
import tensorflow_datasets as tfds

from airstreams_jax import mesh as mesh_lib
from airstreams_jax.data import video_ops

# 'label' (single-label datasets) or 'frame_labels' (multi-label: multi-hot
# [T, C] per stored frame); see data/video_entries.py for the contract.
# 'true_masks' and 'true_flow' exist only where the truth is known (the
# synthetic dataset); evaluation scores learned representations with them.
_TRAIN_KEYS = ('video', 'masks', 'label', 'frame_labels')
_KEYS = _TRAIN_KEYS + ('true_masks', 'true_flow')
_FOREVER = 2**62
# Epoch e of seed s shuffles with the seed s * stride + e: distinct for
# every (seed, epoch) pair below the stride.
_EPOCH_SEED_STRIDE = 1_000_003


def _process_split(split: str, process_index: int, process_count: int):
  return tfds.even_splits(split, process_count)[process_index]


def _read(builder, split, *, shuffle: bool, seed: int,
          keys: Sequence[str] = _KEYS) -> tf.data.Dataset:
  """Examples with their frames still encoded: [T] strings (the preprocess
  functions decode only the frames they keep, with `_frame_decoder`).

  Only the builder's features among `keys` are kept; the others are not even
  decoded (training, for one, has no use for the truth of synthetic data).
  """
  read_config = tfds.ReadConfig(shuffle_seed=seed)
  features = builder.info.features
  keys = [k for k in keys if k in features]
  decoders = {k: tfds.decode.SkipDecoding() for k in features
              if k == 'video' or k not in keys}
  if not tf.io.gfile.exists(builder.data_dir):
    # Built once, gone now (deleted or unmounted while a run used it): a
    # file error naming the folder, rather than tfds's advice to download.
    raise FileNotFoundError(errno.ENOENT, 'the built dataset is missing',
                            builder.data_dir)
  ds = builder.as_dataset(split=split, shuffle_files=shuffle,
                          read_config=read_config, decoders=decoders)
  # The stored multi-hot labels leave the class axis unknown (the builder
  # learns the classes from the listing); fixed shapes batch and pad.
  num_classes = len((builder.info.metadata or {}).get('class_names', ()))

  def select(example):
    example = {k: example[k] for k in keys}
    if 'frame_labels' in example:
      example['frame_labels'] = tf.ensure_shape(example['frame_labels'],
                                                [None, num_classes])
    return example
  return ds.map(select)


def _frame_decoder(builder) -> Callable[[tf.Tensor], tf.Tensor]:
  """Encoded frames [N] -> uint8 [N, H, W, 3], as the builder stored them."""
  return builder.info.features['video'].decode_example


def _frames(video: tf.Tensor, idx: tf.Tensor,
            decode: Optional[Callable[[tf.Tensor], tf.Tensor]]) -> tf.Tensor:
  """Frames `idx` of a video, decoding only those when it is encoded."""
  frames = tf.gather(video, idx)
  return frames if decode is None else decode(frames)


def _clip_label(example: Dict[str, tf.Tensor],
                idx: Optional[tf.Tensor] = None) -> tf.Tensor:
  """The int class, or the multi-hot float actions of the frames `idx`
  (of the whole video when None: the video-level label of evaluation)."""
  if 'frame_labels' not in example:
    return tf.cast(example['label'], tf.int32)
  frame_labels = example['frame_labels']
  if idx is not None:
    frame_labels = tf.gather(frame_labels, idx)
  return tf.cast(tf.reduce_max(frame_labels, axis=0), tf.float32)


def preprocess_train(example: Dict[str, tf.Tensor], seed: tf.Tensor, *,
                     dataset_config,
                     decode: Optional[Callable[[tf.Tensor], tf.Tensor]] = None
                     ) -> Dict[str, tf.Tensor]:
  """Random clip, random resized crop and optional flip (same for masks).

  `example['video']` is decoded frames, or encoded ones with `decode`, which
  then runs on the clip's frames only.
  """
  clip_seed, crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  idx = video_ops.clip_indices(
      tf.shape(example['video'])[0], dataset_config.num_frames,
      dataset_config.frame_stride, clip_seed)
  video = _frames(example['video'], idx, decode)
  masks = tf.gather(example['masks'], idx)
  box = video_ops.random_crop_box(tf.shape(video)[1:], crop_seed,
                                  dataset_config.min_crop_area)
  video, masks = video_ops.crop_and_resize(video, masks, box,
                                           dataset_config.image_size)
  if dataset_config.random_flip:
    video, masks = video_ops.random_flip(video, masks, flip_seed)
  return {'video': video, 'masks': masks,
          'label': _clip_label(example, idx)}


def preprocess_eval(example: Dict[str, tf.Tensor], *,
                    dataset_config,
                    decode: Optional[Callable[[tf.Tensor], tf.Tensor]] = None
                    ) -> Dict[str, tf.Tensor]:
  """All views of a video: `eval_clips` clips evenly spaced in time times
  `eval_crops` square crops (V views, clip-major), and the video-level label.

  Returns 'video' uint8 [V, T, S, S, 3] and 'label', plus, for the example's
  keys that have them, the same crops of the per-pixel targets that
  representation metrics compare the model's segmentation and flow with:
  'masks' and 'true_masks' uint8 [V, T, S, S] (class ids), 'true_flow'
  float32 [V, T, S, S, 2] ((dx, dy) in pixels of the view, see
  `video_ops.resize_flow`) with 'true_flow_valid' bool [V, T] (see
  `video_ops.consecutive_frames`). With `decode`, only the frames of the
  clips are decoded.
  """
  num_clips, num_frames = dataset_config.eval_clips, dataset_config.num_frames
  num_crops, size = dataset_config.eval_crops, dataset_config.image_size
  clips = video_ops.view_clip_indices(
      tf.shape(example['video'])[0], num_frames, dataset_config.frame_stride,
      num_clips)
  idx = tf.reshape(clips, [-1])
  frames = _frames(example['video'], idx, decode)
  boxes = video_ops.view_crop_boxes(tf.shape(frames)[1:], num_crops)

  def views(clip_frames, resize):
    # Normalised boxes fit masks or flow at any resolution.
    return tf.stack([resize(clip_frames[c * num_frames:(c + 1) * num_frames],
                            boxes[k], size)
                     for c in range(num_clips) for k in range(num_crops)])

  out = {'video': views(frames, video_ops.resize_video),
         'label': _clip_label(example)}
  for key in ('masks', 'true_masks'):
    if key in example:
      out[key] = views(tf.gather(example[key], idx), video_ops.resize_masks)
  if 'true_flow' in example:
    out['true_flow'] = views(tf.gather(example['true_flow'], idx),
                             video_ops.resize_flow)
    valid = tf.stack([video_ops.consecutive_frames(clips[c])
                      for c in range(num_clips)])
    out['true_flow_valid'] = tf.repeat(valid, num_crops, axis=0)
  return out


def make_train_dataset(builder, dataset_config, *, local_batch_size: int,
                       seed: int, start_step: int = 0, process_index: int = 0,
                       process_count: int = 1) -> tf.data.Dataset:
  """An infinite, shuffled, augmented dataset of this process's batches.

  The stream is a pure function of the seed and the example's position in
  it: epoch e is the split's records (which tfds stores in a hashed order)
  through a shuffle buffer seeded with (seed, e), and example i of the
  stream is augmented with the seed (seed, i). So a run resumed at
  `start_step` gets exactly the batches an uninterrupted run would; it
  starts at its epoch and skips the records before it, reading (not
  decoding) at most one epoch.

  Every process reads the same stream of encoded examples and keeps its rows
  of each global batch before decoding. Together the processes thus see
  exactly the global batches, in the same order and with the same
  augmentation, that one process would: results do not depend on the number
  of hosts. (Reading encoded records is cheap next to decoding them.)
  """
  split = dataset_config.train_split
  num_examples = builder.info.splits[split].num_examples
  global_size = local_batch_size * process_count
  first = start_step * global_size  # Stream position of the first example.
  first_epoch, offset = divmod(first, num_examples)
  records = _read(builder, split, shuffle=False, seed=0, keys=_TRAIN_KEYS)
  seed = tf.constant(seed, tf.int64)

  def epoch(e):
    # Shuffle within each epoch: every example is seen once per epoch.
    return records.shuffle(dataset_config.shuffle_buffer,
                           seed=seed * _EPOCH_SEED_STRIDE + e,
                           reshuffle_each_iteration=False)

  ds = tf.data.Dataset.range(first_epoch, _FOREVER).flat_map(epoch)
  ds = tf.data.Dataset.zip(ds.skip(offset),
                           tf.data.Dataset.range(first, _FOREVER))
  # Global batch k holds stream elements [k*G, (k+1)*G); process p keeps
  # rows [p*L, (p+1)*L) of it, in order, and global arrays put process p's
  # rows at exactly that place: the same batches as on one process.
  ds = ds.filter(
      lambda _, i: (i % global_size) // local_batch_size == process_index)
  ds = ds.map(
      lambda example, i: preprocess_train(
          example, tf.stack([seed, i]), dataset_config=dataset_config,
          decode=_frame_decoder(builder)),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(local_batch_size, drop_remainder=True).prefetch(2)


def num_eval_batches(builder, split: str, local_batch_size: int,
                     process_count: int) -> int:
  """Batches per process that cover the largest per-process share."""
  largest = max(builder.info.splits[s].num_examples
                for s in tfds.even_splits(split, process_count))
  return max(math.ceil(largest / local_batch_size), 1)


def make_eval_dataset(builder, dataset_config, *, local_batch_size: int,
                      process_index: int = 0, process_count: int = 1
                      ) -> Tuple[tf.data.Dataset, int]:
  """Padded eval batches with a boolean 'mask', and their number.

  Each element is one video with all its views (see `preprocess_eval`), so
  `local_batch_size` counts videos.

  Every process yields the same number of batches (multi-host collectives
  need that); padding examples are zeros with mask False.
  """
  split = dataset_config.eval_split
  num_batches = num_eval_batches(builder, split, local_batch_size,
                                 process_count)
  ds = _read(builder, _process_split(split, process_index, process_count),
             shuffle=False, seed=0)
  ds = ds.map(lambda ex: dict(
      preprocess_eval(ex, dataset_config=dataset_config,
                      decode=_frame_decoder(builder)),
      mask=True),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  padding = tf.data.Dataset.from_tensors(
      tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype),
                            ds.element_spec)).repeat()
  ds = ds.concatenate(padding).batch(local_batch_size).take(num_batches)
  return ds.prefetch(2), num_batches


def global_batches(ds: tf.data.Dataset,
                   sharding: jax.sharding.NamedSharding) -> Iterator[Any]:
  """Yields the dataset's host-local batches as global sharded arrays."""
  for local in tfds.as_numpy(ds):
    yield mesh_lib.global_batch(local, sharding)


def global_batch_spec(ds: tf.data.Dataset, global_batch_size: int,
                      sharding: jax.sharding.NamedSharding
                      ) -> Dict[str, jax.ShapeDtypeStruct]:
  """The shapes of the global batches `global_batches(ds, sharding)` yields,
  without reading any (for compiling the steps ahead)."""
  return {key: jax.ShapeDtypeStruct(
      (global_batch_size,) + tuple(spec.shape[1:]),
      spec.dtype.as_numpy_dtype, sharding=sharding)
          for key, spec in ds.element_spec.items()}


def local_batch_size(global_batch_size: int) -> int:
  """This process's share of a global batch."""
  count = jax.process_count()
  if global_batch_size % count:
    raise ValueError(f'batch size {global_batch_size} is not divisible by the '
                     f'{count} processes.')
  return global_batch_size // count

