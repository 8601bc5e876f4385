"""TFDS builder for the embedded synthetic action dataset.

Clips are generated locally by `synthetic_generator` (nothing is downloaded).
Each config name encodes every generation option, so datasets built with
different options never share a data directory:

  builder = SyntheticActions(
      config=make_config(num_classes=6, num_frames=8, image_size=64,
                         num_train=1024, num_test=256, seed=0),
      data_dir=data_dir)
  builder.download_and_prepare()
  ds = builder.as_dataset(split='train')

The predefined configs (`BUILDER_CONFIGS`) can also be built with
`tfds build airstreams_jax/data/synthetic_actions.py
[--config c6_t8_s32_n256x64_seed0]`.

The `masks` feature holds the generator's true masks, optionally corrupted by
the oracle teacher (`oracle_drop_prob`, `oracle_erode_px`, `oracle_seed`) to
imitate a real teacher's mistakes; non-default corruption options appear in
the config name, e.g. c6_t8_s32_n256x64_seed0_drop0.5_erode1. So does a
number of still distractor objects other than 2 (`num_distractors`, e.g.
..._seed0_d0: the actor alone, so that appearance tells its category).

The truth is stored beside it, so that evaluation can score what the model
learned against the teacher's masks and against reality: `true_masks` (the
generator's masks before corruption) and `true_flow` (int8 [T, S, S, 2], the
exact displacement (dx, dy) in pixels of each pixel's content to the next
frame; zeros at the last frame). Real video datasets have neither.
"""

import dataclasses
import struct
import zlib

import numpy as np
import tensorflow_datasets as tfds

# Relative on purpose: `tfds build <path>` imports this file as
# `data.synthetic_actions` (the repository root is not on sys.path then), and
# only a relative import resolves under both that name and the package name.
from . import synthetic_generator
# Absolute: the teachers live outside this folder, so `tfds build <path>`
# needs the package installed (`pip install -e .`, as the README says).
from airstreams_jax.teachers import oracle

# Segmentation classes of `masks` and `true_masks` (index = mask value).
MASK_CLASS_NAMES = synthetic_generator.CATEGORY_NAMES
NUM_SEG_CLASSES = len(MASK_CLASS_NAMES)

# Split name -> index used to derive an independent seed stream per split.
_SPLIT_INDICES = {"train": 0, "test": 1}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG row filter 1 ("Sub"): each byte minus the same channel one pixel left.
_PNG_FILTER_SUB = 1
# Speed over size: the pixel noise makes frames barely compressible anyway.
_PNG_ZLIB_LEVEL = 1


def _png_chunk(tag: bytes, data: bytes) -> bytes:
  crc = zlib.crc32(tag + data)
  return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def encode_png_frames(video: np.ndarray) -> list[bytes]:
  """Losslessly encodes RGB uint8 frames [T, H, W, 3] as PNG files.

  `tfds.features.Video` would otherwise encode each frame with a TF op, which
  dominates build time (~1.3 ms per 64x64 noisy frame versus ~0.4 ms here).
  The output is a standard 8-bit RGB PNG that `tf.image.decode_png` reads.

  Args:
    video: uint8 array [T, H, W, 3].

  Returns:
    One PNG byte string per frame.

  Raises:
    ValueError: If `video` is not a uint8 [T, H, W, 3] array.
  """
  if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
    raise ValueError(
        f"Expected uint8 [T, H, W, 3], got {video.dtype} {video.shape}."
    )
  num_frames, height, width, channels = video.shape
  rows = video.reshape(num_frames, height, width * channels)
  # The Sub filter is vectorised over all frames at once (uint8 arithmetic
  # wraps modulo 256 exactly as PNG requires); it turns the smooth
  # background into small residuals that deflate well.
  filtered = rows.copy()
  filtered[:, :, channels:] -= rows[:, :, :-channels]
  scanlines = np.concatenate(
      [np.full((num_frames, height, 1), _PNG_FILTER_SUB, np.uint8), filtered],
      axis=2,
  )
  # 8-bit depth, colour type 2 (RGB), default compression/filter methods,
  # no interlace.
  header = _PNG_SIGNATURE + _png_chunk(
      b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  )
  trailer = _png_chunk(b"IEND", b"")
  return [
      header
      + _png_chunk(b"IDAT", zlib.compress(frame.tobytes(), _PNG_ZLIB_LEVEL))
      + trailer
      for frame in scanlines
  ]


@dataclasses.dataclass(eq=False)
class SyntheticActionsConfig(tfds.core.BuilderConfig):
  """Generation options; build instances with `make_config`.

  Attributes:
    num_classes: Number of action classes, in [2, 12].
    num_frames: Frames per clip.
    image_size: Frame height and width in pixels.
    num_train: Number of training clips.
    num_test: Number of test clips.
    seed: Base seed; each split derives its own stream from it.
    num_distractors: Still objects of the other categories beside the
      actor, in [0, 2].
    oracle_drop_prob: Probability that the teacher misses an object class
      for a whole clip (see `teachers.oracle.OracleTeacher`).
    oracle_erode_px: Pixels by which the teacher's objects shrink.
    oracle_seed: Seed of the teacher's dropping decisions.
  """

  num_classes: int = 6
  num_frames: int = 8
  image_size: int = 64
  num_train: int = 1024
  num_test: int = 256
  seed: int = 0
  num_distractors: int = synthetic_generator.MAX_NUM_DISTRACTORS
  oracle_drop_prob: float = 0.0
  oracle_erode_px: int = 0
  oracle_seed: int = 0

  def make_oracle(self) -> oracle.OracleTeacher:
    """The teacher that corrupts this config's masks."""
    return oracle.OracleTeacher(
        MASK_CLASS_NAMES, drop_prob=self.oracle_drop_prob,
        erode_px=self.oracle_erode_px, seed=self.oracle_seed)


def config_name(
    num_classes: int,
    num_frames: int,
    image_size: int,
    num_train: int,
    num_test: int,
    seed: int,
    oracle_drop_prob: float = 0.0,
    oracle_erode_px: int = 0,
    oracle_seed: int = 0,
    num_distractors: int = synthetic_generator.MAX_NUM_DISTRACTORS,
) -> str:
  """Returns a name encoding all options, e.g. c6_t8_s64_n1024x256_seed0.

  The distractor count and the corruption options are appended only when
  they differ from their defaults (e.g. ..._seed0_d0_drop0.25_erode1_oseed3),
  so names of default datasets, and their data directories, are those of
  earlier versions.

  Args:
    num_classes: Number of action classes.
    num_frames: Frames per clip.
    image_size: Frame height and width.
    num_train: Number of training clips.
    num_test: Number of test clips.
    seed: Base seed.
    oracle_drop_prob: Teacher's object-drop probability.
    oracle_erode_px: Teacher's erosion in pixels.
    oracle_seed: Seed of the teacher's corruption.
    num_distractors: Still objects beside the actor.

  Returns:
    The config name.
  """
  name = (
      f"c{num_classes}_t{num_frames}_s{image_size}"
      f"_n{num_train}x{num_test}_seed{seed}"
  )
  if num_distractors != synthetic_generator.MAX_NUM_DISTRACTORS:
    name += f"_d{num_distractors}"
  if oracle_drop_prob:
    name += f"_drop{float(oracle_drop_prob):g}"
  if oracle_erode_px:
    name += f"_erode{oracle_erode_px}"
  if oracle_seed:
    name += f"_oseed{oracle_seed}"
  return name


def _new_config(
    num_classes: int,
    num_frames: int,
    image_size: int,
    num_train: int,
    num_test: int,
    seed: int,
    oracle_drop_prob: float = 0.0,
    oracle_erode_px: int = 0,
    oracle_seed: int = 0,
    num_distractors: int = synthetic_generator.MAX_NUM_DISTRACTORS,
) -> SyntheticActionsConfig:
  """Validates the options and builds a fresh config."""
  # Validate eagerly so that bad options fail here rather than midway
  # through `download_and_prepare`.
  synthetic_generator.class_names(num_classes)
  if num_frames < 2:
    raise ValueError(f"num_frames must be >= 2, got {num_frames}.")
  if image_size < synthetic_generator.MIN_IMAGE_SIZE:
    raise ValueError(
        f"image_size must be >= {synthetic_generator.MIN_IMAGE_SIZE}, "
        f"got {image_size}."
    )
  if num_train < 1 or num_test < 1:
    raise ValueError(
        f"num_train and num_test must be >= 1, got {num_train} and "
        f"{num_test}."
    )
  if seed < 0:
    raise ValueError(f"seed must be >= 0, got {seed}.")
  synthetic_generator.check_num_distractors(num_distractors)
  teacher = oracle.OracleTeacher(  # Validates the corruption options.
      MASK_CLASS_NAMES, drop_prob=oracle_drop_prob, erode_px=oracle_erode_px,
      seed=oracle_seed)
  name = config_name(
      num_classes, num_frames, image_size, num_train, num_test, seed,
      teacher.drop_prob, teacher.erode_px, teacher.seed, num_distractors
  )
  description = (
      f"{num_classes} classes, {num_frames} frames of "
      f"{image_size}x{image_size}, {num_train} train / {num_test} test "
      f"clips, seed {seed}."
  )
  if num_distractors != synthetic_generator.MAX_NUM_DISTRACTORS:
    description += f" {num_distractors} still distractor(s) per clip."
  if not teacher.is_identity or teacher.seed:
    description += (
        f" Teacher masks corrupted: drop_prob {teacher.drop_prob:g}, "
        f"erode_px {teacher.erode_px}, seed {teacher.seed}."
    )
  return SyntheticActionsConfig(
      name=name,
      description=description,
      num_classes=num_classes,
      num_frames=num_frames,
      image_size=image_size,
      num_train=num_train,
      num_test=num_test,
      seed=seed,
      num_distractors=num_distractors,
      oracle_drop_prob=teacher.drop_prob,
      oracle_erode_px=teacher.erode_px,
      oracle_seed=teacher.seed,
  )


# Configs listed in `SyntheticActions.BUILDER_CONFIGS`. TFDS refuses a custom
# config object that merely shares its name with a predefined one (it checks
# identity), so `make_config` hands these exact instances back.
_PREDEFINED_CONFIGS = {
    cfg.name: cfg
    for cfg in (
        _new_config(6, 8, 64, 1024, 256, 0),  # Default.
        _new_config(6, 8, 32, 256, 64, 0),  # Small.
    )
}


def make_config(
    num_classes: int = 6,
    num_frames: int = 8,
    image_size: int = 64,
    num_train: int = 1024,
    num_test: int = 256,
    seed: int = 0,
    oracle_drop_prob: float = 0.0,
    oracle_erode_px: int = 0,
    oracle_seed: int = 0,
    num_distractors: int = synthetic_generator.MAX_NUM_DISTRACTORS,
) -> SyntheticActionsConfig:
  """Returns a validated config whose name encodes all options.

  Args:
    num_classes: Number of action classes, in [2, 12].
    num_frames: Frames per clip (>= 2).
    image_size: Frame height and width (>= 16).
    num_train: Number of training clips (>= 1).
    num_test: Number of test clips (>= 1).
    seed: Non-negative base seed.
    oracle_drop_prob: Probability in [0, 1] that the teacher masks miss an
      object class for a whole clip.
    oracle_erode_px: Pixels (>= 0) by which the teacher masks' objects
      shrink.
    oracle_seed: Non-negative seed of the teacher's dropping decisions.
    num_distractors: Still objects of the other categories beside the
      actor, in [0, 2] (fewer make appearance more informative).

  Returns:
    A `SyntheticActionsConfig`; the predefined instance when the options
    match one of `SyntheticActions.BUILDER_CONFIGS`.

  Raises:
    ValueError: If an option is out of range.
  """
  config = _new_config(
      num_classes, num_frames, image_size, num_train, num_test, seed,
      oracle_drop_prob, oracle_erode_px, oracle_seed, num_distractors
  )
  return _PREDEFINED_CONFIGS.get(config.name, config)


class SyntheticActions(tfds.core.GeneratorBasedBuilder):
  """Synthetic clips whose label is (acting category, motion direction)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": "true_masks and true_flow: the uncorrupted masks and the "
               "exact optical flow, to score learned representations.",
  }
  # The first one (c6_t8_s64_n1024x256_seed0) is the default; the second
  # (c6_t8_s32_n256x64_seed0) is a small variant for quick experiments.
  BUILDER_CONFIGS = list(_PREDEFINED_CONFIGS.values())

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    t, s = cfg.num_frames, cfg.image_size
    return self.dataset_info_from_configs(
        description=(
            "Synthetic action clips: a person, a ball and a box over a "
            "panning textured background (or fewer: `num_distractors` "
            "still objects beside the actor); one of them moves (right, "
            "left, down or up) and the label is (moving category, "
            "direction). "
            "`masks` holds the teacher's per-pixel category ids named by "
            "metadata['mask_class_names'] (possibly corrupted), "
            "`true_masks` the exact ones and `true_flow` the exact motion "
            "(dx, dy) in pixels of each pixel to the next frame (zeros at "
            "the last frame)."
        ),
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Video(shape=(t, s, s, 3)),
            "masks": tfds.features.Tensor(
                shape=(t, s, s),
                dtype=np.uint8,
                encoding=tfds.features.Encoding.ZLIB,
            ),
            "true_masks": tfds.features.Tensor(
                shape=(t, s, s),
                dtype=np.uint8,
                encoding=tfds.features.Encoding.ZLIB,
            ),
            "true_flow": tfds.features.Tensor(
                shape=(t, s, s, 2),
                dtype=np.int8,
                encoding=tfds.features.Encoding.ZLIB,
            ),
            "label": tfds.features.ClassLabel(
                names=synthetic_generator.class_names(cfg.num_classes)
            ),
        }),
        metadata=tfds.core.MetadataDict(
            mask_class_names=list(MASK_CLASS_NAMES),
        ),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Everything is generated locally.
    cfg = self.builder_config
    return {
        "train": self._generate_examples("train", cfg.num_train),
        "test": self._generate_examples("test", cfg.num_test),
    }

  def _generate_examples(self, split: str, num_examples: int):
    cfg = self.builder_config
    teacher = cfg.make_oracle()
    split_index = _SPLIT_INDICES[split]
    for index, (key, example) in enumerate(synthetic_generator.generate_split(
        seed=cfg.seed,
        num_examples=num_examples,
        num_classes=cfg.num_classes,
        num_frames=cfg.num_frames,
        image_size=cfg.image_size,
        split_index=split_index,
        num_distractors=cfg.num_distractors,
    )):
      example["true_masks"] = example["masks"]
      example["true_flow"] = example.pop("flow")
      # Keyed by (split, example) like the clips themselves, so a clip's
      # corruption does not depend on generation order.
      example["masks"] = teacher.corrupt(
          example["true_masks"], (split_index, index)
      )
      # `Video` accepts a list of already-encoded frames and stores them as
      # is, which skips its much slower per-frame TF encoder.
      example["video"] = encode_png_frames(example["video"])
      yield key, example
