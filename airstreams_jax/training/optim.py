"""Optimiser and learning-rate schedule from `config.optimizer`."""

import flax
import optax

# Parameters of the representation nets (top-level module names).
FLOW_PARAMS = 'flow_layer'
SEG_PARAMS = 'segmentation_net'
SCHEDULES = ('cosine', 'constant', 'step')


def make_schedule(opt_config, num_train_steps: int) -> optax.Schedule:
  """Linear warm-up, then cosine decay to 0, a constant, or step decay.

  'step' multiplies the rate by `decay_factor` at each fraction of training
  in `decay_at` (e.g. (0.6, 0.8)).
  """
  lr = opt_config.learning_rate
  warmup = min(opt_config.warmup_steps, max(num_train_steps - 1, 0))
  if opt_config.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup_steps=warmup,
        decay_steps=max(num_train_steps, warmup + 1))
  if opt_config.schedule == 'constant':
    after = optax.constant_schedule(lr)
  elif opt_config.schedule == 'step':
    after = optax.piecewise_constant_schedule(lr, {
        int(f * num_train_steps) - warmup: opt_config.decay_factor
        for f in opt_config.decay_at})
  else:
    raise ValueError(f'config.optimizer.schedule={opt_config.schedule!r} is unknown; use one of '
                     f'{SCHEDULES}.')
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def _module_mask(module: str):
  """An optax mask: True for the parameters of one top-level module."""
  def mask(params):
    flat = flax.traverse_util.flatten_dict(params)
    return flax.traverse_util.unflatten_dict(
        {path: path[0] == module for path in flat})
  return mask


def make_optimizer(opt_config, num_train_steps: int
                   ) -> optax.GradientTransformation:
  """Optional clipping, AdamW or SGD, and the representation nets' rate
  multipliers.

  The representation-flow parameters are few, shared by every pixel and
  sensitive (the rep-flow authors train them at 0.01x the base rate):
  `flow_lr_multiplier` scales their updates; `seg_lr_multiplier` does the
  same for the segmentation net.
  """
  schedule = make_schedule(opt_config, num_train_steps)
  if opt_config.name == 'adamw':
    opt = optax.adamw(schedule, weight_decay=opt_config.weight_decay)
  elif opt_config.name == 'sgd':
    opt = optax.chain(optax.add_decayed_weights(opt_config.weight_decay),
                      optax.sgd(schedule, momentum=opt_config.momentum))
  else:
    raise ValueError(f'config.optimizer.name={opt_config.name!r} is unknown; '
                     "use 'adamw' or 'sgd'.")
  parts = []
  if opt_config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(opt_config.grad_clip_norm))
  parts.append(opt)
  for module, key, multiplier in (
      (FLOW_PARAMS, 'flow_lr_multiplier', opt_config.flow_lr_multiplier),
      (SEG_PARAMS, 'seg_lr_multiplier',
       opt_config.get('seg_lr_multiplier', 1.0))):
    if multiplier < 0:
      raise ValueError(f'config.optimizer.{key}={multiplier} (the learning-'
                       f'rate multiplier of {module}) must be >= 0.')
    if multiplier != 1.0:
      parts.append(optax.masked(optax.scale(multiplier),
                                _module_mask(module)))
  return optax.chain(*parts)
