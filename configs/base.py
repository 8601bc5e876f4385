"""Defaults shared by every experiment config.

Each experiment file (`synthetic.py`, ...) starts from `get_config()` here and
overrides what differs; its docstring holds its run command.
"""

import ml_collections

# The five loss weights, in the order of `airstreams_jax.losses.LOSS_NAMES`.
# The paper's fixed weights: merged, interm and rgb 1; flow and semantic 0.
PAPER_LOSS_WEIGHTS = dict(rgb=1.0, flow=0.0, semantic=0.0, merged=1.0,
                          interm=1.0)
UNIFORM_LOSS_WEIGHTS = dict(rgb=1.0, flow=1.0, semantic=1.0, merged=1.0,
                            interm=1.0)

# A tower "comparable to a ResNet-18": six TVN blocks, widths 64 -> 512, every
# block with (2+1)D convs, squeeze-excite and context gating. The paper does not
# publish its widths; this is our choice, recorded here.
RESNET18_LIKE_TOWER = (
    dict(filters=64, kernel=5, stride=2, temporal_kernel=3, expand=1),
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
  ))

  config.model = ml_collections.ConfigDict(dict(
      streams=('rgb', 'flow', 'semantic'),
      merge_after=3,
      stop_gradient=False,
      # The representations that `stop_gradient` cuts off from the action
      # losses: any of 'flow', 'semantic'.
      stop_gradient_at=('flow', 'semantic'),
      multi_label=False,
      tower=RESNET18_LIKE_TOWER,
      dropout_rate=0.5,
      dtype='float32',
      flow=dict(num_iter=20, bottleneck=1),
      # A second flow layer on the first one's output (rep_flow.FlowOfFlow):
      # conv to `features` channels, then a flow layer with these options.
      flow_of_flow=dict(enabled=False, features=16, num_iter=20,
                        bottleneck=1),
      seg=dict(widths=(64, 128, 256, 512), output_stride=16),
  ))

  config.dataset = ml_collections.ConfigDict(dict(
      name='synthetic_actions',
      data_dir='',  # '' = tfds's default (~/tensorflow_datasets).
      manual_dir='',  # Real datasets: the user's local copy.
      teacher='oracle',
      num_frames=8,
      image_size=64,
      train_split='train',
      eval_split='test',
      random_flip=True,
      min_crop_area=0.6,  # Random resized crop keeps 60-100% of the area.
      shuffle_buffer=512,
  ))

  # Device mesh: (axis name, size) pairs; -1 takes the remaining devices.
  config.mesh = (('data', -1),)
  return config
