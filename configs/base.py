"""Defaults shared by every experiment config.

Each experiment file (`synthetic.py`, ...) starts from `get_config()` here and
overrides what differs; its docstring holds its run command.
"""

import ml_collections
from ml_collections import config_dict

# The five loss weights, in the order of
# `airstreams_jax.training.losses.LOSS_NAMES`.
# The paper's fixed weights: merged, interm and rgb 1; flow and semantic 0.
PAPER_LOSS_WEIGHTS = dict(rgb=1.0, flow=0.0, semantic=0.0, merged=1.0,
                          interm=1.0)
UNIFORM_LOSS_WEIGHTS = dict(rgb=1.0, flow=1.0, semantic=1.0, merged=1.0,
                            interm=1.0)

# A tower "comparable to a ResNet-18": six TVN blocks, widths 64 -> 512, every
# block with (2+1)D convs, squeeze-excite and context gating. The paper does not
# publish its widths; this is our choice, recorded here. Block 1 uses a 3x3
# kernel: with 5x5 it alone made the RGB-only inference of the full
# three-stream model cost 17.8 G multiply-adds at 8x112x112 (12.97 with 3x3,
# inside the paper's 17 G; `python -m airstreams_jax.model_info`).
RESNET18_LIKE_TOWER = (
    dict(filters=64, kernel=3, stride=2, temporal_kernel=3, expand=1),
    dict(filters=64, kernel=3, stride=2, temporal_kernel=3, expand=2),
    dict(filters=128, kernel=3, stride=2, temporal_kernel=3, expand=2),
    dict(filters=256, kernel=3, stride=2, temporal_kernel=3, expand=1),
    dict(filters=256, kernel=3, stride=1, temporal_kernel=3, expand=2),
    dict(filters=512, kernel=3, stride=2, temporal_kernel=3, expand=1),
)


def parse_arg(arg, **defaults):
  """Parses a config argument such as 'smoke' or 'split=2,smoke'.

  Args:
    arg: the text after ':' in `--config=configs/x.py:arg`, or None.
    **defaults: the accepted keys and their defaults; the type of each default
      decides how its value is parsed (bool keys may appear bare).

  Returns:
    An `ml_collections.ConfigDict` with every key of `defaults`.
  """
  values = dict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, _, value = item.partition('=')
    if key not in defaults:
      raise ValueError(f'Unknown config argument {key!r}; valid: '
                       f'{sorted(defaults)}.')
    default = defaults[key]
    if isinstance(default, bool):
      values[key] = value.lower() not in ('0', 'false', 'no') if value else True
    else:
      values[key] = type(default)(value)
  return ml_collections.ConfigDict(values)


# Small CPU tower: the structure of the full one (6 TVN blocks, (2+1)D convs,
# squeeze-excite, context gating, skips) at 1/8 of its widths.
SMALL_TOWER = (
    dict(filters=8, kernel=3, stride=2, temporal_kernel=3, expand=2),
    dict(filters=16, kernel=3, stride=2, temporal_kernel=3, expand=2),
    dict(filters=16, kernel=3, stride=1, temporal_kernel=3, expand=2),
    dict(filters=32, kernel=3, stride=2, temporal_kernel=3, expand=1),
    dict(filters=32, kernel=3, stride=1, temporal_kernel=3, expand=2),
    dict(filters=64, kernel=3, stride=2, temporal_kernel=3, expand=1),
)



def use_small_cpu_model(config) -> None:
  """The small model of the CPU configs (synthetic, video_folder).

  Its representations work at 32-64 px: DRN-18 keeps the paper's output
  stride 16 but gets an upsampling head whose logits are at the input
  resolution (at 32 px, OS16 alone gives 2x2 logits and the learned
  segmentation collapsed to background); the flow layer runs 10 TV-L1
  iterations. The segmentation loss weighs 4 (the paper: 1): at 1 the action
  losses, which reach the segmentation net (propagated gradients), mixed up
  its ball and box classes and kept mIoU against the teacher below 0.5.
  README "Representations" has the measurements.
  """
  config.loss_weights.interm = 4.0
  config.optimizer.learning_rate = 3e-3
  config.model.tower = SMALL_TOWER
  config.model.dropout_rate = 0.2
  config.model.flow.update(num_iter=10, bottleneck=1, presmooth_sigma=0.0)
  config.model.seg = dict(widths=(8, 16, 16, 32), output_stride=16,
                          decoder_features=16)


# Stream subsets of the paper's ablations (Table 2), by config argument.
STREAM_CHOICES = {
    'rgb': ('rgb',),
    'rgb_sem': ('rgb', 'semantic'),
    'rgb_flow': ('rgb', 'flow'),
    'all': ('rgb', 'flow', 'semantic'),
}
GRADIENT_CHOICES = ('propagate', 'stop')
WEIGHT_CHOICES = {'paper': PAPER_LOSS_WEIGHTS, 'uniform': UNIFORM_LOSS_WEIGHTS}

# Config-argument keys every real-dataset config accepts (see `apply_ablation`).
ABLATION_ARGS = dict(streams='all', grad='propagate', weights='paper')


def apply_ablation(config, arg) -> None:
  """Sets streams, gradient mode and loss weights from parsed arguments.

  Args:
    config: the experiment config, changed in place.
    arg: parsed config arguments with the keys of `ABLATION_ARGS`:
      streams (rgb, rgb_sem, rgb_flow, all), grad (propagate: the action
      losses train the flow layer and the segmentation net; stop: they do
      not) and weights (paper, uniform, or the path of a JSON weights file,
      e.g. one written by the evolution of the loss weights).
  """
  if arg.streams not in STREAM_CHOICES:
    raise ValueError(f'Unknown streams={arg.streams!r}; valid: '
                     f'{sorted(STREAM_CHOICES)}.')
  if arg.grad not in GRADIENT_CHOICES:
    raise ValueError(f'Unknown grad={arg.grad!r}; valid: {GRADIENT_CHOICES}.')
  config.model.streams = STREAM_CHOICES[arg.streams]
  config.model.stop_gradient = arg.grad == 'stop'
  if arg.weights in WEIGHT_CHOICES:
    config.loss_weights = ml_collections.ConfigDict(
        WEIGHT_CHOICES[arg.weights])
  else:  # A file; `main` checks that it exists before any work.
    config.loss_weights_file = arg.weights


def shrink_for_smoke(config) -> None:
  """Turns a config into a tiny run (a minute on 2 CPU cores): few steps,
  small batches, the small tower, 4 frames of 32x32, single-view eval."""
  config.num_train_steps = 8
  config.batch_size = 8
  config.eval_batch_size = 8
  config.log_every_steps = 2
  config.eval_every_steps = 8
  config.checkpoint_every_steps = 4
  config.optimizer.warmup_steps = 2
  config.model.tower = SMALL_TOWER
  config.model.dropout_rate = 0.2
  config.model.flow.update(num_iter=3, bottleneck=1, presmooth_sigma=0.0)
  config.model.seg = dict(widths=(8, 16, 16, 32), output_stride=16,
                          decoder_features=8)
  config.dataset.image_size = 32
  config.dataset.num_frames = 4
  config.dataset.frame_stride = 1
  config.dataset.shuffle_buffer = 16
  config.dataset.eval_clips = 1
  config.dataset.eval_crops = 1


def real_dataset_config(name: str):
  """Shared settings of the real-dataset configs (hmdb51, mit, ...).

  Paper scale: the full three-stream model at 8 frames of 112x112 (every
  2nd frame of the stored video), whose RGB-only inference, segmentation
  net and flow layer included, costs 12.97 G multiply-adds per clip, inside
  the paper's 17 G. The segmentation net runs on every frame at the clip's
  resolution; the teacher is the offline selfie model (background, person).
  """
  config = get_config()
  config.dataset.name = name
  config.dataset.teacher = 'selfie'
  config.dataset.num_frames = 8
  config.dataset.frame_stride = 2
  config.dataset.image_size = 112
  config.dataset.random_flip = True
  # Multi-view testing (as SlowFast): clips evenly spaced in time x crops
  # along the long side, scores averaged per video (max if multi-label).
  config.dataset.eval_clips = 10
  config.dataset.eval_crops = 3
  config.batch_size = 32
  config.eval_batch_size = 8  # Videos; each brings clips x crops views.
  config.log_every_steps = 100
  return config


def get_config():
  """The shared defaults; experiment configs override them."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_train_steps = 1000
  config.batch_size = 16  # Global, over all processes and devices.
  config.eval_batch_size = 16
  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 2
  # Also keep the checkpoint with the best eval value of this metric (a key
  # of eval_results.json: top1, top5, mean_class_accuracy, mAP); '' = off.
  config.best_metric = 'top1'
  # Another workdir whose latest checkpoint initialises the parameters and
  # batch statistics (not the optimiser or step); heads whose class count
  # differs are re-initialised (e.g. Moments in Time -> Charades).
  config.init_from = ''

  config.loss_weights = ml_collections.ConfigDict(PAPER_LOSS_WEIGHTS)
  # A JSON file {"rgb": .., "flow": .., ...} (e.g. from evolution) that
  # replaces `loss_weights` when set.
  config.loss_weights_file = ''

  config.optimizer = ml_collections.ConfigDict(dict(
      name='adamw',  # 'adamw' or 'sgd'.
      learning_rate=1e-3,
      warmup_steps=50,
      schedule='cosine',  # After the warm-up: 'cosine', 'constant', 'step'.
      decay_at=(0.6, 0.8),  # 'step': fractions of training ...
      decay_factor=0.1,  # ... where the rate is multiplied by this.
      weight_decay=1e-4,
      momentum=0.9,  # SGD only.
      grad_clip_norm=1.0,  # 0 disables clipping.
      flow_lr_multiplier=1.0,  # Scales the flow layer's updates.
      seg_lr_multiplier=1.0,  # Scales the segmentation net's updates.
  ))

  config.model = ml_collections.ConfigDict(dict(
      streams=('rgb', 'flow', 'semantic'),
      merge_after=3,
      stop_gradient=False,
      # The representations that `stop_gradient` cuts off from the action
      # losses: any of 'flow', 'semantic'.
      stop_gradient_at=('flow', 'semantic'),
      # The action losses' gradient into those representations is multiplied
      # by this (1 = propagate, 0 = stop; in between: how much of it).
      grad_scale=1.0,
      multi_label=False,
      tower=RESNET18_LIKE_TOWER,
      dropout_rate=0.5,
      dtype='float32',
      # The gradients of the towers' strided and temporal convolutions and
      # of the DRN's max pool: 'im2col' (matrix products and an elementwise
      # max-pool backward pass, fast on XLA:CPU), 'xla' (XLA's own forms:
      # GPU, TPU) or 'auto' (im2col on CPU, else xla). Same values
      # (models/tvn.py, models/max_pool.py).
      conv_gradients='auto',
      # The 1x1 convolutions: 'matmul' (matrix products, fast on XLA:CPU),
      # 'conv' (convolutions) or 'auto' (matmul on CPU, else conv). Same
      # parameters and values (models/pointwise_conv.py).
      pointwise_convs='auto',
      # presmooth_sigma: a fixed Gaussian blur before the TV-L1 iterations
      # (rep_flow.RepresentationFlow); 0 = none, as the paper.
      # pyramid_levels=1, warps=1: the paper's single-scale layer (one
      # linearisation, motion up to about a pixel). More: coarse to fine as
      # OpenCV's DualTVL1 (models/flow_pyramid.py), levels scale_step apart
      # (OpenCV: 0.8), `warps` linearisations of num_iter iterations each
      # per level, the second frame warped by warp_interpolation ('bicubic'
      # as OpenCV, or 'bilinear').
      flow=dict(num_iter=20, bottleneck=1, presmooth_sigma=0.0,
                pyramid_levels=1, warps=1, scale_step=0.8,
                warp_interpolation='bicubic'),
      # A second flow layer on the first one's output (flow_of_flow.FlowOfFlow):
      # conv to `features` channels, then a flow layer with these options.
      flow_of_flow=dict(enabled=False, features=16, num_iter=20,
                        bottleneck=1),
      # decoder_features: 0 = the paper's OS16 logits, bilinearly upsampled;
      # > 0 = an upsampling head of that width (models/drn.py).
      seg=dict(widths=(64, 128, 256, 512), output_stride=16,
               decoder_features=0),
  ))

  config.dataset = ml_collections.ConfigDict(dict(
      name='synthetic_actions',
      data_dir='',  # '' = tfds's default (~/tensorflow_datasets).
      manual_dir='',  # Real datasets: the user's local copy.
      teacher='oracle',
      # The teacher's options: the keys of every teacher, None = unset
      # (airstreams_jax/teachers/factory.py says which teacher takes which),
      # e.g. --config.dataset.teacher_options.model_path=/m/seg.tflite.
      teacher_options=dict(
          model_path=config_dict.placeholder(str),
          labels_path=config_dict.placeholder(str),
          wheel_path=config_dict.placeholder(str),
          cache_dir=config_dict.placeholder(str),
          classes_file=config_dict.placeholder(str),
          weights_path=config_dict.placeholder(str),
          arch=config_dict.placeholder(str),
          input_range=config_dict.placeholder(tuple),
          threshold=config_dict.placeholder(float),
          score_threshold=config_dict.placeholder(float),
          mask_threshold=config_dict.placeholder(float),
          min_size=config_dict.placeholder(int),
          num_threads=config_dict.placeholder(int),
          batch_size=config_dict.placeholder(int),
          # The pose teacher's (teachers/pose.py).
          detector_path=config_dict.placeholder(str),
          landmark_path=config_dict.placeholder(str),
          max_people=config_dict.placeholder(int),
          min_detection_score=config_dict.placeholder(float),
          min_presence_score=config_dict.placeholder(float),
          tracking=config_dict.placeholder(bool),
      ),
      # How real videos are stored (each value is part of the dataset's
      # builder-config name, so changing one builds a new dataset).
      short_side=128,  # Frames resized to this short side, aspect kept.
      fps=0.0,  # Frames kept per second of video (0: every frame).
      max_frames=0,  # At most this many per video, evenly spread (0: all).
      mask_size=64,  # Short side of the stored teacher masks.
      build_workers=0,  # Processes building a real dataset (0: one per core).
      builder_config='',  # The tfds builder config (e.g. HMDB51's split1).
      num_frames=8,
      image_size=64,
      train_split='train',
      eval_split='test',
      random_flip=True,
      frame_stride=1,  # Clips take every `frame_stride`-th stored frame.
      # Eval views per video: clips evenly spaced in time x spatial crops.
      eval_clips=1,
      eval_crops=1,
      min_crop_area=0.6,  # Random resized crop keeps 60-100% of the area.
      shuffle_buffer=512,
  ))

  # Evolution of the loss weights (`--mode=evolve`,
  # airstreams_jax/evolution/proxy_trainer.py):
  # tournament selection as in the paper. Each candidate weighting trains a
  # proxy model, this config for `proxy_steps` steps (its learning-rate
  # schedule fitted to them); its fitness is the merged top-1 accuracy (mAP
  # if multi-label) on the last `holdout_percent` % of the training split,
  # which the proxies do not train on (0: train on dataset.train_split,
  # evaluate on dataset.eval_split).
  config.evolution = ml_collections.ConfigDict(dict(
      population_size=10,
      tournament_size=3,
      num_evaluations=100,  # Evaluated weightings, initial population included.
      parallel=5,  # Candidates per group (a vmapped step with 'vmap').
      # How a group trains: 'vmap' (one vmapped step: accelerators),
      # 'sequential' (one candidate after another: XLA:CPU runs vmapped
      # convolutions slowly) or 'auto' (sequential on CPU, else vmap).
      group_step='auto',
      proxy_steps=200,
      # A candidate's fitness is the mean of proxy_repeats proxy trainings,
      # repeat r with seed config.seed + r for every candidate (paired); a
      # child that would become the best first trains race_repeats more
      # (racing), so one lucky proxy cannot crown a weighting
      # (airstreams_jax/evolution/tournament.py; docs/usage.md says why 1
      # and 2).
      proxy_repeats=1,
      race_repeats=2,
      # 'tournament' (the paper's) or 'halving': successive halving over
      # num_evaluations drawn weightings, halving_rungs rungs, each keeping
      # the best 1/halving_keep and retraining them halving_keep times
      # longer, the last for proxy_steps (airstreams_jax/evolution/halving.py).
      strategy='tournament',
      halving_rungs=3,
      halving_keep=3,
      # The search space. Weightings are drawn from `draw` over
      # `weight_range`: 'uniform' (the paper's U[0, 1]) or 'log_uniform'
      # (log λ uniform: every ratio as likely as its inverse; needs a low
      # end > 0, e.g. (0.01, 1)). Under Adam only the weights' ratios
      # matter, so with start_from_config the config's own weights, scaled
      # so that the largest is the range's top, are candidate 0 of the first
      # generation: the search can propose what it is compared against
      # (airstreams_jax/evolution/search_space.py).
      draw='uniform',
      weight_range=(0.0, 1.0),
      start_from_config=True,
      holdout_percent=20,
      # Who leaves the population when a child joins: 'worst' or 'oldest'
      # (regularised evolution); airstreams_jax/evolution/tournament.py says why
      # worst.
      removal='worst',
      seed=0,
      # When the search ends (`--mode=evolve`; or `--mode=confirm` on a
      # finished search), its confirm_top best weightings and this config's
      # own weights train in full over confirm_seeds seeds, the same seeds
      # for each (paired), and evolution_report.md says whether the search
      # beat the fixed weights beyond noise (airstreams_jax/evolution/
      # confirm.py). 0 seeds: no confirmation.
      confirm_seeds=3,
      confirm_top=3,
  ))

  # Device mesh: (axis name, size) pairs; -1 takes the remaining devices.
  config.mesh = (('data', -1),)
  # (regex on an array's path, mesh axes of its trailing dimensions) pairs;
  # the first match wins, the rest is replicated. E.g. with a ('model', 2)
  # mesh axis, (('kernel$', ('model',)),) splits every kernel's output
  # channels (airstreams_jax/sharding.py).
  config.sharding_rules = ()
  return config
