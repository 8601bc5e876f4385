"""tf.data input pipelines: this process's share of a tfds split -> clips ->
global `jax.Array` batches sharded on the mesh's data axis.

Train batches have a fixed shape (drop the remainder) so nothing recompiles.
Eval batches are padded with masked-out examples so that every example counts
exactly once whatever the batch size and process count.
"""

import math
from typing import Any, Dict, Iterator, Tuple

import jax
import tensorflow as tf
import tensorflow_datasets as tfds

from airstreams_jax import mesh as mesh_lib
from airstreams_jax.data import video_ops

_KEYS = ('video', 'masks', 'label')


def _process_split(split: str, process_index: int, process_count: int):
  return tfds.even_splits(split, process_count)[process_index]


def _read(builder, split, *, shuffle: bool, seed: int) -> tf.data.Dataset:
  """Examples with their frames still encoded (decode with `_decode`)."""
  read_config = tfds.ReadConfig(shuffle_seed=seed)
  ds = builder.as_dataset(split=split, shuffle_files=shuffle,
                          read_config=read_config,
                          decoders={'video': tfds.decode.SkipDecoding()})
  return ds.map(lambda ex: {k: ex[k] for k in _KEYS})


def _decode(builder, example: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  video = builder.info.features['video'].decode_example(example['video'])
  return dict(example, video=video)


def preprocess_train(example: Dict[str, tf.Tensor], seed: tf.Tensor, *,
                     dataset_config) -> Dict[str, tf.Tensor]:
  """Random clip, random resized crop and optional flip (same for masks)."""
  clip_seed, crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  video, masks = video_ops.temporal_clip(
      example['video'], example['masks'], dataset_config.num_frames,
      dataset_config.get('frame_stride', 1), seed=clip_seed)
  box = video_ops.random_crop_box(tf.shape(video)[1:], crop_seed,
                                  dataset_config.min_crop_area)
  video, masks = video_ops.crop_and_resize(video, masks, box,
                                           dataset_config.image_size)
  if dataset_config.random_flip:
    video, masks = video_ops.random_flip(video, masks, flip_seed)
  return {'video': video, 'masks': masks,
          'label': tf.cast(example['label'], tf.int32)}


def preprocess_eval(example: Dict[str, tf.Tensor], *,
                    dataset_config) -> Dict[str, tf.Tensor]:
  """The centre clip and centre crop."""
  video, masks = video_ops.temporal_clip(
      example['video'], example['masks'], dataset_config.num_frames,
      dataset_config.get('frame_stride', 1), seed=None)
  box = video_ops.center_crop_box(tf.shape(video)[1:])
  video, masks = video_ops.crop_and_resize(video, masks, box,
                                           dataset_config.image_size)
  return {'video': video, 'masks': masks,
          'label': tf.cast(example['label'], tf.int32)}


def make_train_dataset(builder, dataset_config, *, local_batch_size: int,
                       seed: int, process_index: int = 0,
                       process_count: int = 1) -> tf.data.Dataset:
  """An infinite, shuffled, augmented dataset of this process's batches.

  Every process reads the same seeded stream of encoded examples and keeps
  its rows of each global batch before decoding. Together the processes thus
  see exactly the global batches, in the same order and with the same
  augmentation, that one process would: results do not depend on the number
  of hosts. (Reading encoded records is cheap next to decoding them.)
  """
  ds = _read(builder, dataset_config.train_split, shuffle=True, seed=seed)
  # Shuffle, then repeat: every example is seen once per epoch.
  ds = ds.shuffle(dataset_config.shuffle_buffer, seed=seed,
                  reshuffle_each_iteration=True).repeat()
  # One augmentation seed per example, drawn before the processes split.
  ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed).batch(2))
  # Global batch k holds stream elements [k*G, (k+1)*G); process p keeps
  # rows [p*L, (p+1)*L) of it, in order, and global arrays put process p's
  # rows at exactly that place: the same batches as on one process.
  global_size = local_batch_size * process_count
  ds = ds.enumerate().filter(
      lambda i, _: (i % global_size) // local_batch_size == process_index)
  ds = ds.map(
      lambda _, ex_seed: preprocess_train(_decode(builder, ex_seed[0]),
                                          ex_seed[1],
                                          dataset_config=dataset_config),
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

  Every process yields the same number of batches (multi-host collectives
  need that); padding examples are zeros with mask False.
  """
  split = dataset_config.eval_split
  num_batches = num_eval_batches(builder, split, local_batch_size,
                                 process_count)
  ds = _read(builder, _process_split(split, process_index, process_count),
             shuffle=False, seed=0)
  ds = ds.map(lambda ex: dict(
      preprocess_eval(_decode(builder, ex), dataset_config=dataset_config),
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


def local_batch_size(global_batch_size: int) -> int:
  """This process's share of a global batch."""
  count = jax.process_count()
  if global_batch_size % count:
    raise ValueError(f'batch size {global_batch_size} is not divisible by the '
                     f'{count} processes.')
  return global_batch_size // count

